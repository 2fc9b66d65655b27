"""fp4.weight_only_matmul (SPEC.md section 9.9): float activations times fp4
weights against golden's float64 product of golden's decoded weight, both
implementations (Pallas interpreted off the GPU: tiny shapes), and its errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from golden import fp4 as G
from scmp_jax import fp4

F32 = np.float32
DTYPES = {"bf16": jnp.bfloat16, "f16": jnp.float16, "f32": jnp.float32}
IMPLS = ["xla", pytest.param("pallas", marks=pytest.mark.gpu)]


def _weight(M, K, preset, seed):
    """An fp4 weight quantized by golden (an outlier channel, a NaN group; NVFP4 with
    its usual per-tensor global scale amax / (6 * 448))."""
    r = np.random.default_rng(seed)
    w = r.standard_normal((M, K)).astype(F32)
    w[:, 3] *= 30
    if M > 1:
        w[M // 2, :2] = np.nan                              # one NaN group -> a NaN column
    gs = float(np.nanmax(np.abs(w)) / (6 * 448)) if preset == "nvfp4" else None
    kw = dict(G.PRESETS[preset], **({} if gs is None else {"global_scale": gs}))
    ref = G.quantize(w, **kw)
    cfg = fp4.PRESETS[preset]
    t = fp4.FP4Tensor(jnp.asarray(ref["codes"]),
                      jnp.asarray(ref["scales"]).view(fp4.SCALE_TYPES[cfg.scale_dtype]),
                      jnp.float32(ref["global_scale"]), cfg.group_size, cfg.scale_dtype,
                      cfg.rounding, (M, K))
    return t, ref


def _reference(x, t, ref):
    return G.weight_only_reference(np.asarray(x), ref["codes"], ref["scales"],
                                   ref["global_scale"], scale_dtype_w=t.scale_dtype)


def _close(y, ref):
    """NaN at the same places; the rest within SPEC 9.8's relative L2 error."""
    y = np.asarray(y, np.float64)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan)
    assert np.linalg.norm(y[~nan] - ref[~nan]) / np.linalg.norm(ref[~nan]) < 1e-5


# (x shape, M): N = 1, batched leading dims, several rows
SHAPES = {"bf16": [((1, 64), 24), ((2, 3, 64), 8)],
          "f16": [((2, 1, 64), 16), ((5, 64), 1)],
          "f32": [((1, 64), 8), ((3, 2, 64), 24)]}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4"])
def test_weight_only_close_to_golden(preset, dtype, impl):
    r = np.random.default_rng(len(dtype))
    for i, (shape, M) in enumerate(SHAPES[dtype]):
        t, ref = _weight(M, 64, preset, seed=i)
        x = (r.standard_normal(shape) * 10.0 ** r.integers(-2, 3, shape)).astype(F32)
        rows = x.reshape(-1, 64)
        rows[-1] = 0.0 if len(rows) > 1 else rows[-1]        # a zero row beside others
        x = jnp.asarray(x, DTYPES[dtype])
        y = fp4.weight_only_matmul(x, t, implementation=impl)
        assert y.dtype == jnp.float32 and y.shape == shape[:-1] + (M,)
        _close(y, _reference(x, t, ref))


