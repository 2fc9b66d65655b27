"""SmoothQuant (SPEC.md section 8)."""
import jax.numpy as jnp
import numpy as np
import pytest

import golden
import scmp_jax
from tests.helpers import assert_same_bits
from scmp_jax._src import ieee as _ieee
from scmp_jax import quant as SQ

R = np.random.default_rng(0)


def test_smoothing_is_identity_in_float64():
    a = R.standard_normal((16, 32))
    w = R.standard_normal((8, 32))
    s = np.asarray(SQ.compute_smooth_scales(np.abs(a).max(0), w, alpha=0.7)).astype(np.float64)
    a2, w2 = golden.apply_smoothing(a, w, s)
    np.testing.assert_allclose(a2 @ w2.T, a @ w.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(golden.apply_smoothing_offline(w, s), w * s)


@pytest.mark.parametrize("soft", [None, True], ids=["backend", "soft"])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_golden_smooth_scales_exact_closed_forms(alpha, soft):
    act = np.abs(R.standard_normal(40)).astype(np.float32) * 10
    act[3] = 0.0
    w = R.standard_normal((12, 40)).astype(np.float32)
    w[:, 5] = 0.0
    with _ieee.soft_division(soft):      # soft: the GPU's integer div/sqrt, on any backend
        out = np.asarray(SQ.compute_smooth_scales(act, w, alpha))
    ref = golden.compute_smooth_scales(act, w, alpha)
    np.testing.assert_array_equal(out.view(np.int32), ref.view(np.int32))
    wmax = np.maximum(np.abs(w).max(0), np.float32(1e-5))
    a = np.maximum(act, np.float32(1e-5))
    if alpha == 0.0:   # s = 1 / max|w|
        np.testing.assert_array_equal(ref, np.maximum(np.float32(1) / wmax, np.float32(1e-5)))
    if alpha == 1.0:   # s = act
        np.testing.assert_array_equal(ref, np.maximum(a, np.float32(1e-5)))


def _ulps(out, ref, int_type):
    """Per-element ulp distance of same-sign floats (NaN positions must match)."""
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.dtype == ref.dtype
    nan = np.isnan(ref.astype(np.float32))
    assert np.array_equal(np.isnan(out.astype(np.float32)), nan)
    return np.abs(out[~nan].view(int_type).astype(np.int64) - ref[~nan].view(int_type))


@pytest.mark.parametrize("soft", [None, True], ids=["backend", "soft"])
@pytest.mark.parametrize("alpha", [0.8, 0.3, 0.1, 1e-6, 0.999999, 0.5000001])
def test_golden_smooth_scales_general_alpha_within_ulps(alpha, soft):
    """SPEC.md section 8: other alphas go through pow (libm in golden, XLA's in
    JAX): float32 results at most 4 ulp apart, NaN at the same positions; cast
    to a 16-bit weight dtype, at most 1 ulp of that dtype."""
    r = np.random.default_rng(round(alpha * 1e6))
    D = 512
    act = (10.0 ** r.uniform(-7, 37, D)).astype(np.float32)
    w = (r.standard_normal((9, D)) * 10.0 ** r.uniform(-7, 37, D)).astype(np.float32)
    act[0], w[3, 1], act[2], w[:, 3] = np.nan, np.nan, 0.0, 0.0
    with _ieee.soft_division(soft):
        out = SQ.compute_smooth_scales(act, w, alpha)
        out16 = SQ.compute_smooth_scales(act, w.astype(jnp.bfloat16), alpha)
    assert _ulps(out, golden.compute_smooth_scales(act, w, alpha), np.int32).max() <= 4
    ref16 = golden.compute_smooth_scales(act, w.astype(jnp.bfloat16), alpha)
    assert _ulps(out16, ref16, np.int16).max() <= 1


def test_dtype_and_alpha_validation():
    w = jnp.ones((3, 4), jnp.bfloat16)
    assert SQ.compute_smooth_scales(jnp.ones(4), w).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="alpha"):
        SQ.compute_smooth_scales(jnp.ones(4), w, alpha=1.5)
    with pytest.raises(ValueError, match="act_scales"):
        SQ.compute_smooth_scales(jnp.ones(5), w)
    with pytest.raises(ValueError, match="smooth_scales"):
        SQ.apply_smoothing(jnp.ones((2, 4)), jnp.ones((3, 4)), jnp.ones(3))


