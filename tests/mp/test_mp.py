"""scmp_jax.mp: classifiers on hand-worked cases, config validation, the
reference-format threshold table, cost reports and loggers."""
import json
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import golden.mp as gmp
from scmp_jax import mp
from tests.helpers import DATA as _DATA

DATA = _DATA / "mp_thresholds.json"
NAN = float("nan")


def levels_of(assignment):
    return np.asarray(assignment.row_levels).tolist()


# ------------------------------------------------------------------- quantile rule
@pytest.mark.parametrize("n,fractions,counts", [
    (5, (0.5, 0.5), (2, 3)),                    # round(2.5) = 2 (half to even)
    (7, (0.5, 0.5), (4, 3)),                    # round(3.5) = 4
    (6, (0.25, 0.25, 0.5), (2, 2, 2)),          # round(1.5) = 2 twice
    (10, (0.25,) * 4, (2, 2, 2, 4)),            # round(2.5) = 2; the last takes the rest
    (3, (0.5, 0.5, 0.0), (2, 1, 0)),            # second level clamped to the rows left
    (1, (0.4, 0.6), (0, 1)),
    (4, (1.0,), (4,)),
])
def test_quantile_counts(n, fractions, counts):
    assert mp.quantile_counts(n, fractions) == counts


def test_quantile_hand_worked():
    # sorted descending: row1 (0.9), row3 (0.9, tie -> higher index later), row5, row2, row0, row4
    m = jnp.array([0.2, 0.9, 0.4, 0.9, 0.1, 0.6])
    a = mp.classify_rows_by_metric(m, [256, 128, 64])
    assert levels_of(a) == [2, 0, 1, 0, 2, 1]
    assert np.asarray(a.stoc_len).tolist() == [64, 256, 128, 256, 64, 128]
    assert a.stoc_len.dtype == jnp.int32 and a.row_levels.dtype == jnp.int32
    assert np.asarray(a.counts()).tolist() == [2, 2, 2]
    idx = a.level_row_indices()
    assert {k: v.tolist() for k, v in idx.items()} == {256: [1, 3], 128: [2, 5], 64: [0, 4]}


def test_quantile_ties_nan_and_signed_zero():
    half = (0.5, 0.5)
    assert levels_of(mp.classify_rows_by_metric(jnp.ones(4), [8, 4], half)) == [0, 0, 1, 1]
    # -0.0 ties with 0.0: index order decides
    assert levels_of(mp.classify_rows_by_metric(jnp.array([0.0, -0.0, 0.0]), [8, 4, 2])) == [0, 1, 2]
    # NaN ranks above +inf
    m = jnp.array([1.0, NAN, np.inf, -np.inf])
    assert levels_of(mp.classify_rows_by_metric(m, [8, 4, 2, 1])) == [2, 0, 1, 3]
    # 5 rows, (0.5, 0.5): round(2.5) = 2 rows at level 0
    assert levels_of(mp.classify_rows_by_metric(jnp.array([0.1, 0.5, 0.5, 0.9, 0.2]), [8, 4],
                                                half)) == [1, 0, 1, 0, 1]


def test_quantile_pruning_level_and_int_metric():
    a = mp.classify_rows_by_metric(np.array([3, 1, 2, 0]), [128, 0], (0.5, 0.5))
    assert np.asarray(a.stoc_len).tolist() == [128, 0, 128, 0]


# -------------------------------------------------------------- calibrated thresholds
def test_thresholds_hand_worked():
    cfg = mp.AdaptiveMPConfig([256, 128, 0], operator_default_thresholds={"qk": [0.6, 0.2]})
    m = jnp.array([0.0, 10.0, 5.0, 1.0, 7.0])         # normalized 0, 1, .5, .1, .7
    assert levels_of(mp.adaptive_classify_rows(m, cfg, operator="qk")) == [2, 0, 1, 2, 0]
    # lower bounds are inclusive: norm 0.5 >= 0.5 and float32(1/10) >= float32(0.1)
    cfg = mp.AdaptiveMPConfig([256, 128, 0], operator_default_thresholds={"qk": [0.5, 0.1]})
    a = mp.adaptive_classify_rows(m, cfg, operator="qk")
    assert levels_of(a) == [2, 0, 0, 1, 0]
    assert np.asarray(a.stoc_len).tolist() == [0, 256, 256, 128, 256]


