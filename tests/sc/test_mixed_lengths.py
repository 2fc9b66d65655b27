"""Mixed stream lengths in one call (row_stoc_len / col_stoc_len) == golden.mp.sc_matmul_mixed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import golden
import scmp_jax
from tests.helpers import CONFIG_KINDS, DISTS, assert_same_bits, config_dict, make_values


@st.composite
def mixed_cases(draw):
    p = draw(st.sampled_from([3, 4, 6, 8, 8]))
    B = 2 ** p
    N, M, D = draw(st.integers(1, 14)), draw(st.integers(1, 14)), draw(st.integers(1, 60))
    levels = sorted(set(draw(st.lists(st.integers(0, B), min_size=1, max_size=4))))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    which = draw(st.sampled_from(["row", "col", "both"]))
    rl = rng.choice(levels, N) if which != "col" else None
    cl = rng.choice(levels, M) if which != "row" else None
    kw = dict(mode=draw(st.sampled_from(["bipolar", "unipolar"])), sc_prec=p,
              rng_levels=draw(st.one_of(st.none(), st.integers(1, B))),
              group_a=draw(st.integers(1, N + 1)), group_b=draw(st.integers(1, M + 1)),
              halve_bipolar_stoc_len=draw(st.booleans()),
              scramble=draw(st.sampled_from(["bitrev", "counter", "off", "random"])),
              config=config_dict(draw(st.sampled_from(CONFIG_KINDS)), D, p, seed))
    if draw(st.integers(0, 3)) == 0:
        kw["smooth_scales"] = (rng.random(D) * 4 + 0.25).astype(np.float32)
    a = make_values((N, D), draw(st.sampled_from(DISTS)), seed)
    b = make_values((M, D), draw(st.sampled_from(DISTS)), seed + 1)
    return a, b, rl, cl, kw


def _check(case, impl):
    a, b, rl, cl, kw = case
    ref = golden.sc_matmul_mixed(a, b, row_stoc_len=rl, col_stoc_len=cl, **kw)
    out = scmp_jax.sc_matmul(a, b, row_stoc_len=rl, col_stoc_len=cl, implementation=impl, **kw)
    assert_same_bits(np.asarray(out), ref)


@settings(max_examples=30)
@given(mixed_cases())
def test_golden_mixed_xla_matches_golden(case):
    _check(case, "xla")


@pytest.mark.gpu
@settings(max_examples=10)
@given(mixed_cases())
def test_golden_mixed_pallas_matches_golden(case):
    _check(case, "pallas")


def _ab(N=6, M=5, D=24, seed=0):
    r = np.random.default_rng(seed)
    return r.standard_normal((N, D)).astype(np.float32), r.standard_normal((M, D)).astype(np.float32)


def test_each_row_equals_single_length_call():
    a, b = _ab()
    rl = np.array([256, 64, 0, 16, 64, 256])
    out = np.asarray(scmp_jax.sc_matmul(a, b, row_stoc_len=rl))
    for n, L in enumerate(rl):
        if L == 0:
            assert np.all(out[n] == 0) and not np.any(np.signbit(out[n]))
        else:
            assert_same_bits(out[n], golden.sc_matmul(a, b, stoc_len=int(L))[n])


def test_under_jit_needs_static_levels():
    a, b = _ab()
    rl = np.array([64, 64, 16, 0, 16, 64], np.int32)
    f = jax.jit(lambda x, y, r: scmp_jax.sc_matmul(x, y, row_stoc_len=r, stoc_levels=(64, 16, 0)))
    assert_same_bits(np.asarray(f(a, b, rl)), golden.sc_matmul_mixed(a, b, row_stoc_len=rl))
    g = jax.jit(lambda x, y, r: scmp_jax.sc_matmul(x, y, row_stoc_len=r))
    with pytest.raises(ValueError, match="stoc_levels"):
        g(a, b, rl)


def test_length_outside_levels_is_nan_not_wrong():
    a, b = _ab()
    rl = np.array([64, 32, 64, 64, 64, 64])
    out = np.asarray(scmp_jax.sc_matmul(a, b, row_stoc_len=rl, stoc_levels=(64,)))
    assert np.all(np.isnan(out[1])) and np.all(np.isfinite(np.delete(out, 1, 0)))


def test_pruned_rows_are_zero_even_with_nan_input():
    a, b = _ab()
    a[2, 0] = np.nan
    out = np.asarray(scmp_jax.sc_matmul(a, b, row_stoc_len=np.array([8, 8, 0, 8, 8, 8])))
    assert np.all(out[2] == 0)
    a[3, 0] = np.nan
    out = np.asarray(scmp_jax.sc_matmul(a, b, row_stoc_len=np.array([8, 8, 0, 8, 8, 8])))
    assert np.all(np.isnan(out[3]))


@pytest.mark.parametrize("kw,match", [
    (dict(row_stoc_len=np.ones(6, np.float32)), "int"),
    (dict(row_stoc_len=np.ones(5, np.int32)), r"shape \(6,\)"),
    (dict(col_stoc_len=np.ones(4, np.int32)), r"shape \(5,\)"),
    (dict(row_stoc_len=np.full(6, 300)), "2\\*\\*sc_prec"),
    (dict(row_stoc_len=np.full(6, 8), stoc_len=8), "stoc_len"),
    (dict(row_stoc_len=np.full(6, 8), chunk_d=4), "chunk_d"),
    (dict(row_stoc_len=np.full(6, 8), granularity="per_tensor"), "per_row"),
    (dict(row_stoc_len=np.full(6, 8), stoc_levels=(8, 999)), "stoc_levels"),
])
def test_mixed_validation(kw, match):
    a, b = _ab()
    with pytest.raises(ValueError, match=match):
        scmp_jax.sc_matmul(a, b, **kw)


def test_classifier_to_mixed_call_under_jit():
    """mp classifier -> per-row lengths -> one sc_matmul, all inside one jit."""
    a, b = _ab(N=10, M=5, D=32, seed=3)

    @jax.jit
    def f(x, y):
        asg = scmp_jax.mp.classify_rows_by_metric(jnp.max(jnp.abs(x), axis=1), (64, 16, 0),
                                                  (0.3, 0.4, 0.3))
        return scmp_jax.sc_matmul(x, y, row_stoc_len=asg.stoc_len,
                                  stoc_levels=asg.stoc_len_levels), asg.stoc_len

    out, lens = f(a, b)
    # top 3 rows by max|x| get 64, the next 4 get 16, the last 3 are pruned
    order = np.argsort(-np.abs(a).max(1), kind="stable")
    np.testing.assert_array_equal(np.asarray(lens)[order], [64] * 3 + [16] * 4 + [0] * 3)
    assert_same_bits(np.asarray(out), golden.sc_matmul_mixed(a, b, row_stoc_len=np.asarray(lens)))
