"""Mixed precision inside flax models (``SC(mp=...)``, ``sc_dot_general(mp=...)``):
the model's bits equal per-row ``sc_matmul(..., row_stoc_len=...)`` calls built
from golden's classification of the same rows (and golden's mixed matmul), the
report's histograms and cycle costs equal golden's counts, under jit, on sharded
inputs, and bad arguments name themselves."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import golden
import golden.mp as gmp
from scmp_jax import mp, sc_matmul
from scmp_jax.flax import SC, Rule, sc_dot_general, simulate
from tests.helpers import TwoBlockNet as Net, assert_same_bits

PREC = 5
BLOCKS = r"layer_(\d+)"


class NBlock(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(6, 8, rngs=rngs)
        self.fc2 = nnx.Linear(8, 6, rngs=rngs)

    def __call__(self, x):
        return x + self.fc2(nnx.relu(self.fc1(x)))


class NNet(nnx.Module):
    def __init__(self, rngs):
        self.layer_0 = NBlock(rngs)
        self.layer_1 = NBlock(rngs)

    def __call__(self, x):
        return self.layer_1(self.layer_0(x))


def rnd(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def mixed_linear(x, w, b, impl, *, rows=None, cols=None):
    """``x @ w + b`` by ONE ``sc_matmul`` with per-row (``rows``) or per-weight-column
    (``cols``) stream lengths, checked against golden's mixed matmul; also returns
    golden's cycle budget (used, baseline)."""
    x2 = np.asarray(x, np.float32).reshape(-1, x.shape[-1])
    wt = np.asarray(w, np.float32).T
    y = sc_matmul(x2, wt, row_stoc_len=rows, col_stoc_len=cols, sc_prec=PREC,
                  implementation=impl)
    assert_same_bits(y, golden.sc_matmul_mixed(x2, wt, row_stoc_len=rows, col_stoc_len=cols,
                                               sc_prec=PREC))
    N, M = x2.shape[0], wt.shape[0]
    top = max(int(np.max(v)) for v in (rows, cols) if v is not None)
    budget = gmp.cycle_budget(rows, cols, N, M, x2.shape[1], top)
    return jnp.reshape(y, x.shape[:-1] + (-1,)) + b, budget


def check_report(report, expected):
    """Each MP record's histogram and cycles equal the (levels, lengths, budget) given."""
    assert len(report.mp) == len(expected)
    for rec, (block, op, levels, n_levels, stoc, budget) in zip(report.mp, expected):
        assert (rec.block, rec.operator) == (block, op)
        want = np.bincount(levels, minlength=n_levels).tolist()
        assert list(rec.histogram.values()) == want and tuple(rec.histogram) == stoc
        assert (rec.budget.used, rec.budget.baseline) == budget
    total = report.mp_budget()
    assert total.used == sum(e[-1][0] for e in expected)


FB = mp.FreeBoundaryMPConfig((32, 16, 8), boundaries={(1, "fc1"): (0.7, 0.25)})
AD = mp.AdaptiveMPConfig((32, 8, 0), layer_buckets=2,
                         operator_default_thresholds={"fc2": (0.5, 0.1)},
                         bucket_thresholds={("fc2", 0, 1): (0.8, 0.3)})


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_golden_linen_mp_rules_equal_per_row_calls(impl):
    """Free boundaries on fc1 (block 1 has its own), calibrated thresholds with
    layer buckets on fc2 (block 1 reads bucket l1, block 0 the default), jitted."""
    x = rnd((2, 3, 6))
    v = Net().init(jax.random.key(1), x)
    rules = [Rule(r"layer_\d+/fc1", SC(mp=FB, sc_prec=PREC, implementation=impl)),
             Rule(r"layer_\d+/fc2", SC(mp=AD, sc_prec=PREC, implementation=impl))]
    sim = simulate(Net(), rules, block_path=BLOCKS)
    out = jax.jit(sim.apply)(v, x)
    h, expected = x, []
    for i in range(2):
        p = v["params"][f"layer_{i}"]
        lv1 = gmp.classify_free_boundaries(gmp.row_metric(h.reshape(-1, 6)),
                                           FB.get_boundaries("fc1", i))
        L1 = np.asarray(FB.stoc_len_levels)[lv1]
        a, bud1 = mixed_linear(h, p["fc1"]["kernel"], p["fc1"]["bias"], impl, rows=L1)
        a = nn.relu(a)
        lv2 = gmp.classify_thresholds(gmp.row_metric(a.reshape(-1, 8)),
                                      AD.get_thresholds(0, 1, "fc2", i, 2))
        L2 = np.asarray(AD.stoc_len_levels)[lv2]
        y, bud2 = mixed_linear(a, p["fc2"]["kernel"], p["fc2"]["bias"], impl, rows=L2)
        h = h + y
        expected += [(i, "fc1", lv1, 3, FB.stoc_len_levels, bud1),
                     (i, "fc2", lv2, 3, AD.stoc_len_levels, bud2)]
    assert_same_bits(out, h)
    check_report(sim.report, expected)
    assert "L32:" in sim.report.table() and "cycles" in sim.report.table()


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_golden_nnx_quantile_and_weight_range_rules(impl):
    """nnx: quantile MP on the activations of fc1, weight groups by range on fc2
    (its output features get col_stoc_len), under nnx.jit."""
    x = rnd((2, 3, 6), 2)
    model = NNet(nnx.Rngs(0))
    q = mp.MPConfig((32, 16, 0), (0.5, 0.25, 0.25))
    rg = mp.RangeMPConfig((32, 16, 8), base_threshold=0.5)
    rules = [Rule(r".*/fc1", SC(mp=q, sc_prec=PREC, implementation=impl)),
             Rule(r".*/fc2", SC(mp=rg, mp_group_size=2, sc_prec=PREC, implementation=impl))]
    sims = []

    def run(m, x):
        sims.append(simulate(m, rules, block_path=BLOCKS))
        return sims[-1](x)
    out = nnx.jit(run)(model, x)
    h, expected = x, []
    for i in range(2):
        blk = getattr(model, f"layer_{i}")
        lv1 = gmp.classify_quantile(gmp.row_metric(h.reshape(-1, 6)), q.level_fractions)
        a, bud1 = mixed_linear(h, blk.fc1.kernel[...], blk.fc1.bias[...], impl,
                               rows=np.asarray(q.stoc_len_levels)[lv1])
        a = nnx.relu(a)
        w2 = blk.fc2.kernel[...]
        groups = gmp.classify_groups_by_range(np.asarray(w2).T, 2, 3, 0.5)
        lv2 = np.repeat(groups, 2)
        y, bud2 = mixed_linear(a, w2, blk.fc2.bias[...], impl,
                               cols=np.asarray(rg.stoc_len_levels)[lv2])
        h = h + y
        expected += [(i, "fc1", lv1, 3, q.stoc_len_levels, bud1),
                     (i, "fc2", lv2, 3, rg.stoc_len_levels, bud2)]
    assert_same_bits(out, h)
    check_report(sims[0].report, expected)
    assert [r.side for r in sims[0].report.mp] == ["lhs", "rhs"] * 2