def _exact_case(preset, dtype, seed):
    """Small-integer activations and a weight of random codes with scales near 1:
    every product and partial sum is exact in float32, so the result is golden's
    float64 value rounded once (by the global scale)."""
    r = np.random.default_rng(seed)
    cfg = fp4.PRESETS[preset]
    M, K = 12, 128
    codes = r.integers(0, 256, (M, K // 2), dtype=np.uint8)
    if cfg.scale_dtype == "e8m0":
        sb = r.integers(124, 131, (M, K // cfg.group_size)).astype(np.uint8)   # 2^-3 .. 2^3
    else:
        sb = r.integers(0x30, 0x48, (M, K // cfg.group_size)).astype(np.uint8)  # 0.5 .. 7.5
    t = fp4.FP4Tensor(jnp.asarray(codes), jnp.asarray(sb).view(fp4.SCALE_TYPES[cfg.scale_dtype]),
                      jnp.float32(cfg.global_scale), cfg.group_size, cfg.scale_dtype,
                      cfg.rounding, (M, K))
    x = jnp.asarray(r.integers(-8, 9, (3, K)), DTYPES[dtype])
    ref = G.weight_only_reference(np.asarray(x), codes, sb, cfg.global_scale,
                                  scale_dtype_w=cfg.scale_dtype)
    return x, t, ref


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4"])
def test_weight_only_exact_sums_equal_golden_bits(preset, impl):
    """Exact activation conversion and weight decoding: with exact sums the
    result is golden's bit for bit, for each activation dtype."""
    for i, dtype in enumerate(DTYPES):
        x, t, ref = _exact_case(preset, dtype, seed=i)
        y = np.asarray(fp4.weight_only_matmul(x, t, implementation=impl))
        assert np.array_equal(y.view(np.uint32), ref.astype(F32).view(np.uint32)), dtype


def test_weight_only_traced_bad_global_scale_is_nan():
    t, _ = _weight(8, 64, "mxfp4", seed=3)
    x = jnp.ones((2, 64), jnp.bfloat16)
    f = jax.jit(lambda g: fp4.weight_only_matmul(x, dataclasses.replace(t, global_scale=g)))
    assert np.isnan(np.asarray(f(jnp.float32(-1.0)))).all()
    assert np.isfinite(np.asarray(f(jnp.float32(0.5)))[:, :4]).all()


def _ones(shape, group_size, scale_dtype="e8m0"):
    """An FP4Tensor of ones (codes 2, scales 1) built without quantizing."""
    K = shape[-1]
    return fp4.FP4Tensor(jnp.full(shape[:-1] + (K // 2,), 0x22, jnp.uint8),
                         jnp.ones(shape[:-1] + (K // group_size,), fp4.SCALE_TYPES[scale_dtype]),
                         jnp.float32(1.0), group_size, scale_dtype, "even", shape)


def test_weight_only_bad_input():
    """Each error names the argument at fault."""
    w = _ones((8, 64), 32)
    x = np.ones((2, 64), F32)
    with pytest.raises(TypeError, match="x must be a float array.*FP4Tensor"):
        fp4.weight_only_matmul(_ones((2, 64), 32), w)
    with pytest.raises(TypeError, match="x must be a float array"):
        fp4.weight_only_matmul(np.ones((2, 64), np.int32), w)
    with pytest.raises(ValueError, match=r"x must be \(\.\.\., N, K\) with w's K=64"):
        fp4.weight_only_matmul(np.ones((2, 32), F32), w)
    with pytest.raises(ValueError, match="x must be"):
        fp4.weight_only_matmul(np.ones(64, F32), w)
    with pytest.raises(TypeError, match="w must be an FP4Tensor"):
        fp4.weight_only_matmul(x, np.ones((8, 64), F32))
    with pytest.raises(ValueError, match="w must be 2D"):
        fp4.weight_only_matmul(x, _ones((2, 8, 64), 32))
    with pytest.raises(ValueError, match="implementation"):
        fp4.weight_only_matmul(x, w, implementation="cuda")
    with pytest.raises(ValueError, match="grad must be None or 'ste'"):
        fp4.weight_only_matmul(x, w, grad="exact")
    with pytest.raises(ValueError, match="w.group_size must be a power of two"):
        fp4.weight_only_matmul(np.ones((2, 48), F32), _ones((8, 48), 6), implementation="pallas")
    # fp4.matmul keeps its quantized activation and points at the weight-only form
    with pytest.raises(TypeError, match="a must be an FP4Tensor.*weight_only_matmul"):
        fp4.matmul(x, w)