def test_thresholds_degenerate_spread():
    cfg = mp.AdaptiveMPConfig([256, 128], operator_default_thresholds={"mlp": [0.5]})
    one_e8 = np.float32(1e-8)                          # 9.99999994e-09 < 1e-8: degenerate
    just_above = np.nextafter(one_e8, np.float32(1))   # > 1e-8: normal path
    for m, want in [([3.0, 3.0, 3.0], [0, 0, 0]), ([0.0, 5e-9], [0, 0]),
                    ([0.0, one_e8], [0, 0]), ([0.0, just_above], [1, 0])]:
        got = mp.adaptive_classify_rows(jnp.array(m, jnp.float32), cfg, operator="mlp")
        assert levels_of(got) == want, m
    # NaN metric: not degenerate, every comparison false -> last level (as the reference)
    got = mp.adaptive_classify_rows(jnp.array([0.0, NAN, 1.0]), cfg, operator="mlp")
    assert levels_of(got) == [1, 1, 1]


@pytest.mark.parametrize("value,total,nb,want", [
    (24, 50, 2, 0), (25, 50, 2, 1), (49, 50, 2, 1), (13, 28, 2, 0), (14, 28, 2, 1),
    (5, 1, 4, 0), (3, 10, 1, 0), (9, 10, 3, 2)])
def test_bucket_index(value, total, nb, want):
    assert mp.bucket_index(value, total, nb) == want


def test_threshold_table_lookup_and_paths():
    cfg = mp.AdaptiveMPConfig.from_json(DATA)
    m = jnp.array([0.0, 0.05, 0.2, 0.45, 0.55, 0.65, 0.95, 1.0])
    # qk bucket (t0, l0): thresholds (0.9, 0.5, 0.25)
    a = mp.adaptive_classify_rows(m, cfg, "qk", block_idx=0, total_blocks=4, timestep=0,
                                  total_timesteps=10)
    assert levels_of(a) == [3, 3, 3, 2, 1, 1, 0, 0]
    # qk bucket (t1, l1): (0.6, 0.3, 0.0) -> nothing reaches the pruned level
    a = mp.adaptive_classify_rows(m, cfg, "qk", block_idx=3, total_blocks=4, timestep=9,
                                  total_timesteps=10)
    assert levels_of(a) == [2, 2, 2, 1, 1, 0, 0, 0]
    # qk bucket (t1, l0) missing -> operator default (0.7, 0.4, 0.1)
    a = mp.adaptive_classify_rows(m, cfg, "qk", block_idx=0, total_blocks=4, timestep=9,
                                  total_timesteps=10)
    assert levels_of(a) == [3, 3, 2, 1, 1, 1, 0, 0]
    # no block info -> operator default, buckets skipped
    assert levels_of(mp.adaptive_classify_rows(m, cfg, "qk")) == [3, 3, 2, 1, 1, 1, 0, 0]
    # mlp_fc1 default (0.5, 0.5, 0.2): equal thresholds leave level 1 empty
    assert levels_of(mp.adaptive_classify_rows(m, cfg, "mlp_fc1")) == [3, 3, 2, 2, 0, 0, 0, 0]
    # proj only has a bucket; outside it there is no path
    a = mp.adaptive_classify_rows(m, cfg, "proj", block_idx=3, total_blocks=4)
    assert levels_of(a) == [3, 3, 3, 3, 3, 3, 0, 0]
    with pytest.raises(ValueError, match="no classification path"):
        mp.adaptive_classify_rows(m, cfg, "proj", block_idx=0, total_blocks=4)
    with pytest.raises(ValueError, match="no classification path"):
        mp.adaptive_classify_rows(m, cfg, None)
    # target_fractions take precedence over the table
    q = mp.AdaptiveMPConfig.from_json(DATA, target_fractions=[0.25, 0.25, 0.25, 0.25])
    assert levels_of(mp.adaptive_classify_rows(m, q, "qk")) == [3, 3, 2, 2, 1, 1, 0, 0]