def test_golden_accumulate_act_scales():
    xs = [R.standard_normal((2, 5, 7)).astype(np.float32) for _ in range(3)]
    run, ref = None, None
    for x in xs:
        run = SQ.accumulate_act_scales(x, run)
        ref = golden.accumulate_act_scales(x, ref)
    np.testing.assert_array_equal(np.asarray(run), ref)
    np.testing.assert_array_equal(ref, np.abs(np.concatenate([x.reshape(-1, 7) for x in xs])).max(0))


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["xla", "pallas"])
@pytest.mark.parametrize("shape", [(3, 5, 7), (70, 130), (1, 1), (33, 64)])
def test_golden_accumulate_act_scales_impls(impl, shape):
    """Both implementations == golden bit for bit, NaN columns included."""
    rng = np.random.default_rng(sum(shape))
    run, ref = None, None
    for i in range(3):
        x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30)).astype(np.float32)
        if i == 1:
            x.reshape(-1, shape[-1])[0, -1] = -np.inf
            x.reshape(-1, shape[-1])[-1, 0] = np.nan
        run = SQ.accumulate_act_scales(x, run, implementation=impl)
        ref = golden.accumulate_act_scales(x, ref)
        assert_same_bits(np.asarray(run), ref)
    assert np.isnan(ref[0])


def test_accumulate_act_scales_rejects_bad_input():
    with pytest.raises(TypeError, match="x"):
        SQ.accumulate_act_scales(np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match="x"):
        SQ.accumulate_act_scales(np.ones((0, 3), np.float32))
    with pytest.raises(ValueError, match="running"):
        SQ.accumulate_act_scales(np.ones((2, 3), np.float32), np.ones(4, np.float32))


def _int8_matmul(a, w):
    """Per-tensor int8 (sc_prec=8 bipolar, q=127) quantize both, exact int matmul."""
    qa = SQ.quantize(a, "per_tensor", sc_prec=8)
    qw = SQ.quantize(w, "per_tensor", sc_prec=8)
    ai = np.asarray(qa.x_int, np.float64) * float(qa.scale[0])
    wi = np.asarray(qw.x_int, np.float64) * float(qw.scale[0])
    return ai @ wi.T


def test_smoothquant_reduces_int8_error_with_outlier_channels():
    """Measured: int8 quantization error of a @ w.T drops several-fold when the
    activation's outlier channels migrate into the weight."""
    r = np.random.default_rng(1)
    a = r.standard_normal((64, 128)).astype(np.float32)
    a[:, [3, 50, 77]] *= 60.0                               # outlier channels
    w = (r.standard_normal((48, 128)) * 0.05).astype(np.float32)
    exact = a.astype(np.float64) @ w.T.astype(np.float64)
    s = SQ.compute_smooth_scales(SQ.accumulate_act_scales(a), w, alpha=0.5)
    a_s, w_s = SQ.apply_smoothing(a, w, s)
    err = lambda y: np.linalg.norm(np.asarray(y, np.float64) - exact) / np.linalg.norm(exact)
    e_plain, e_smooth = err(_int8_matmul(a, w)), err(_int8_matmul(a_s, w_s))
    assert e_smooth < e_plain / 3, (e_smooth, e_plain)
    # and through the SC matmul itself (SC noise on top): no worse
    sc_plain = err(scmp_jax.sc_matmul(a, w, "per_tensor", sc_prec=8))
    sc_smooth = err(scmp_jax.sc_matmul(a, w, "per_tensor", sc_prec=8, smooth_scales=s))
    assert sc_smooth < sc_plain, (sc_smooth, sc_plain)
