"""scmp_jax.fp4 (XLA) == golden.fp4 bit for bit (SPEC.md section 9); matmul vs float64."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from golden import fp4 as G
from scmp_jax import fp4
from scmp_jax.fp4 import formats as FM
from scmp_jax.fp4 import softfloat as SF
from tests.helpers import (BYTES, FP4_KINDS as KINDS, assert_same_bits as _same,
                           check_fp4_transform, crafted_floats, fp4_group as _group,
                           fp4_near_threshold_rows, hadamard)

F32 = np.float32
X = crafted_floats(n_random=5000, seed=1)


# ---- exact float32 arithmetic (XLA flushes subnormals on CPU) ------------------------

def _operands(n, seed):
    r = np.random.default_rng(seed)
    b = r.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    exp = np.where(r.random(n) < 0.4, r.integers(0, 3, n), r.integers(0, 256, n)).astype(np.uint32)
    b = (b & np.uint32(0x807FFFFF)) | (exp << np.uint32(23))       # many subnormals / tiny
    return np.concatenate([b.view(F32), X[:n // 4]])


@pytest.mark.parametrize("op", ["mul", "div"])
def test_softfloat_matches_numpy(op):
    a, b = _operands(60000, 0), _operands(60000, 1)
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    out = jax.jit(getattr(SF, op))(a, b)
    with np.errstate(all="ignore"):
        ref = (a * b if op == "mul" else a / b).astype(F32)
    _same(out, ref)


# ---- formats: every byte, every crafted float ------------------------------------------

def test_decoders_match_golden():
    _same(jax.jit(FM.e8m0_decode)(BYTES), G.e8m0_decode(BYTES))
    _same(jax.jit(FM.e4m3_decode)(BYTES), G.e4m3_decode(BYTES))
    _same(jax.jit(FM.e2m1_decode)(BYTES[:16]), G.e2m1_decode(BYTES[:16]))


def test_encoders_match_golden():
    assert np.array_equal(jax.jit(FM.e8m0_encode)(X), G.e8m0_encode(X))
    assert np.array_equal(jax.jit(FM.e4m3_encode)(X), G.e4m3_encode(X))
    enc = jax.jit(FM.e2m1_encode)
    for i, mode in enumerate(G.ROUNDINGS):
        assert np.array_equal(enc(X, np.int32(i)), G.e2m1_encode(X, mode)), mode


def test_pack_matches_golden():
    codes = np.random.default_rng(2).integers(0, 16, (3, 40)).astype(np.uint8)
    packed = np.asarray(FM.pack(jnp.asarray(codes)))
    assert np.array_equal(packed, G.pack(codes))
    assert np.array_equal(np.asarray(FM.unpack(jnp.asarray(packed))), codes)


# ---- quantize / dequantize: property vs golden ------------------------------------------

# (shape, group_size) pool: each pair x scale format is one compiled program
PAIRS = [((4, 64), 32), ((4, 64), 16), ((3, 96), 3), ((2, 3, 48), 6), ((6, 10), 2), ((1, 8), 1),
         ((128,), 64)]
@st.composite
def fp4_cases(draw):
    preset = draw(st.sampled_from(["mxfp4", "nvfp4", "random", "random", "random"]))
    if preset != "random":
        kw = dict(G.PRESETS[preset])
        shape = (4, 64)
    else:
        shape, group = draw(st.sampled_from(PAIRS))
        ss = draw(st.one_of(st.sampled_from([1.0, 4.0, 6.0, 0.25, 1000.0]),
                            st.floats(0.01, 100.0).map(lambda v: float(F32(v)))))
        gs = draw(st.one_of(st.sampled_from([1.0, 1 / 3, 2.0 ** -10, 2.0 ** 10, 1e-3]),
                            st.floats(1e-6, 1e6).map(lambda v: float(F32(v)))))
        kw = dict(group_size=group, scale_dtype=draw(st.sampled_from(G.SCALE_DTYPES)),
                  scale_scale=ss, global_scale=gs)
    kw["rounding"] = draw(st.sampled_from(G.ROUNDINGS))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    r = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n = shape[-1] // kw["group_size"]
    groups = [_group(kinds[r.integers(len(kinds))], kw["group_size"], r, kw["scale_scale"],
                     kw["global_scale"], kw["scale_dtype"])
              for _ in range(int(np.prod(shape[:-1])) * n)]
    with np.errstate(all="ignore"):
        x = np.concatenate(groups).astype(F32).reshape(shape)
    return x, kw


@given(fp4_cases())
def test_quantize_dequantize_match_golden(case):
    x, kw = case
    t = fp4.quantize(x, **kw)
    ref = G.quantize(x, **kw)
    assert t.codes.dtype == jnp.uint8 and t.scales.dtype == fp4.SCALE_TYPES[kw["scale_dtype"]]
    assert np.array_equal(np.asarray(t.codes), ref["codes"])
    assert np.array_equal(np.asarray(t.scale_bytes), ref["scales"])
    assert t.shape == x.shape and t.global_scale.dtype == jnp.float32
    _same(fp4.dequantize(t), G.dequantize(ref["codes"], ref["scales"],
                                          scale_dtype=kw["scale_dtype"],
                                          global_scale=ref["global_scale"]))


# ---- transforms ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["shared", "per_block", "hadamard", "orthogonal"])
@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4"])
def test_transform_end_to_end_matches_golden(kind, preset):
    """``quantize(x, transform=T)`` vs golden's ``quantize(x, transform=T)``: the
    transformed values within SPEC 9.7's tolerance; codes and scale bytes equal
    except where golden's transformed value lies within that tolerance of a
    rounding boundary (``check_fp4_transform``, counted and bounded); exactly
    equal on rows crafted to keep every value 1.5 tolerances from a boundary
    (orthogonal blocks); and golden on the JAX path's own transformed array
    gives the same codes bit for bit (the quantizer itself is exact)."""
    r = np.random.default_rng(7)
    x = (r.standard_normal((32, 256)) * 3).astype(F32)
    g = 16
    T = {"shared": r.standard_normal((g, g)), "per_block": r.standard_normal((16, g, g)),
         "hadamard": hadamard(g),
         "orthogonal": np.stack([np.linalg.qr(r.standard_normal((g, g)))[0] for _ in range(16)])
         }[kind].astype(F32)
    kw = G.PRESETS[preset]
    y = np.asarray(fp4.block_transform(x, T))
    ref_y = G.block_transform(x, T)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5 * np.abs(ref_y).max())
    t = fp4.quantize(x, preset, transform=T)
    check_fp4_transform(t.codes, t.scale_bytes, x, T, **kw)
    ref = G.quantize(y, **kw)                         # the same transformed float32 array
    assert np.array_equal(np.asarray(t.codes), ref["codes"])
    assert np.array_equal(np.asarray(t.scale_bytes), ref["scales"])
    if kind in ("hadamard", "orthogonal"):
        xc = fp4_near_threshold_rows(T, 32, 256, seed=3, **kw)   # x's shape: no new compile
        tc = fp4.quantize(xc, preset, transform=T)
        assert check_fp4_transform(tc.codes, tc.scale_bytes, xc, T, **kw) == (0, 0, 0)


@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4"])
def test_transform_exact_when_sums_are_exact(preset):
    """Hadamard blocks scaled by a power of two (1/4 for g = 16) on inputs of a
    common grid: every product and partial sum is exact in float32, so the
    transform is bit-exact (SPEC 9.7) and so are codes and scale bytes."""
    r = np.random.default_rng(17)
    x = (r.integers(-100, 101, (32, 256)) * 2.0 ** r.integers(-6, 6)).astype(F32)
    T = hadamard(16)
    assert np.array_equal(T * 4, np.round(T * 4))
    _same(fp4.block_transform(x, T), G.block_transform(x, T))
    t = fp4.quantize(x, preset, transform=T)
    ref = G.quantize(x, transform=T, **G.PRESETS[preset])
    assert np.array_equal(np.asarray(t.codes), ref["codes"])
    assert np.array_equal(np.asarray(t.scale_bytes), ref["scales"])


# ---- matmul vs the float64 reference ------------------------------------------------------

@pytest.mark.parametrize("a_shape,w_shape,cfg_a,cfg_w,scale", [
    ((2, 5, 64), (7, 64), "mxfp4", "nvfp4", 1.0),
    ((8, 96), (3, 96), "nvfp4", "nvfp4", 1e-20),
    ((6, 128), (16, 128), "mxfp4", "mxfp4", 1e20),
])
def test_matmul_close_to_float64(a_shape, w_shape, cfg_a, cfg_w, scale):
    r = np.random.default_rng(8)
    xa = (r.standard_normal(a_shape) * scale).astype(F32)
    xw = r.standard_normal(w_shape).astype(F32)
    xw[:, 3] *= 30                                                     # an outlier channel
    # NVFP4's usual per-tensor global scale amax / (6 * 448) keeps the e4m3 scales in range
    gs_a = float(np.abs(xa).max() / (6 * 448)) if cfg_a == "nvfp4" else None
    a, w = fp4.quantize(xa, cfg_a, global_scale=gs_a), fp4.quantize(xw, cfg_w)
    y = np.asarray(fp4.matmul(a, w))
    assert y.dtype == np.float32 and y.shape == a_shape[:-1] + (w_shape[0],)
    ref = G.matmul_reference(np.asarray(a.codes), np.asarray(a.scale_bytes), a.global_scale,
                             np.asarray(w.codes), np.asarray(w.scale_bytes), w.global_scale,
                             scale_dtype_a=a.scale_dtype, scale_dtype_w=w.scale_dtype)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5


# ---- pytree, jit, presets ------------------------------------------------------------------

def test_fp4tensor_is_a_pytree():
    x = np.random.default_rng(9).standard_normal((4, 64)).astype(F32)
    t = fp4.quantize(x, fp4.NVFP4)
    leaves, tree = jax.tree_util.tree_flatten(t)
    assert len(leaves) == 3
    t2 = jax.tree_util.tree_unflatten(tree, leaves)
    assert (t2.group_size, t2.scale_dtype, t2.rounding, t2.shape) == (16, "e4m3", "even", (4, 64))
    d = jax.jit(lambda t: t.dequantize())(t)                       # jit: golden's values
    ref = G.quantize(x, **G.PRESETS["nvfp4"])
    _same(d, G.dequantize(ref["codes"], ref["scales"], scale_dtype="e4m3",
                          global_scale=ref["global_scale"]))
    _same(d, fp4.dequantize(t))
    codes = jax.jit(lambda v, gs: fp4.quantize(v, "nvfp4", global_scale=gs).codes)(x, F32(0.5))
    ref = G.quantize(x, **dict(G.PRESETS["nvfp4"], global_scale=0.5))   # a traced global scale
    assert np.array_equal(np.asarray(codes), ref["codes"])
    assert np.array_equal(np.asarray(codes), np.asarray(fp4.quantize(x, fp4.NVFP4,
                                                                     global_scale=0.5).codes))


def test_presets_and_config():
    assert fp4.MXFP4 == fp4.FP4Config(32, "e8m0", 4.0, 1 / 3)
    assert (fp4.NVFP4.group_size, fp4.NVFP4.scale_dtype, fp4.NVFP4.scale_scale) == (16, "e4m3", 6.0)
    assert hash(fp4.MXFP4) == hash(fp4.FP4Config(32, "e8m0", 4, F32(1 / 3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fp4.MXFP4.group_size = 16
    x = np.random.default_rng(10).standard_normal((2, 64)).astype(F32)
    a = fp4.quantize(x, fp4.MXFP4)
    b = fp4.quantize(x, group_size=32, scale_dtype="e8m0", scale_scale=4.0, global_scale=1 / 3)
    assert np.array_equal(np.asarray(a.codes), np.asarray(b.codes))
    c = fp4.quantize(x, "mxfp4", group_size=16, rounding="up")       # keyword overrides
    assert (c.group_size, c.rounding, c.scales.shape) == (16, "up", (2, 4))


# ---- validation ----------------------------------------------------------------------------

XV = np.ones((2, 32), F32)
OK = dict(group_size=16, scale_dtype="e4m3", scale_scale=6.0)
BAD = [
    (XV, dict(group_size=5), ValueError, "group_size"),
    (XV, dict(group_size=0), ValueError, "group_size"),
    (np.ones((2, 31), F32), dict(group_size=1), ValueError, "even"),
    (np.ones((), F32), {}, ValueError, "dimension"),
    (XV, dict(scale_dtype="e5m2"), ValueError, "scale_dtype"),
    (XV, dict(rounding="nearest"), ValueError, "rounding"),
    (XV, dict(scale_scale=-2.0), ValueError, "scale_scale"),
    (XV, dict(global_scale=0.0), ValueError, "global_scale"),
    (XV, dict(global_scale=np.ones(2, F32)), ValueError, "global_scale"),
    (XV, dict(scale_scale=1e-30, global_scale=1e-30), ValueError, "scale_scale \\* global_scale"),
    (XV, dict(transform=np.eye(3, dtype=F32)), ValueError, "transform"),
    (XV, dict(transform=np.ones((3, 16, 16), F32)), ValueError, "transform"),
    (XV, dict(transform=np.eye(16, dtype=np.int32)), TypeError, "transform must be a float"),
    (XV.astype(np.int32), {}, TypeError, "x must be a float"),
    (np.ones((2, 48), F32), dict(group_size=6, scale_dtype="e8m0", scale_scale=4.0,
                                 implementation="pallas"),
     ValueError, "power of two"),
    (XV, dict(implementation="cuda"), ValueError, "implementation"),
]


@pytest.mark.parametrize("x,kw,err,match", BAD)
def test_quantize_validation(x, kw, err, match):
    with pytest.raises(err, match=match):
        fp4.quantize(x, **{**OK, **kw})


def test_config_and_call_validation():
    with pytest.raises(ValueError, match="scale_scale"):
        fp4.quantize(XV, group_size=16, scale_dtype="e4m3")
    with pytest.raises(ValueError, match="config"):
        fp4.quantize(XV, "fp8")
    with pytest.raises(ValueError, match="group_size"):
        fp4.FP4Config(True, "e8m0", 4.0)
    with pytest.raises(ValueError, match="global_scale"):
        fp4.FP4Config(32, "e8m0", 4.0, float("inf"))
    a = fp4.quantize(np.ones((3, 32), F32), fp4.NVFP4)
    w = fp4.quantize(np.ones((4, 64), F32), fp4.NVFP4)
    with pytest.raises(ValueError, match="K"):
        fp4.matmul(a, w)
    with pytest.raises(ValueError, match="w must be 2D"):
        fp4.matmul(a, fp4.quantize(np.ones((2, 4, 32), F32), fp4.NVFP4))
    with pytest.raises(TypeError, match="t must be an FP4Tensor"):
        fp4.dequantize(np.ones((3, 16), np.uint8))
    with pytest.raises(ValueError, match="implementation"):
        fp4.dequantize(a, implementation="cuda")


def _encode_even_inputs():
    """Every sign and exponent with mantissas at the ends, the e2m1 midpoints'
    neighbourhoods (+-3 ulp of 0.25 .. 5 times a power of two, so subnormal, normal,
    saturating and Inf cases) and 1M random bit patterns (NaNs included)."""
    se = np.arange(512, dtype=np.uint32) << 23
    mant = np.concatenate([np.arange(8), (1 << 23) - 1 - np.arange(8),
                           (1 << 22) + np.arange(-4, 5), (3 << 21) + np.arange(-4, 5),
                           (1 << 21) + np.arange(-4, 5)]).astype(np.uint32)
    grid = (se[:, None] | mant[None, :]).ravel()
    mids = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0], np.float64)
    pows = 2.0 ** np.arange(-149, 128, dtype=np.float64)
    with np.errstate(over="ignore"):
        m = (mids[:, None] * pows[None, :]).astype(F32).view(np.uint32).ravel()
    near = (m[:, None].astype(np.int64) + np.arange(-3, 4)).clip(0, 0x7F800000).astype(np.uint32)
    rand = np.random.default_rng(5).integers(0, 2 ** 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    u = np.concatenate([grid, near.ravel(), near.ravel() | 0x80000000, rand])
    return u.view(F32)


def test_e2m1_encode_even_equals_integer_encoder():
    """``formats.e2m1_encode_even`` (one float add, used by the kernels for ties to
    even) == the integer encoder == golden on ~1.2M float32 patterns: signed
    zeros, subnormals, every binade, exact ties and their neighbours,
    saturation, Inf, NaN."""
    x = _encode_even_inputs()
    fast = np.asarray(jax.jit(FM.e2m1_encode_even)(jnp.asarray(x)))
    slow = np.asarray(jax.jit(lambda v: FM.e2m1_encode(v, "even"))(jnp.asarray(x)))
    gold = G.e2m1_encode(x, "even")
    assert np.array_equal(slow.astype(np.int64), gold.astype(np.int64))
    bad = np.flatnonzero(fast.astype(np.int64) != gold.astype(np.int64))
    assert bad.size == 0, (x[bad[:5]], fast[bad[:5]], gold[bad[:5]])


def test_quantized_matmul_bad_input():
    """``quantized_matmul``'s errors name its own arguments."""
    w = fp4.quantize(np.ones((8, 64), F32), "mxfp4")
    with pytest.raises(ValueError, match="x must be .* K=64"):
        fp4.quantized_matmul(np.ones((2, 32), F32), w, "mxfp4")
    with pytest.raises(ValueError, match="x must be"):
        fp4.quantized_matmul(np.ones(64, F32), w, "mxfp4")
    with pytest.raises(TypeError, match="x must be a float array"):
        fp4.quantized_matmul(np.ones((2, 64), np.int32), w, "mxfp4")
    with pytest.raises(TypeError, match="w must be an FP4Tensor"):
        fp4.quantized_matmul(np.ones((2, 64), F32), np.ones((8, 64), F32), "mxfp4")
    with pytest.raises(ValueError, match="matmul_implementation|implementation"):
        fp4.quantized_matmul(np.ones((2, 64), F32), w, "mxfp4", matmul_implementation="cuda")
    with pytest.raises(ValueError, match="global_scale"):
        fp4.quantized_matmul(np.ones((2, 64), F32), w, "mxfp4", global_scale=0.0)
    y = fp4.quantized_matmul(np.ones((2, 64), F32), w, "mxfp4")
    assert np.array_equal(np.asarray(y), np.asarray(fp4.matmul(fp4.quantize(np.ones((2, 64), F32),
                                                                            "mxfp4"), w)))