# ------------------------------------------------------------------ free boundaries
def test_free_boundaries_hand_worked():
    cfg = mp.FreeBoundaryMPConfig([256, 128, 64])
    assert cfg.default_boundaries() == (2 / 3, 1 / 3)
    m = jnp.array([0.0, 10.0, 5.0, 1.0, 7.0])         # normalized 0, 1, .5, .1, .7
    assert levels_of(mp.adaptive_classify_rows(m, cfg, "qk", block_idx=0)) == [2, 0, 1, 2, 0]
    cfg2 = cfg.with_boundaries("qk", 3, [0.2, 0.8])      # sorted descending before use
    assert levels_of(mp.adaptive_classify_rows(m, cfg2, "qk", block_idx=3)) == [2, 0, 1, 2, 1]
    assert levels_of(mp.adaptive_classify_rows(m, cfg2, "qk", block_idx=0)) == [2, 0, 1, 2, 0]
    cfg3 = cfg2.with_fixed_level("qk", 3, 1)
    assert (3, "qk") not in cfg3.boundaries
    assert levels_of(mp.adaptive_classify_rows(m, cfg3, "qk", block_idx=3)) == [1] * 5
    cfg4 = cfg3.without_fixed_level("qk", 3)
    assert levels_of(mp.adaptive_classify_rows(m, cfg4, "qk", block_idx=3)) == [2, 0, 1, 2, 0]
    assert levels_of(mp.adaptive_classify_rows(jnp.full(4, 2.0), cfg2, "qk", block_idx=3)) == [0] * 4
    with pytest.raises(ValueError, match="block_idx"):
        mp.adaptive_classify_rows(m, cfg, "qk")
    assert cfg.with_boundaries("qk", 3, (0.2, 0.8)) == cfg2 and hash(cfg2) == hash(
        cfg.with_boundaries("qk", 3, (0.2, 0.8)))


def test_golden_boundaries_as_traced_array():
    """classify_rows_by_boundaries: boundaries as an array (traced under jit and
    vmap over candidate sets) give golden's free-boundary levels."""
    r = np.random.default_rng(7)
    m = r.standard_normal(12).astype(np.float32)
    cands = np.array([[0.8, 0.3], [0.3, 0.8], [0.5, 0.45], [0.99, 0.01]], np.float32)
    f = jax.jit(jax.vmap(lambda b: mp.classify_rows_by_boundaries(m, b, (64, 16, 0)).row_levels))
    got = np.asarray(f(jnp.asarray(cands)))
    for b, lv in zip(cands, got):
        assert lv.tolist() == gmp.classify_free_boundaries(m, b).tolist()
    with pytest.raises(ValueError, match="boundaries"):
        mp.classify_rows_by_boundaries(m, np.zeros(3, np.float32), (64, 16, 0))


# ---------------------------------------------------------------------- range rule
def _range_weight():
    # groups of 2 rows with ranges 4, 0, 1, 2 -> normalized 1, 0, .25, .5
    return np.array([[0, 4], [1, 2], [1, 1], [1, 1], [0, 1], [0.5, 0.5], [-1, 1], [0, 0]],
                    np.float32)