class Scores(nn.Module):
    @nn.compact
    def __call__(self, x):
        q, k = nn.Dense(4, name="q")(x), nn.Dense(4, name="k")(x)
        return jnp.einsum("bqd,bkd->bqk", q, k)


def test_golden_act_act_op_metric_by_operator_name():
    """An act x act einsum with batch dims: rows of every batch classified together
    by the operator's metric ("av" -> attn_row_max, a signed max), one mixed call per
    batch entry; the weight ops stay exact."""
    x = rnd((2, 4, 5), 3)
    v = Scores().init(jax.random.key(0), x)
    cfg = mp.MPConfig((16, 8, 4), (0.25, 0.5, 0.25))
    rule = Rule("", SC(mp=cfg, sc_prec=PREC), act_act=True, op_names=("einsum",), operator="av")
    sim = simulate(Scores(), [rule])
    out = jax.jit(sim.apply)(v, x)
    p = v["params"]
    q = x @ p["q"]["kernel"] + p["q"]["bias"]
    k = x @ p["k"]["kernel"] + p["k"]["bias"]
    metric = gmp.row_metric(q.reshape(-1, 4), "attn_row_max")
    assert not np.array_equal(gmp.classify_quantile(metric, cfg.level_fractions),
                              gmp.classify_quantile(np.abs(np.asarray(q)).max(-1).reshape(-1),
                                                    cfg.level_fractions))
    L = np.asarray(cfg.stoc_len_levels)[gmp.classify_quantile(metric, cfg.level_fractions)]
    L = L.reshape(2, 4)
    ref = np.stack([golden.sc_matmul_mixed(np.asarray(q[b]), np.asarray(k[b]),
                                           row_stoc_len=L[b], sc_prec=PREC) for b in range(2)])
    assert_same_bits(out, ref)
    rec = sim.report.mp[0]
    assert (rec.operator, rec.rows, rec.cols, rec.depth) == ("av", 8, 4, 4)
    assert rec.budget.used == gmp.cycle_budget(L.reshape(-1), None, 8, 4, 4, 16)[0]


@pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 devices")
def test_golden_sharded_inputs():
    """Rows sharded over 4 devices: the jitted simulated model gives the unsharded
    bits (the quantile ranks rows across shards), and an injected
    sc_dot_general(mp=...) runs eagerly on the sharded array."""
    mesh = Mesh(np.asarray(jax.devices()[:4]), ("batch",))
    x = rnd((4, 2, 6), 4)
    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    v = Net().init(jax.random.key(1), x)
    cfg = mp.MPConfig((32, 8), (0.5, 0.5))
    sim = simulate(Net(), [Rule(r"layer_\d+/fc\d", SC(mp=cfg, sc_prec=PREC))],
                   block_path=BLOCKS)
    f = jax.jit(sim.apply)
    assert_same_bits(f(v, xs), f(v, x))
    d = nn.Dense(8, dot_general=sc_dot_general(mp=cfg, sc_prec=PREC))
    vd = d.init(jax.random.key(2), x)
    W, b = vd["params"]["kernel"], vd["params"]["bias"]
    L = np.asarray(cfg.stoc_len_levels)[gmp.classify_quantile(
        gmp.row_metric(np.asarray(x).reshape(-1, 6)), cfg.level_fractions)]
    ref = golden.sc_matmul_mixed(np.asarray(x).reshape(-1, 6), np.asarray(W).T,
                                 row_stoc_len=L, sc_prec=PREC).reshape(4, 2, 8) + b
    assert_same_bits(d.apply(vd, xs), ref)


