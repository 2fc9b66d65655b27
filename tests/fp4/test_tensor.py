"""``FP4Tensor`` is checked when built and when used (SPEC.md section 9): fields
of the wrong dtype or shape raise errors naming the field; placeholder leaves
of JAX's tree transformations pass; a traced global scale that is not positive
and finite makes the results NaN."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from golden import fp4 as G
from tests.helpers import assert_same_bits
from scmp_jax import fp4
from scmp_jax._src.dispatch import Backend
from scmp_jax.fp4 import formats as FM
from scmp_jax.fp4.linear import api as LA

F32 = np.float32
X = np.random.default_rng(0).standard_normal((2, 64)).astype(F32)
W = np.random.default_rng(1).standard_normal((2, 64)).astype(F32)
T = fp4.quantize(X, "mxfp4")                               # codes (2, 32), scales (2, 2)
WT = fp4.quantize(W, "mxfp4")                              # (same shape: one compilation)
E4M3 = T.scales.astype(jnp.float8_e4m3fn)                  # scales of the other format


def _golden(t, gs=None):
    """Golden dequantization of ``t``'s codes and scale bytes."""
    return G.dequantize(np.asarray(t.codes), np.asarray(t.scale_bytes),
                        scale_dtype=t.scale_dtype,
                        global_scale=np.asarray(t.global_scale) if gs is None else gs)