def test_range_hand_worked():
    w = _range_weight()
    cfg = mp.RangeMPConfig([256, 128, 64])          # boundaries 0.3, 0.15
    a = mp.classify_groups_by_range(w, 2, cfg)
    assert levels_of(a) == [0, 2, 1, 0]
    assert np.asarray(a.stoc_len).tolist() == [256, 64, 128, 256]
    assert np.asarray(a.repeat(2).stoc_len).tolist() == [256, 256, 64, 64, 128, 128, 256, 256]
    cfg = mp.RangeMPConfig([256, 128, 64], operator_thresholds={"mlp_fc1": 0.6, "proj": 2.0})
    assert levels_of(mp.classify_groups_by_range(w, 2, cfg, "mlp_fc1")) == [0, 2, 2, 1]
    assert levels_of(mp.classify_groups_by_range(w, 2, cfg, "proj")) == [0, 2, 2, 1]  # capped 0.95
    assert levels_of(mp.classify_groups_by_range(w, 2, cfg, "other")) == [0, 2, 1, 0]
    # one group (group_size <= 0 or >= rows): normalized range 0 -> the last level
    assert levels_of(mp.classify_groups_by_range(w, 0, cfg)) == [2]
    assert levels_of(mp.classify_groups_by_range(w, 8, cfg)) == [2]
    assert len(levels_of(mp.classify_groups_by_range(w, 1, cfg))) == 8
    with pytest.raises(ValueError, match="multiple"):
        mp.classify_groups_by_range(w, 3, cfg)


def test_row_metric():
    x = jnp.array([[1.0, -3.0, 2.0], [-0.5, -0.25, -1.0]])
    assert np.asarray(mp.row_metric(x, "x_row_max")).tolist() == [3.0, 1.0]
    assert np.asarray(mp.row_metric(x, "q_row_max")).tolist() == [3.0, 1.0]
    assert np.asarray(mp.row_metric(x, "attn_row_max")).tolist() == [2.0, -0.25]
    with pytest.raises(ValueError):
        mp.row_metric(x, "l2")


# ------------------------------------------------------------------- jit and vmap
def test_classifiers_under_jit_and_vmap():
    cfg = mp.AdaptiveMPConfig([256, 128, 0], operator_default_thresholds={"qk": [0.6, 0.2]})
    ms = jnp.array([[0.0, 10.0, 5.0, 1.0, 7.0], [3.0, 2.0, 1.0, 0.0, 4.0]])

    @jax.jit
    def f(m):
        a = mp.adaptive_classify_rows(m, cfg, operator="qk")
        q = mp.classify_rows_by_metric(m, (4, 2, 1), (0.4, 0.4, 0.2))
        return a.stoc_len, q
    for m in ms:
        sl, q = f(m)
        # golden's level indices (thresholds 0.6, 0.2; quantile 0.4, 0.4, 0.2)
        want = [(256, 128, 0)[i] for i in gmp.classify_thresholds(np.asarray(m), (0.6, 0.2))]
        assert np.asarray(sl).tolist() == want
        assert np.asarray(sl).tolist() == np.asarray(
            mp.adaptive_classify_rows(m, cfg, operator="qk").stoc_len).tolist()
        assert isinstance(q, mp.RowAssignment) and q.stoc_len_levels == (4, 2, 1)
        assert np.asarray(q.row_levels).tolist() == gmp.classify_quantile(
            np.asarray(m), (0.4, 0.4, 0.2)).tolist()
    sl, q = jax.vmap(f)(ms)
    assert np.asarray(sl).tolist() == [[0, 256, 128, 0, 256], [256, 128, 128, 0, 256]]
    assert np.asarray(q.row_levels).tolist() == [[2, 0, 1, 1, 0], [0, 1, 1, 2, 0]]
    assert np.asarray(q.row_levels).tolist() == [
        gmp.classify_quantile(np.asarray(m), (0.4, 0.4, 0.2)).tolist() for m in ms]


# -------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs", [
    dict(stoc_len_levels=[]), dict(stoc_len_levels=[64, 128]), dict(stoc_len_levels=[64, 64]),
    dict(stoc_len_levels=[64, -1]), dict(stoc_len_levels=[64.0, 32]),
    dict(stoc_len_levels=[64, True]), dict(stoc_len_levels=[64, 32], level_fractions=[1.0]),
    dict(stoc_len_levels=[64, 32], level_fractions=[0.6, 0.6]),
    dict(stoc_len_levels=[64, 32], level_fractions=[1.5, -0.5]),
    dict(stoc_len_levels=[64, 32], level_fractions=[NAN, 1.0]),
    dict(stoc_len_levels=[64], qk_metric="l2")])