def test_mp_arguments_are_validated():
    fb = mp.FreeBoundaryMPConfig((16, 8))
    with pytest.raises(TypeError, match="mp must be"):
        SC(mp={"stoc_len_levels": (16, 8)})
    with pytest.raises(ValueError, match="mp_metric"):
        SC(mp=fb, mp_metric="row_mean")
    with pytest.raises(ValueError, match="mp_side"):
        SC(mp=fb, mp_side="left")
    with pytest.raises(ValueError, match="mp_group_size"):
        SC(mp=mp.RangeMPConfig((16, 8)))
    with pytest.raises(ValueError, match="mp_group_size"):
        SC(mp=fb, mp_group_size=2)
    with pytest.raises(ValueError, match="mp_metric needs mp"):
        SC(mp_metric="x_row_max")
    with pytest.raises(ValueError, match="granularity"):
        SC("per_tensor", mp=fb)
    with pytest.raises(ValueError, match="stoc_len"):
        SC(mp=fb, stoc_len=8)
    with pytest.raises(ValueError, match="sc_prec"):
        SC(mp=fb, sc_prec=3)
    with pytest.raises(ValueError, match="operator"):
        Rule(".*", SC(mp=fb), operator="")
    with pytest.raises(ValueError, match="mp_block"):
        sc_dot_general(mp=fb, mp_block=-1)
    with pytest.raises(TypeError, match="mp must be"):
        sc_dot_general(mp="fb")
    with pytest.raises(ValueError, match="block_path"):
        simulate(Net(), [], block_path=r"layer_\d+")
    with pytest.raises(TypeError, match="plan"):
        simulate(Net(), [], plan={"boundaries": {}})
    x = jnp.ones((2, 6))
    v = Net().init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="block_path"):       # free boundaries need a block
        simulate(Net(), [Rule(r".*/fc1", SC(mp=fb, sc_prec=PREC))]).apply(v, x)


def test_golden_nnx_applies_a_plan():
    """simulate(nnx_model, rules, plan=...): the plan's boundaries replace the
    config's for their (block, op), and block 1's output gets x @ kernel + bias."""
    x = rnd((2, 3, 6), 5)
    model = NNet(nnx.Rngs(1))
    rules = [Rule(r".*/fc1", SC(mp=FB, sc_prec=PREC)),
             Rule(r".*/fc2", SC(sc_prec=PREC, stoc_len=16))]
    r = np.random.default_rng(0)
    kernel = (r.standard_normal((6, 6)) * 0.1).astype(np.float32)
    bias = (r.standard_normal(6) * 0.1).astype(np.float32)
    plan = mp.MPPlan(BLOCKS, {(0, "fc1"): (0.9, 0.5)},
                     {"block_1": {"kernel": kernel, "bias": bias}}, ())
    sims = []

    def run(m, x):
        sims.append(simulate(m, rules, plan=plan))
        return sims[-1](x)
    out = nnx.jit(run)(model, x)
    h, inputs, levels = x, [], []
    for i in range(2):
        blk = getattr(model, f"layer_{i}")
        bounds = plan.boundaries.get((i, "fc1"), FB.get_boundaries("fc1", i))
        lv = gmp.classify_free_boundaries(gmp.row_metric(h.reshape(-1, 6)), bounds)
        a, _ = mixed_linear(h, blk.fc1.kernel[...], blk.fc1.bias[...], "xla",
                            rows=np.asarray(FB.stoc_len_levels)[lv])
        a2 = np.asarray(nnx.relu(a)).reshape(-1, 8)
        y = golden.sc_matmul(a2, np.asarray(blk.fc2.kernel[...]).T, sc_prec=PREC, stoc_len=16)
        inputs.append(h)
        h, levels = h + (jnp.asarray(y).reshape(2, 3, 6) + blk.fc2.bias[...]), levels + [lv]
    assert [r.histogram for r in sims[0].report.mp] == [
        dict(zip(FB.stoc_len_levels, np.bincount(lv, minlength=3).tolist())) for lv in levels]
    comp = np.asarray(inputs[1], np.float64) @ kernel + bias
    np.testing.assert_allclose(out, np.asarray(h, np.float64) + comp, rtol=1e-6, atol=1e-6)
    assert np.abs(comp).max() > 1e-2                          # the correction is there
