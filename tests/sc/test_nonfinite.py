"""NaN/Inf policy (SPEC.md section 7): every output touched by a non-finite input
or a non-finite scale is NaN; everything else equals the finite-only result."""
import numpy as np
import pytest

import golden
import scmp_jax
from tests.helpers import assert_same_bits

R = np.random.default_rng(0)


def _both(a, b, g, **kw):
    ref = golden.sc_matmul(a, b, g, **kw)
    out = np.asarray(scmp_jax.sc_matmul(a, b, g, **kw))
    assert_same_bits(out, ref)
    return ref


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("mode", ["bipolar", "unipolar"])
def test_golden_per_row_nan_rows_and_cols(bad, mode):
    a = R.standard_normal((6, 20)).astype(np.float32)
    b = R.standard_normal((5, 20)).astype(np.float32)
    a[2, 7] = bad
    b[4, 0] = bad
    out = _both(a, b, "per_row", mode=mode)
    expect = np.zeros(out.shape, bool)
    expect[2, :] = True
    expect[:, 4] = True
    assert np.array_equal(np.isnan(out), expect)


def test_golden_per_row_group_spreads_nan_to_group():
    a = R.standard_normal((7, 12)).astype(np.float32)
    b = R.standard_normal((3, 12)).astype(np.float32)
    a[4, 1] = np.nan
    out = _both(a, b, "per_row", group_a=3)
    assert np.isnan(out[3:6]).all() and not np.isnan(out[:3]).any() and not np.isnan(out[6]).any()


@pytest.mark.parametrize("mode", ["bipolar", "unipolar"])
def test_golden_per_tensor_nan_everywhere(mode):
    a = R.standard_normal((4, 9)).astype(np.float32)
    b = R.standard_normal((3, 9)).astype(np.float32)
    a[0, 0] = np.inf
    assert np.isnan(_both(a, b, "per_tensor", mode=mode)).all()


def test_golden_per_head_nan_head():
    a = R.standard_normal((3, 4, 16)).astype(np.float32)
    b = R.standard_normal((3, 5, 16)).astype(np.float32)
    b[1, 2, 3] = np.nan
    out = _both(a, b, "per_head")
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()


def test_golden_chunk_d_nan_row():
    a = R.standard_normal((4, 40)).astype(np.float32)
    b = R.standard_normal((3, 40)).astype(np.float32)
    a[1, 35] = np.nan
    out = _both(a, b, "per_row", chunk_d=16)
    assert np.isnan(out[1]).all() and not np.isnan(np.delete(out, 1, 0)).any()


def test_golden_unipolar_range_overflow_is_nan():
    # finite inputs whose max - min overflows float32: non-finite scale
    a = np.array([[3e38, -3e38, 1.0]], np.float32)
    b = R.standard_normal((2, 3)).astype(np.float32)
    out = _both(a, b, "per_row", mode="unipolar")
    assert np.isnan(out[0]).all()


def test_golden_smooth_scale_zero_gives_nan_column():
    a = R.standard_normal((3, 6)).astype(np.float32)
    b = R.standard_normal((2, 6)).astype(np.float32)
    s = np.ones(6, np.float32)
    s[2] = 0.0                    # a / 0 = inf in every row of a
    assert np.isnan(_both(a, b, "per_row", smooth_scales=s)).all()


def test_golden_extreme_boundaries_stay_in_range():
    # boundaries 0 and G on both sides, every granularity; tables indexed at the edges
    a = np.array([[0.0, 1.0, -1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    b = np.array([[1.0, -1.0, 0.0, 1.0]], np.float32)
    for g, kw in (("per_row", {}), ("per_tensor", {}), ("per_row", {"mode": "unipolar"}),
                  ("per_row", {"rng_levels": 5, "sc_prec": 4, "stoc_len": 3})):
        out = _both(a, b, g, **kw)
        assert np.isfinite(out).all()