def test_mpconfig_invalid(kwargs):
    with pytest.raises(ValueError):
        mp.MPConfig(**kwargs)


def test_mpconfig_defaults_and_hash():
    c = mp.MPConfig([64, 32, 16])
    assert c.level_fractions == (1 / 3,) * 3 and c.stoc_len_levels == (64, 32, 16)
    assert c == mp.MPConfig((64, 32, 16)) and hash(c) == hash(mp.MPConfig((64, 32, 16)))
    assert mp.MPConfig([64, 32], [0.3, 0.7 + 5e-7]).level_fractions[1] == 0.7 + 5e-7
    with pytest.raises(ValueError):
        mp.classify_rows_by_metric(jnp.ones(3), [4, 2], [0.2, 0.2])
    with pytest.raises(ValueError):
        mp.classify_rows_by_metric(jnp.ones((2, 3)), [4, 2])
    with pytest.raises(ValueError):
        mp.classify_rows_by_metric(jnp.ones(0), [4, 2])


@pytest.mark.parametrize("kwargs", [
    dict(stoc_len_levels=[64]), dict(stoc_len_levels=[32, 64]),
    dict(stoc_len_levels=[64, 32], target_fractions=[1.0]),
    dict(stoc_len_levels=[64, 32], target_fractions=[0.5, 0.6]),
    dict(stoc_len_levels=[64, 32, 0], operator_default_thresholds={"qk": [0.2, 0.5]}),
    dict(stoc_len_levels=[64, 32, 0], operator_default_thresholds={"qk": [1.2, 0.5]}),
    dict(stoc_len_levels=[64, 32, 0], operator_default_thresholds={"qk": [0.5]}),
    dict(stoc_len_levels=[64, 32, 0], operator_default_thresholds={"qk": {"th": [0.5, 0.1]}}),
    dict(stoc_len_levels=[64, 32], bucket_thresholds={"qk:0:1": [0.5]}),
    dict(stoc_len_levels=[64, 32], bucket_thresholds={"qk:t0": [0.5]}),
    dict(stoc_len_levels=[64, 32], timestep_buckets=0),
    dict(stoc_len_levels=[64, 32], threshold_table_path=str(DATA)),   # levels differ
])
def test_adaptive_invalid(kwargs):
    with pytest.raises(ValueError):
        mp.AdaptiveMPConfig(**kwargs)


def test_adaptive_pruning_and_tolerance():
    c = mp.AdaptiveMPConfig([256, 64, 0], enable_pruning=False, target_fractions=[0.5, 0.5])
    assert c.stoc_len_levels == (256, 64)
    # thresholds may rise by up to 1e-6 (reference tolerance)
    c = mp.AdaptiveMPConfig([8, 4, 2], operator_default_thresholds={"qk": [0.5, 0.5000005]})
    assert c.operator_default_thresholds["qk"] == (0.5, 0.5000005)
    c = mp.AdaptiveMPConfig([8, 4], bucket_thresholds={("qk", 1, 0): [0.5], "mlp:t0:l2": [0.3]})
    assert dict(c.bucket_thresholds) == {("qk", 1, 0): (0.5,), ("mlp", 0, 2): (0.3,)}


@pytest.mark.parametrize("kwargs", [
    dict(boundaries={(0, "qk"): [0.5]}), dict(boundaries={("qk", 0): [0.5, 0.2]}),
    dict(boundaries={(0, "qk"): [0.5, NAN]}), dict(fixed_levels={(0, "qk"): 3}),
    dict(fixed_levels={(0, "qk"): -1}), dict(fixed_levels={0: 1})])
def test_free_boundary_invalid(kwargs):
    with pytest.raises(ValueError):
        mp.FreeBoundaryMPConfig([64, 32, 16], **kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(stoc_len_levels=[64]), dict(stoc_len_levels=[16, 64]),
    dict(stoc_len_levels=[64, 32], base_threshold=NAN),
    dict(stoc_len_levels=[64, 32], base_threshold="0.3"),
    dict(stoc_len_levels=[64, 32], operator_thresholds={"qk": float("inf")})])