# (field changes, error, message): every change makes T inconsistent
BAD = [
    (lambda: dict(codes=T.codes.astype(jnp.int8)), TypeError, "codes must be uint8"),
    (lambda: dict(codes=T.codes[:, :16]), ValueError, "codes"),              # truncated
    (lambda: dict(codes=T.codes[:1]), ValueError, "codes"),                  # a row short
    (lambda: dict(codes=FM.unpack(T.codes)), ValueError, "codes"),          # unpacked
    (lambda: dict(scales=E4M3), TypeError, "scales must be float8_e8m0fnu"),
    (lambda: dict(scales=T.scale_bytes), TypeError, "scales must be float8_e8m0fnu"),
    (lambda: dict(scales=T.scales[:, :1]), ValueError, "scales"),           # cut
    (lambda: dict(scales=T.scales[:1]), ValueError, "scales"),              # a row short
    (lambda: dict(scales=T.scales[None]), ValueError, "scales"),            # an extra axis
    (lambda: dict(global_scale=np.float64(1.0)), TypeError, "global_scale must be float32"),
    (lambda: dict(global_scale=jnp.ones(2, F32)), ValueError, "global_scale"),
    (lambda: dict(global_scale=np.float32(0.0)), ValueError, "global_scale"),
    (lambda: dict(global_scale=np.float32(np.nan)), ValueError, "global_scale"),
    (lambda: dict(shape=(2, 32)), ValueError, "codes"),
    (lambda: dict(shape=(3, 64)), ValueError, "codes"),
    (lambda: dict(shape=(2, 2, 64)), ValueError, "codes"),
    (lambda: dict(shape=(2, 63)), ValueError, "shape"),
    (lambda: dict(shape=()), ValueError, "shape"),
    (lambda: dict(shape=(2, 64.0)), ValueError, "shape"),
    (lambda: dict(group_size=48), ValueError, "group_size"),               # does not divide K
    (lambda: dict(group_size=16), ValueError, "scales"),                   # K/16 = 4 scales
    (lambda: dict(group_size=True), TypeError, "group_size"),
    (lambda: dict(group_size=32.0), TypeError, "group_size"),
    (lambda: dict(scale_dtype="e4m3"), TypeError, "scales must be float8_e4m3fn"),
    (lambda: dict(scale_dtype="e5m2"), ValueError, "scale_dtype"),
    (lambda: dict(rounding="nearest"), ValueError, "rounding"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_construction_checks_every_field(i):
    change, err, match = BAD[i]
    with pytest.raises(err, match=match):
        dataclasses.replace(T, **change()).dequantize()


def _leaves(change):
    t = dict(codes=T.codes, scales=T.scales, global_scale=T.global_scale, group_size=32,
             scale_dtype="e8m0", rounding="even", shape=(2, 64))
    t.update(change)
    return t


# changes of traced leaves: under jit they reach the ops unchecked by the constructor
USE = [
    (dict(codes=T.codes[:, :16]), ValueError, "t.codes"),
    (dict(codes=T.codes.astype(jnp.int8)), TypeError, "t.codes must be uint8"),
    (dict(scales=T.scales[:, :1]), ValueError, "t.scales"),
    (dict(scales=E4M3), TypeError, "t.scales"),
    (dict(scales=T.scales[:1]), ValueError, "t.scales"),
    (dict(global_scale=jnp.ones(1, F32)), ValueError, "t.global_scale"),
    (dict(global_scale=jnp.float16(1)), TypeError, "t.global_scale must be float32"),
]


ARG = {"dequantize": "t", "matmul_a": "a", "matmul_w": "w", "quantized_matmul": "w"}


@pytest.mark.parametrize("op", list(ARG))
@pytest.mark.parametrize("i", range(len(USE)))
def test_traced_fields_checked_at_use(i, op):
    change, err, match = USE[i]
    kw = _leaves(change)
    names = ("codes", "scales", "global_scale")
    arrays = [kw.pop(k) for k in names]

    def run(*leaves):
        t = fp4.FP4Tensor(**dict(zip(names, leaves)), **kw)
        if op == "dequantize":
            return fp4.dequantize(t)
        if op == "matmul_a":
            return fp4.matmul(t, WT)
        if op == "matmul_w":
            return fp4.matmul(fp4.quantize(X[:1], "mxfp4"), t)
        return fp4.quantized_matmul(X[:1], t, "mxfp4")

    with pytest.raises(err, match=match.replace("t.", ARG[op] + ".")):
        jax.jit(run)(*arrays)


def test_non_array_leaves_rejected_at_use():
    t = jax.tree.map(lambda _: object(), T)                # built: a placeholder
    with pytest.raises(TypeError, match="t.codes"):
        t.dequantize()
    with pytest.raises(TypeError, match="w.global_scale"):
        fp4.matmul(T, dataclasses.replace(WT, global_scale=1.0))


def test_placeholder_leaves_pass_construction():
    """Tree transformations rebuild the tensor with non-array leaves."""
    for leaf in (object(), None, 0, "x"):
        assert jax.tree.map(lambda _, v=leaf: v, T).codes is leaf
    jax.tree.map(lambda x: x.sharding, T)
    jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(T), [None] * 3)
    s = jax.eval_shape(lambda x: fp4.quantize(x, "mxfp4"), jax.ShapeDtypeStruct((2, 64), F32))
    assert s.codes.shape == (2, 32) and s.scales.dtype == jnp.float8_e8m0fnu


def test_vmap_and_scan_over_stacked_tensors():
    """Leaves with extra leading axes (stacked layers, vmap outputs) are built;
    inside vmap / scan each slice is a tensor of the logical shape."""
    xs = np.stack([X, -2 * X])
    ts = [fp4.quantize(x, "mxfp4") for x in xs]
    stacked = jax.vmap(lambda c, s: dataclasses.replace(T, codes=c, scales=s))(
        jnp.stack([t.codes for t in ts]), jnp.stack([t.scales for t in ts]))
    assert stacked.codes.shape == (2, 2, 32) and stacked.global_scale.shape == (2,)
    ys = jax.vmap(fp4.dequantize)(stacked)
    for i in range(2):
        assert_same_bits(ys[i], _golden(ts[i]))
    _, zs = jax.lax.scan(lambda c, t: (c, fp4.dequantize(t)), None, stacked)
    assert_same_bits(zs, ys)
    with pytest.raises(ValueError, match="t.codes"):      # used whole: its shape is wrong
        fp4.dequantize(stacked)


# one program each for all the scales below: the scale is the only argument
_with_gs = {
    "dequantize": jax.jit(lambda g: dataclasses.replace(T, global_scale=g).dequantize()),
    "matmul w": jax.jit(lambda g: fp4.matmul(T, dataclasses.replace(WT, global_scale=g))),
    "matmul a": jax.jit(lambda g: fp4.matmul(dataclasses.replace(T, global_scale=g), WT)),
    "quantized_matmul w": jax.jit(
        lambda g: fp4.quantized_matmul(X, dataclasses.replace(WT, global_scale=g), "mxfp4")),
    "quantized_matmul x": jax.jit(lambda g: fp4.quantized_matmul(X, WT, "mxfp4",
                                                                 global_scale=g)),
}


def test_valid_tensor_matches_golden():
    assert_same_bits(T.dequantize(), _golden(T))
    e4 = fp4.FP4Tensor(T.codes, E4M3, T.global_scale, 32, "e4m3", "even", (2, 64))
    assert_same_bits(e4.dequantize(), _golden(e4))


BAD_GS = [0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, -1e-40]


@pytest.mark.parametrize("gs", BAD_GS)
def test_bad_global_scale_is_an_error_eagerly(gs):
    bad = dataclasses.replace(T, global_scale=jnp.float32(gs))
    with pytest.raises(ValueError, match="t.global_scale"):
        bad.dequantize()
    with pytest.raises(ValueError, match="a.global_scale"):
        fp4.matmul(bad, WT)
    with pytest.raises(ValueError, match="w.global_scale"):
        fp4.quantized_matmul(W, bad, "mxfp4")
    with pytest.raises(ValueError, match="global_scale"):
        fp4.quantized_matmul(X, WT, "mxfp4", global_scale=jnp.float32(gs))


@pytest.mark.parametrize("op", list(_with_gs))
def test_bad_traced_global_scale_gives_nan(op):
    for gs in BAD_GS:
        y = np.asarray(_with_gs[op](jnp.float32(gs)))
        assert y.shape == ((2, 64) if op == "dequantize" else (2, 2))
        assert np.isnan(y).all(), (op, gs)


@pytest.mark.gpu
def test_bad_traced_global_scale_gives_nan_pallas():
    y = jax.jit(lambda g: fp4.matmul(T, dataclasses.replace(WT, global_scale=g),
                                     implementation="pallas"))(jnp.float32(0))
    assert np.isnan(np.asarray(y)).all()


def test_good_traced_global_scale_unchanged():
    """Positive finite scales, subnormal ones included, are used as given."""
    for gs in [0.5, 3.0, 1e-40, 2.0 ** -126]:
        assert_same_bits(_with_gs["dequantize"](jnp.float32(gs)), _golden(T, F32(gs)))
        y = np.asarray(_with_gs["matmul w"](jnp.float32(gs)))
        ref = G.matmul_reference(np.asarray(T.codes), np.asarray(T.scale_bytes),
                                 T.global_scale, np.asarray(WT.codes),
                                 np.asarray(WT.scale_bytes), F32(gs), scale_dtype_a="e8m0",
                                 scale_dtype_w="e8m0")
        assert np.isfinite(y).all()
        if gs >= 2.0 ** -100:                 # far from float32 underflow: SPEC 9.8's bound
            assert np.linalg.norm(y - ref) <= 1e-5 * np.linalg.norm(ref)


@pytest.mark.gpu
def test_bad_traced_global_scale_gives_nan_one_pass():
    """The one-pass ``quantized_matmul`` (the GPU's gemv schedule, interpret mode
    here) multiplies both global scales in its kernel: NaN too."""
    bk = Backend("pallas", interpret=True, gpu=True)
    assert LA.one_pass(X, WT, fp4.MXFP4, None, bk, bk) == "gemv"
    f = jax.jit(lambda g, h: LA.quantized_matmul_on(
        X, dataclasses.replace(WT, global_scale=g), fp4.MXFP4, None, h, bk, bk))
    for g, h in [(0.0, 1.0), (1.0, -0.0), (np.inf, 1.0), (1.0, np.nan)]:
        assert np.isnan(np.asarray(f(F32(g), F32(h)))).all(), (g, h)
    y = np.asarray(f(F32(WT.global_scale), F32(fp4.MXFP4.global_scale)))
    ref = np.asarray(fp4.matmul(fp4.quantize(X, "mxfp4"), WT))        # XLA: not bit-equal
    assert np.linalg.norm(y - ref) <= 1e-5 * np.linalg.norm(ref)
