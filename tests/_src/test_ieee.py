"""IEEE float32 division on every backend: the integer long division equals
NumPy's correctly rounded division bit for bit on every normal result."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from scmp_jax._src import ieee as _ieee
from tests.helpers import assert_same_bits, call_golden, call_jax, sc_cases


def _pairs(seed, n=200_000):
    r = np.random.default_rng(seed)
    bits_a = r.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(np.int32)
    bits_b = r.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(np.int32)
    a, b = bits_a.view(np.float32), bits_b.view(np.float32)
    # plus realistic magnitudes and the quantizer's own divisions
    c = r.standard_normal(n).astype(np.float32)
    d = (r.integers(1, 4096, n).astype(np.float32))
    return np.concatenate([a, c, c]), np.concatenate([b, d, c[::-1] + np.float32(3)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_division_matches_numpy(seed):
    a, b = _pairs(seed)
    with np.errstate(all="ignore"):
        ref = a / b
    out = np.asarray(jax.jit(lambda x, y: _ieee.div_exact_int(x, y, x / y))(a, b))
    normal = np.isfinite(ref) & (np.abs(ref) >= np.finfo(np.float32).tiny)
    assert normal.sum() > 300_000
    np.testing.assert_array_equal(out[normal].view(np.int32), ref[normal].view(np.int32))
    overflow = np.isinf(ref) & np.isfinite(a) & np.isfinite(b) & (b != 0)
    np.testing.assert_array_equal(out[overflow], ref[overflow])


def test_soft_division_subnormal_operands_normal_result():
    tiny = np.array([1e-40, -3e-39, 1.4e-45, 5e-42], np.float32)     # subnormal numerators
    den = np.array([1e-5, 3.0e-9, 1e-38, 7e-7], np.float32)
    ref = tiny / den
    out = np.asarray(_ieee.div_exact_int(jnp.asarray(tiny), jnp.asarray(den), jnp.asarray(ref)))
    np.testing.assert_array_equal(out.view(np.int32), ref.view(np.int32))
    # and a subnormal divisor
    ref2 = den / tiny[::-1]
    ref2 = np.where(np.isfinite(ref2), ref2, np.float32(0))
    out2 = np.asarray(_ieee.div_exact_int(jnp.asarray(den), jnp.asarray(tiny[::-1]), ref2))
    ok = np.isfinite(ref2) & (ref2 != 0)
    np.testing.assert_array_equal(out2[ok].view(np.int32), ref2[ok].view(np.int32))


@settings(max_examples=40)
@given(sc_cases(max_rows=16, max_d=64))
def test_golden_xla_with_soft_division(case):
    """The whole XLA path with the GPU's division, run on CPU."""
    a, b, kwargs = case
    with _ieee.soft_division():
        out = call_jax(a, b, kwargs, table_cap_bytes=1 << 27)
    assert_same_bits(out, call_golden(a, b, kwargs))


def test_soft_sqrt_matches_numpy():
    r = np.random.default_rng(5)
    bits = r.integers(0, 0x7F800000, 400_000).astype(np.int32)      # every positive finite
    x = np.concatenate([bits.view(np.float32), np.abs(r.standard_normal(100_000)).astype(np.float32),
                        np.array([1.0, 2.0, 4.0, 0.25, 3.4028235e38, 1.4e-45], np.float32)])
    ref = np.sqrt(x)
    out = np.asarray(jax.jit(lambda v: _ieee.sqrt_exact_int(v, jnp.sqrt(v)))(x))
    np.testing.assert_array_equal(out.view(np.int32), ref.view(np.int32))
    special = np.array([0.0, -0.0, -1.0, np.inf, np.nan], np.float32)
    out = np.asarray(_ieee.sqrt_exact_int(jnp.asarray(special), jnp.sqrt(jnp.asarray(special))))
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(np.isnan(out), np.isnan(np.sqrt(special)))