def test_range_invalid(kwargs):
    with pytest.raises(ValueError):
        mp.RangeMPConfig(**kwargs)


def test_configs_are_jit_static():
    cfg = mp.AdaptiveMPConfig.from_json(DATA)
    f = jax.jit(lambda m, c: mp.adaptive_classify_rows(m, c, "qk").stoc_len, static_argnums=1)
    assert np.asarray(f(jnp.array([0.0, 1.0]), cfg)).tolist() == [0, 256]
    hash(mp.FreeBoundaryMPConfig([8, 4], boundaries={(1, "qk"): [0.5]}))
    hash(mp.RangeMPConfig([8, 4], operator_thresholds={"qk": 0.5}))


# -------------------------------------------------------------------- JSON table
def test_json_fixture_fields():
    cfg = mp.AdaptiveMPConfig.from_json(DATA)
    assert cfg.stoc_len_levels == (256, 128, 64, 0)
    assert (cfg.timestep_buckets, cfg.layer_buckets) == (2, 2)
    assert dict(cfg.operator_default_thresholds) == {"qk": (0.7, 0.4, 0.1),
                                                     "mlp_fc1": (0.5, 0.5, 0.2)}
    assert dict(cfg.bucket_thresholds) == {("qk", 0, 0): (0.9, 0.5, 0.25),
                                           ("qk", 1, 1): (0.6, 0.3, 0.0),
                                           ("proj", 0, 1): (0.8, 0.8, 0.8)}
    # the reference's constructor path: threshold_table_path loaded in __post_init__
    by_path = mp.AdaptiveMPConfig([256, 128, 64, 0], threshold_table_path=str(DATA))
    assert by_path.bucket_thresholds == cfg.bucket_thresholds
    assert by_path.get_thresholds(9, 10, "qk", 3, 4) == (0.6, 0.3, 0.0)
    assert by_path.get_thresholds(9, 10, "qk", 0, 4) == (0.7, 0.4, 0.1)
    assert by_path.get_thresholds(0, 1, "attn") is None
    text = DATA.read_text()
    assert mp.AdaptiveMPConfig.from_json(text) == cfg == mp.AdaptiveMPConfig.from_json(json.loads(text))


def test_json_round_trip(tmp_path):
    cfg = mp.AdaptiveMPConfig.from_json(DATA)
    out = tmp_path / "table.json"
    payload = cfg.to_json(out)
    again = mp.AdaptiveMPConfig.from_json(out)
    assert again == cfg and hash(again) == hash(cfg)
    assert json.loads(out.read_text()) == payload
    assert payload["buckets"]["qk:t1:l1"] == {"thresholds": [0.6, 0.3, 0.0]}


def test_json_errors(tmp_path):
    with pytest.raises(ValueError, match="do not match"):
        mp.AdaptiveMPConfig.from_json(DATA, stoc_len_levels=[256, 128, 64])
    with pytest.raises(ValueError, match="do not match"):   # pruning drops the table's 0 level
        mp.AdaptiveMPConfig.from_json(DATA, enable_pruning=False)
    bad = json.loads(DATA.read_text())
    bad["buckets"]["qk:x0:l0"] = [0.5, 0.4, 0.3]
    with pytest.raises(ValueError, match="bucket key"):
        mp.AdaptiveMPConfig.from_json(bad)
    bad = json.loads(DATA.read_text())
    bad["operator_defaults"]["av"] = {"thresholds": [0.1, 0.4, 0.5]}
    with pytest.raises(ValueError, match="non-increasing"):
        mp.AdaptiveMPConfig.from_json(bad)
    with pytest.raises(ValueError, match="stoc_len_levels"):
        mp.AdaptiveMPConfig.from_json({"buckets": {}})


