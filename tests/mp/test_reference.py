"""scmp_jax.mp classifiers == golden.mp (Hypothesis), and golden.mp.sc_matmul_mixed
(per-row / per-column stream lengths, SPEC.md section 7)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import golden
import golden.mp as gmp
from tests.helpers import assert_same_bits, make_values
from scmp_jax import mp

# Few distinct shapes: every (N, levels) pair is one compile of the jitted classifier.
# No subnormal inputs or thresholds: XLA on CPU flushes them (see scmp_jax/mp/classify.py).
SIZES = (1, 2, 3, 5, 8, 13, 32)
UNIT = st.floats(0, 1, width=32, allow_subnormal=False)
POOL = (0.0, -0.0, 0.5, 1.0, 2.5, -3.0, 1e-9, 1e-30, 3e38, float("nan"), float("inf"),
        float("-inf"))


@st.composite
def metrics(draw):
    n = draw(st.sampled_from(SIZES))
    value = st.one_of(st.sampled_from(POOL), st.floats(width=32, allow_subnormal=False),
                      st.floats(-1, 1, width=32, allow_subnormal=False))
    narrow = draw(st.booleans())          # many ties / a tiny spread
    if narrow:
        base = draw(st.floats(-10, 10, width=32, allow_subnormal=False))
        vals = [np.float32(base) + np.float32(draw(st.sampled_from([0.0, 1e-9, 2e-8, 1e-7])))
                for _ in range(n)]
    else:
        vals = [draw(value) for _ in range(n)]
    return np.asarray(vals, np.float32)


@st.composite
def fractions(draw, n_levels=None):
    n = draw(st.integers(1, 5)) if n_levels is None else n_levels
    w = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))
    w[draw(st.integers(0, n - 1))] = draw(st.integers(1, 8))        # not all zero
    return tuple(x / sum(w) for x in w)


def thresholds(n):
    return st.lists(UNIT, min_size=n - 1, max_size=n - 1).map(
        lambda t: tuple(sorted(t, reverse=True)))


def _levels(n):
    return tuple(2 ** (n - 1 - i) * 16 for i in range(n))


@settings(max_examples=60)
@given(metrics(), fractions())
def test_quantile_matches_golden(m, fr):
    got = mp.classify_rows_by_metric(m, _levels(len(fr)), fr)
    assert np.asarray(got.row_levels).tolist() == gmp.classify_quantile(m, fr).tolist()
    assert mp.quantile_counts(len(m), fr) == tuple(gmp.quantile_counts(len(m), fr))


@settings(max_examples=60)
@given(metrics(), st.integers(2, 4).flatmap(lambda n: st.tuples(st.just(n), thresholds(n))))
def test_thresholds_match_golden(m, nt):
    n, th = nt
    cfg = mp.AdaptiveMPConfig(_levels(n), operator_default_thresholds={"op": th})
    got = mp.adaptive_classify_rows(m, cfg, "op")
    assert np.asarray(got.row_levels).tolist() == gmp.classify_thresholds(m, th).tolist()


@settings(max_examples=60)
@given(metrics(), st.integers(2, 4).flatmap(
    lambda n: st.tuples(st.just(n), st.lists(UNIT, min_size=n - 1, max_size=n - 1))))
def test_free_boundaries_match_golden(m, nb):
    n, b = nb
    cfg = mp.FreeBoundaryMPConfig(_levels(n)).with_boundaries("op", 2, b)
    got = mp.adaptive_classify_rows(m, cfg, "op", block_idx=2)
    assert np.asarray(got.row_levels).tolist() == gmp.classify_free_boundaries(m, b).tolist()


@st.composite
def rows_and_group(draw):
    """(M, group_size): a group size of 0 or -1 (one group), at least M (one
    group) or a divisor of M; the classifier refuses groups that do not tile M."""
    M = draw(st.sampled_from([1, 2, 4, 6, 8, 12]))
    divisors = [d for d in range(1, M + 1) if M % d == 0]
    return M, draw(st.one_of(st.integers(-1, 0), st.sampled_from(divisors),
                             st.integers(M, 13)))


@settings(max_examples=60)
@given(rows_and_group(), st.sampled_from([1, 3, 8]), st.integers(2, 4),
       st.one_of(st.just(0.0), st.floats(-0.5, -1e-30), st.floats(1e-30, 2.0)),
       st.sampled_from(["normal", "outliers", "ties", "constant_rows", "zero_rows"]),
       st.integers(0, 2 ** 16))
def test_range_matches_golden(mg, K, n, threshold, dist, seed):
    M, group_size = mg
    w = make_values((M, K), dist, seed)
    cfg = mp.RangeMPConfig(_levels(n), base_threshold=threshold)
    got = mp.classify_groups_by_range(w, group_size, cfg)
    want = gmp.classify_groups_by_range(w, group_size, n, threshold)
    assert np.asarray(got.row_levels).tolist() == want.tolist()


@settings(max_examples=40)
@given(st.lists(st.sampled_from([0, 1, 7, 64, 256]), min_size=1, max_size=9),
       st.one_of(st.none(), st.lists(st.sampled_from([0, 3, 64, 128, 256]), min_size=1, max_size=7)),
       st.integers(1, 5))
def test_cycle_budget_matches_golden(rows, cols, D):
    r = np.asarray(rows, np.int32)
    c = None if cols is None else np.asarray(cols, np.int32)
    M = 4 if c is None else len(c)
    got = mp.cycle_budget(r, c, M=M, D=D, max_len=256)
    assert (got.used, got.baseline) == gmp.cycle_budget(r, c, len(r), M, D, 256)


# ---------------------------------------------------------- golden mixed matmul
def _ab(N, M, D, seed, dist="normal"):
    return make_values((N, D), dist, seed), make_values((M, D), "outliers", seed + 1)


@pytest.mark.parametrize("mode", ["bipolar", "unipolar"])
@pytest.mark.parametrize("L", [1, 37, 128, 256])
def test_mixed_single_length_equals_single_call(mode, L):
    a, b = _ab(6, 5, 40, L)
    kw = dict(mode=mode, sc_prec=8, group_a=2)
    ref = golden.sc_matmul(a, b, "per_row", stoc_len=L, **kw)
    assert_same_bits(gmp.sc_matmul_mixed(a, b, np.full(6, L), **kw), ref)
    assert_same_bits(gmp.sc_matmul_mixed(a, b, col_stoc_len=np.full(5, L), **kw), ref)


@pytest.mark.parametrize("mode,halve", [("bipolar", False), ("bipolar", True), ("unipolar", False)])
def test_mixed_rows_equal_per_row_calls(mode, halve):
    """Row n == the bit-level single-length call on row n alone (group_a = 1)."""
    p = 7
    L_rows = np.array([64, 0, 17, 64, 1, 0, 128 if not halve else 33], np.int64)
    a, b = _ab(len(L_rows), 4, 24, 5, "zero_rows")
    a[5, 3] = np.nan                                   # pruned row: zero, never computed
    kw = dict(mode=mode, sc_prec=p, halve_bipolar_stoc_len=halve, scramble="counter")
    out = gmp.sc_matmul_mixed(a, b, L_rows, **kw)
    for n, L in enumerate(L_rows):
        if L == 0:
            assert np.all(out[n] == 0) and not np.any(np.signbit(out[n]))
            continue
        row = golden.sc_matmul_bitlevel(a[n:n + 1], b, "per_row", stoc_len=int(L), **kw)
        assert_same_bits(out[n:n + 1], row)


def test_mixed_rows_and_cols_use_the_smaller_length():
    a, b = _ab(5, 6, 30, 11)
    r = np.array([256, 128, 0, 64, 128])
    c = np.array([64, 256, 256, 0, 128, 32])
    kw = dict(mode="bipolar", sc_prec=8, group_b=3)
    out = gmp.sc_matmul_mixed(a, b, r, c, **kw)
    for n in range(5):
        for m in range(6):
            L = min(r[n], c[m])
            want = 0.0 if L == 0 else golden.sc_matmul(a, b, stoc_len=int(L), **kw)[n, m]
            assert out[n, m].view(np.int32) == np.float32(want).view(np.int32), (n, m)


def test_mixed_rng_levels_do_not_follow_row_length():
    """G stays 2**p (or the halved 2**(p-1), or the given rng_levels) for every row."""
    a, b = _ab(3, 3, 16, 2)
    for extra in (dict(), dict(rng_levels=40), dict(halve_bipolar_stoc_len=True)):
        out = gmp.sc_matmul_mixed(a, b, np.array([16, 16, 16]), sc_prec=6, **extra)
        assert_same_bits(out, golden.sc_matmul(a, b, stoc_len=16, sc_prec=6, **extra))


def test_mixed_chunk_d_and_all_pruned():
    a, b = _ab(4, 3, 20, 3)
    r = np.array([32, 8, 32, 0])
    out = gmp.sc_matmul_mixed(a, b, r, sc_prec=6, chunk_d=7)
    assert_same_bits(out[:1], golden.sc_matmul(a, b, stoc_len=32, sc_prec=6, chunk_d=7)[:1])
    assert_same_bits(gmp.sc_matmul_mixed(a, b, np.zeros(4, np.int32)), np.zeros((4, 3), np.float32))
    assert_same_bits(gmp.sc_matmul_mixed(a, b), golden.sc_matmul(a, b))


@pytest.mark.parametrize("args,kwargs", [
    ((np.array([4, 4]),), dict()),                             # wrong length
    ((np.array([4.0, 4.0, 4.0, 4.0]),), dict()),               # not ints
    ((np.array([4, 4, 4, 257]),), dict()),                     # > 2**sc_prec
    ((np.array([4, 4, 4, -1]),), dict()),
    ((np.array([4, 4, 4, 4]),), dict(stoc_len=4)),
    ((np.array([4, 4, 4, 4]),), dict(granularity="per_tensor")),
    ((None, np.array([4, 4])), dict()),
    ((np.array([4, 4, 4, 4]),), dict(sc_prec=13)),
    ((np.zeros(4, np.int32),), dict(group_a=0)),               # validated even when all pruned
])
def test_mixed_validation(args, kwargs):
    a, b = _ab(4, 3, 8, 0)
    with pytest.raises(ValueError):
        gmp.sc_matmul_mixed(a, b, *args, **kwargs)


def test_mixed_rejects_3d():
    a = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ValueError):
        gmp.sc_matmul_mixed(a, a, np.array([4, 4, 4]))


@settings(max_examples=30)
@given(metrics(), thresholds(3), st.sampled_from([2, 4, 8]), st.integers(0, 2 ** 16))
def test_integer_division_path_matches_golden(m, th, M, seed):
    """The exact integer division that GPUs use (forced here on CPU)."""
    from scmp_jax._src.ieee import soft_division
    cfg = mp.AdaptiveMPConfig((8, 4, 2), operator_default_thresholds={"op": th})
    w = make_values((M, 3), "outliers", seed)
    with soft_division(True):
        got = mp.adaptive_classify_rows(m, cfg, "op")
        got_r = mp.classify_groups_by_range(w, 2, mp.RangeMPConfig((8, 4, 2)))
    assert np.asarray(got.row_levels).tolist() == gmp.classify_thresholds(m, th).tolist()
    assert np.asarray(got_r.row_levels).tolist() == gmp.classify_groups_by_range(w, 2, 3, 0.3).tolist()
