"""scmp_jax.sc_matmul == golden.sc_matmul, bit for bit (select with -k golden)."""
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings

import golden
import scmp_jax
from tests.helpers import assert_same_bits, call_golden, call_jax as _jax, make_values, sc_cases


@given(sc_cases())
def test_golden_xla_matches_golden(case):
    a, b, kwargs = case
    assert_same_bits(_jax(a, b, kwargs), call_golden(a, b, kwargs))


@settings(max_examples=25)
@given(sc_cases(max_rows=20, max_d=80))
def test_golden_xla_chunked_tables_match_golden(case):
    """table_cap_bytes=0: no whole table; tables built per d-chunk on device."""
    a, b, kwargs = case
    assert_same_bits(_jax(a, b, kwargs, table_cap_bytes=0), call_golden(a, b, kwargs))


@settings(max_examples=15)
@given(sc_cases(max_rows=16, max_d=64))
def test_golden_xla_under_outer_jit(case):
    """Inside a user's jax.jit (tables become constants of the outer trace)."""
    a, b, kwargs = case
    kw = dict(kwargs)
    g = kw.pop("granularity")
    smooth = kw.pop("smooth_scales")
    fn = jax.jit(lambda x, y, s: scmp_jax.sc_matmul(x, y, g, smooth_scales=s, **kw))
    assert_same_bits(np.asarray(fn(a, b, smooth)), call_golden(a, b, kwargs))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("granularity,mode", [("per_row", "bipolar"), ("per_tensor", "unipolar")])
def test_golden_low_precision_inputs_upcast(dtype, granularity, mode):
    a = make_values((9, 40), "normal", 1).astype(dtype)
    b = make_values((7, 40), "outliers", 2).astype(dtype)
    out = scmp_jax.sc_matmul(a, b, granularity, mode=mode, sc_prec=6)
    ref = golden.sc_matmul(a.astype(np.float32), b.astype(np.float32), granularity, mode=mode,
                           sc_prec=6)
    assert_same_bits(np.asarray(out), ref)


def test_golden_same_bits_with_x64():
    a = make_values((5, 33), "normal", 3)
    b = make_values((6, 33), "normal", 4)
    ref = golden.sc_matmul(a, b, "per_row", mode="unipolar", stoc_len=100)
    with jax.enable_x64(True):
        out = scmp_jax.sc_matmul(jnp.asarray(a), jnp.asarray(b), "per_row", mode="unipolar",
                                 stoc_len=100)
        assert out.dtype == jnp.float32
        assert_same_bits(np.asarray(out), ref)


@settings(max_examples=30)
@given(sc_cases(max_rows=12, max_d=40))
def test_bitlevel_equals_table_form(case):
    a, b, kwargs = case
    assert_same_bits(call_golden(a, b, kwargs, bitlevel=True), call_golden(a, b, kwargs))