# ---------------------------------------------------------------- cost reports
def test_cycle_budget_hand_worked():
    b = mp.cycle_budget(np.array([256, 128, 0]), np.array([64, 256]), D=10, max_len=256)
    # min matrix [[64, 256], [64, 128], [0, 0]] sums to 512
    assert (b.used, b.baseline) == (5120, 3 * 2 * 10 * 256)
    assert b.ratio == pytest.approx(1 / 3) and b.savings == pytest.approx(2 / 3)
    r = mp.cycle_budget(np.array([256, 64, 64, 0]), M=5, D=3, max_len=256)
    assert (r.used, r.baseline) == (384 * 5 * 3, 4 * 5 * 3 * 256)
    c = mp.cycle_budget(col_stoc_len=jnp.array([128, 128]), N=2, max_len=256)
    assert c.ratio == 0.5
    assert (r + c).used == r.used + c.used
    a = mp.classify_rows_by_metric(jnp.array([3.0, 1.0, 2.0, 0.0]), [256, 64, 0], (0.25, 0.5, 0.25))
    assert mp.cycle_budget(a, M=1).used == 256 + 64 + 64
    with pytest.raises(ValueError):
        mp.cycle_budget(np.array([512]), M=1, max_len=256)
    with pytest.raises(ValueError):
        mp.cycle_budget(np.array([1.0]), M=1)
    with pytest.raises(ValueError):
        mp.cycle_budget(np.array([64]))


def test_distribution_logger(tmp_path):
    log = mp.MPDistributionLogger()
    a = mp.classify_rows_by_metric(jnp.array([3.0, 1.0, 2.0, 0.0, 5.0]), [256, 64, 0],
                                   (0.4, 0.4, 0.2))
    e = log.log(0, 1, "qk", a)
    assert e == {"timestep": 0, "block": 1, "operator": "qk", "total_rows": 5,
                 "sl_256_count": 2, "sl_256_frac": 0.4, "sl_64_count": 2, "sl_64_frac": 0.4,
                 "sl_0_count": 1, "sl_0_frac": 0.2}
    t = log.totals(max_stoc_len=256)
    assert (t["baseline"], t["actual"]) == (5 * 256, 2 * 256 + 2 * 64)
    budget = mp.cycle_budget(np.array([256, 128]), np.array([256, 64, 64]), max_len=256)
    log.log_budget(0, 1, "mlp_fc1", budget)
    t = log.totals(max_stoc_len=256)
    assert t["per_operator"]["mlp_fc1"] == (budget.baseline, budget.used)
    assert t["baseline"] == 5 * 256 + budget.baseline
    log.log_compute(0, 2, "qk", 100, 50)    # qk now has a compute record: its entries are ignored
    assert log.totals(256)["per_operator"]["qk"] == (100, 50)
    text = log.summary(256, save_path=tmp_path / "s.txt")
    assert "qk" in text and (tmp_path / "s.txt").read_text().strip() == text
    assert log.dump_csv(tmp_path / "d.csv") == 1 and log.entries == []
    header = (tmp_path / "d.csv").read_text().splitlines()[0]
    assert header == ("timestep,block,operator,total_rows,sl_256_count,sl_256_frac,"
                      "sl_64_count,sl_64_frac,sl_0_count,sl_0_frac")
    log.clear()
    assert log.summary() == "" and mp.MPDistributionLogger().entries == []


def test_budget_logger_and_profiler(tmp_path):
    bl = mp.AutoMPBudgetLogger()
    bl.record(0, "qk", 10, 5)
    assert bl.snapshot() == []
    with bl.recording():
        bl.record(0, "qk", 10, 5)
        bl.record_budget(1, "av", mp.CycleBudget(used=3, baseline=8))
    assert not bl.enabled
    assert bl.totals() == {"baseline": 18.0, "actual": 8.0}
    assert len(bl.snapshot(clear=True)) == 2 and bl.entries == []
    assert mp.AutoMPBudgetLogger().entries == []          # no state shared between instances
    prof = mp.MetricProfiler()
    prof.record(jnp.arange(5.0), 0, 1, "qk")
    e = prof.entries[0]
    assert (e["N"], e["mean"], e["min"], e["max"], e["q25"]) == (5, 2.0, 0.0, 4.0, 1.0)
    assert e["std"] == pytest.approx(np.sqrt(2.5))
    assert prof.dump_csv(tmp_path / "p.csv") == 1
