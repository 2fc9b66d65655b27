"""Sharded fp4 quantize / matmul / QuantLinear == golden (codes and scale bytes bit
for bit, matmuls within SPEC 9.8's tolerance of golden's float64 product, and the
same bits as unsharded), outputs left distributed (SPEC.md section 9). 4 host
devices on CPU (conftest sets XLA_FLAGS); Pallas cases run interpreted there and
compiled on the GPU machine."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from golden import fp4 as G
from tests.helpers import check_fp4_transform
from scmp_jax import fp4
from scmp_jax.flax import QuantLinear
from tests.helpers import bits as _bits

pytestmark = pytest.mark.skipif(len(jax.devices()) < 2, reason="needs >= 2 devices")
needs4 = pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 devices (2x2 mesh)")
F32 = np.float32
IMPLS = ["xla", pytest.param("pallas", marks=pytest.mark.gpu)]


def _mesh():
    return jax.make_mesh((2, 2), ("x", "y"))


def _put(x, mesh, *spec):
    return jax.device_put(x, NamedSharding(mesh, P(*spec)))


def _shard(t, mesh, spec):
    """An FP4Tensor with codes and scales placed as ``spec`` (sharded quantize is
    tested on its own; this saves compiling it per matmul case)."""
    return dataclasses.replace(t, codes=_put(t.codes, mesh, *spec),
                               scales=_put(t.scales, mesh, *spec))


def _values(shape, seed):
    r = np.random.default_rng(seed)
    x = (r.standard_normal(shape) * 10.0 ** r.integers(-2, 3, shape)).astype(F32)
    x.reshape(-1)[::97] = 0.0
    x.reshape(-1)[5] = np.nan
    return x


def _gold_kw(cfg, global_scale=None):
    """golden.fp4 keywords of a preset name or FP4Config (global scale overridden)."""
    cfg = fp4.PRESETS[cfg] if isinstance(cfg, str) else cfg
    return dict(group_size=cfg.group_size, scale_dtype=cfg.scale_dtype,
                scale_scale=cfg.scale_scale, rounding=cfg.rounding,
                global_scale=cfg.global_scale if global_scale is None else global_scale)


def _golden_tensor(t, x, cfg, global_scale=None):
    """FP4Tensor ``t`` == golden's quantization of ``x``, codes and scale bytes; the
    golden dict back."""
    ref = G.quantize(x, **_gold_kw(cfg, global_scale))
    assert np.array_equal(np.asarray(t.codes), ref["codes"])
    assert np.array_equal(np.asarray(t.scale_bytes), ref["scales"])
    return ref


def _close_to_golden(y, xa, cfg_a, gs_a, xw, cfg_w, gs_w=None):
    """``y`` vs golden's float64 product of golden's codes (SPEC 9.8): NaN at the
    same places, relative L2 error of the rest below 1e-5."""
    ka, kw = _gold_kw(cfg_a, gs_a), _gold_kw(cfg_w, gs_w)
    a, w = G.quantize(xa, **ka), G.quantize(xw, **kw)
    ref = G.matmul_reference(a["codes"], a["scales"], a["global_scale"], w["codes"],
                             w["scales"], w["global_scale"], scale_dtype_a=ka["scale_dtype"],
                             scale_dtype_w=kw["scale_dtype"])
    y = np.asarray(y, np.float64)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan)
    assert np.linalg.norm(y[~nan] - ref[~nan]) / np.linalg.norm(ref[~nan]) < 1e-5


def _tie_row(K, cfg, gs, seed):
    """K values whose quotients ``x / p`` by their group's own divisor ``p`` are e2m1
    values and rounding midpoints (exact ties: the rounding modes differ there)."""
    kw = _gold_kw(cfg, gs)
    g, r = kw["group_size"], np.random.default_rng(seed)
    c = F32(F32(kw["scale_scale"]) * F32(kw["global_scale"]))
    ties = np.array([.25, .75, 1.25, 1.75, 2.5, 3.5, 5, .5, 1, 2, 3, 4], F32)
    out = []
    for _ in range(K // g):
        amax = F32(abs(r.standard_normal()) * 10.0 ** r.uniform(-2, 2) + 0.01)
        byte = G.encode_scale(F32(amax / c), kw["scale_dtype"])
        p = F32(G.decode_scale(byte, kw["scale_dtype"]) * F32(kw["global_scale"]))
        v = r.choice(ties, g) * r.choice(F32([-1, 1]), g) * p
        v = np.where(np.abs(v) <= amax, v, F32(0))
        v[r.integers(g)] = amax
        out.append(v)
    return np.concatenate(out).astype(F32)


# settings besides the presets: other group sizes, scale formats, scale scales, roundings
CFG_E4M3_UP = fp4.FP4Config(8, "e4m3", 1.0, rounding="up")
CFG_E8M0_ZERO = fp4.FP4Config(64, "e8m0", 6.0, rounding="zero")
CFG_E8M0_DOWN = fp4.FP4Config(4, "e8m0", 0.25, rounding="down")


@needs4
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cfg,spec,gs", [("mxfp4", ("x", None), 0.5),
                                         ("nvfp4", ("x", "y"), 0.5),
                                         ("nvfp4", (None, ("x", "y")), 0.5),
                                         ("mxfp4", (("x", "y"), None), 0.5),
                                         (CFG_E4M3_UP, (None, "y"), 2.0 ** -10),
                                         (CFG_E8M0_ZERO, ("y", "x"), 1e-3),
                                         (CFG_E8M0_DOWN, (("x", "y"), None), 3.0)])
def test_quantize_sharded_matches_golden(impl, cfg, spec, gs):
    """Rows and / or K sharded, each group size / scale format / rounding (two rows
    of exact ties, where the rounding modes differ): codes and scale bytes ==
    golden bit for bit, left sharded as x."""
    mesh = _mesh()
    x = _values((8, 256), 1)
    x[2], x[5] = _tie_row(256, cfg, gs, 2), _tie_row(256, cfg, gs, 5)
    t = fp4.quantize(_put(x, mesh, *spec), cfg, global_scale=gs, implementation=impl)
    _golden_tensor(t, x, cfg, gs)
    want = NamedSharding(mesh, P(*spec))
    assert t.codes.sharding.is_equivalent_to(want, 2)
    assert t.scales.sharding.is_equivalent_to(want, 2)


@needs4
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("a_spec,w_spec,a_shape,cfg_a,cfg_w", [
    (("x", None), ("y", None), (8, 128), "nvfp4", "mxfp4"),
    (("x", None), (None, None), (8, 128), "mxfp4", "nvfp4"),
    ((None, None), (("x", "y"), None), (4, 128), CFG_E4M3_UP, "mxfp4"),
    (("x", "y", None), (None, None), (2, 6, 128), "nvfp4", CFG_E8M0_ZERO),   # batch, rows
    (("x", None, None), ("y", None), (2, 5, 512), "mxfp4", "mxfp4"),  # 3D a, w rows; split-K
])
def test_matmul_sharded_matches_golden(impl, a_spec, w_spec, a_shape, cfg_a, cfg_w):
    """Operands quantized with different settings, then sharded: codes == golden,
    the product within SPEC 9.8's tolerance of golden's, the same bits as the
    unsharded call, left sharded as (rows of a, rows of w)."""
    mesh = _mesh()
    xa, xw = _values(a_shape, 2), _values((12, a_shape[-1]), 3)
    a = fp4.quantize(xa, cfg_a, global_scale=0.25)
    w = fp4.quantize(xw, cfg_w)
    _golden_tensor(a, xa, cfg_a, 0.25)
    _golden_tensor(w, xw, cfg_w)
    y = fp4.matmul(_shard(a, mesh, a_spec), _shard(w, mesh, w_spec), implementation=impl)
    _close_to_golden(y, xa, cfg_a, 0.25, xw, cfg_w)
    ref = fp4.matmul(a, w, implementation=impl)
    assert np.array_equal(_bits(y), _bits(ref))
    want = NamedSharding(mesh, P(*a_spec[:-1], w_spec[0]))
    assert y.sharding.is_equivalent_to(want, len(a_shape))
    assert np.isnan(np.asarray(y)).any() and np.isfinite(np.asarray(y)).any()


@needs4
@pytest.mark.parametrize("impl", IMPLS)
def test_quantize_sharded_with_transform(impl):
    """A shared (g, g) transform with rows and K sharded (whole blocks per shard),
    a per-block (K/g, g, g) one with rows sharded (XLA only: the kernel runs the
    same per-shard program for both): golden end to end (SPEC 9.7's tolerance,
    ``check_fp4_transform``) and the same bits as unsharded."""
    mesh = _mesh()
    r = np.random.default_rng(11)
    x = _values((8, 128), 12)
    t2 = np.linalg.qr(r.standard_normal((32, 32)))[0].astype(F32)
    t3 = np.stack([np.linalg.qr(r.standard_normal((16, 16)))[0] for _ in range(8)]).astype(F32)
    for t, spec in ((t2, ("x", "y")),) + (((t3, (("x", "y"), None)),) if impl == "xla" else ()):
        ref = fp4.quantize(x, "nvfp4", transform=t, implementation=impl)
        q = fp4.quantize(_put(x, mesh, *spec), "nvfp4", transform=t, implementation=impl)
        check_fp4_transform(q.codes, q.scale_bytes, x, t, **_gold_kw("nvfp4"))
        assert np.array_equal(np.asarray(q.codes), np.asarray(ref.codes))
        assert np.array_equal(np.asarray(q.scale_bytes), np.asarray(ref.scale_bytes))
        assert q.codes.sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), 2)


@needs4
def test_matmul_inside_jit_explicit_mesh():
    """Under jit the tracers' (explicit, jax.make_mesh's default) shardings route
    quantize and matmul to the per-shard programs."""
    mesh = _mesh()
    xa, xw = _values((8, 64), 4), _values((6, 64), 5)
    f = jax.jit(lambda u, v: fp4.matmul(fp4.quantize(u, "mxfp4"), fp4.quantize(v, "mxfp4")))
    y = f(_put(xa, mesh, "x", None), _put(xw, mesh, "y", None))
    _close_to_golden(y, xa, "mxfp4", None, xw, "mxfp4")
    ref = fp4.matmul(fp4.quantize(xa, "mxfp4"), fp4.quantize(xw, "mxfp4"))
    assert np.array_equal(_bits(y), _bits(ref))
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("x", "y")), 2)


@needs4
def test_matmul_weights_committed_to_one_device():
    """Weights committed to one device next to a row-sharded activation are
    copied to the planned (replicated) layout instead of failing in jit."""
    mesh = _mesh()
    xa, xw = _values((8, 64), 13), _values((6, 64), 14)
    w = fp4.quantize(jax.device_put(xw, jax.devices()[0]), "mxfp4")
    assert w.codes.committed
    y = fp4.matmul(fp4.quantize(_put(xa, mesh, ("x", "y"), None), "mxfp4"), w)
    _close_to_golden(y, xa, "mxfp4", None, xw, "mxfp4")
    ref = fp4.matmul(fp4.quantize(xa, "mxfp4"), fp4.quantize(xw, "mxfp4"))
    assert np.array_equal(_bits(y), _bits(ref))
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P(("x", "y"), None)), 2)


@needs4
@pytest.mark.parametrize("impl", IMPLS)
def test_quant_linear_row_sharded(impl):
    mesh = _mesh()
    r = np.random.default_rng(6)
    w = (r.standard_normal((16, 256)) * 0.05).astype(F32)
    x = r.standard_normal((8, 256)).astype(F32)      # the quantize tests' shape: compiled once
    mod, v = QuantLinear.from_dense(jnp.asarray(w), "mxfp4", quant_impl=impl, matmul_impl=impl)
    st = v["fp4"]
    gs_w, gs_a = float(st["global_scale"]), float(st["act_global_scale"])
    ref_w = G.quantize(w, **_gold_kw("mxfp4", gs_w))
    assert np.array_equal(np.asarray(st["codes"]), ref_w["codes"])
    y = mod.apply(v, _put(x, mesh, ("x", "y"), None))
    _close_to_golden(y, x, "mxfp4", gs_a, w, "mxfp4", gs_w)
    ref = mod.apply(v, x)
    assert np.array_equal(_bits(y), _bits(ref))
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P(("x", "y"), None)), 2)


@needs4
def test_bad_layouts():
    mesh = _mesh()
    x = _values((8, 64), 7)
    with pytest.raises(ValueError, match="whole groups"):       # 64/4 = 16 < group 32
        fp4.quantize(_put(x, mesh, None, ("x", "y")), "mxfp4")
    with pytest.raises(ValueError, match="K/g, g, g"):
        t = np.tile(np.eye(16, dtype=F32), (4, 1, 1))
        fp4.quantize(_put(x, mesh, None, "x"), "nvfp4", transform=t)
    with pytest.raises(ValueError, match="whole transform blocks"):   # 64/4 = 16 < g 32
        fp4.quantize(_put(x, mesh, None, ("x", "y")), "nvfp4", transform=np.eye(32, dtype=F32))
    a = fp4.quantize(_put(x, mesh, None, "x"), "nvfp4")       # K sharded: fine to quantize
    w = fp4.quantize(x, "nvfp4")
    with pytest.raises(ValueError, match="a: the inner dim K"):
        fp4.matmul(a, w)
    with pytest.raises(ValueError, match="w: the inner dim K"):
        fp4.matmul(w, a)
    a = fp4.quantize(_put(x, mesh, "x", None), "nvfp4")
    w = fp4.quantize(_put(x, mesh, "x", None), "nvfp4")
    with pytest.raises(ValueError, match="different mesh axes"):
        fp4.matmul(a, w)


@pytest.mark.parametrize("impl", IMPLS)
def test_matmul_rows_sharded_large_n(impl):
    """N >= 256 rows split over every device (on GPU the Pallas schedule for this
    N decodes to bfloat16 and calls XLA's GEMM per shard): close to golden, same
    bits as unsharded."""
    n_dev = len(jax.devices())
    mesh = jax.make_mesh((n_dev,), ("x",))
    xa, xw = _values((128 * n_dev, 64), 9), _values((48, 64), 10)
    a, w = fp4.quantize(xa, "mxfp4"), fp4.quantize(xw, "mxfp4")
    y = fp4.matmul(fp4.quantize(_put(xa, mesh, "x", None), "mxfp4"), w, implementation=impl)
    _close_to_golden(y, xa, "mxfp4", None, xw, "mxfp4")
    ref = fp4.matmul(a, w, implementation=impl)
    assert np.array_equal(_bits(y), _bits(ref))
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("x", None)), 2)


@needs4
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("x_spec,w_spec,x_shape,dtype", [
    (("x", None), ("y", None), (8, 128), jnp.bfloat16),
    (("x", "y", None), (None, None), (2, 4, 128), jnp.float32),          # batch, rows
])
def test_weight_only_sharded_matches_golden(impl, x_spec, w_spec, x_shape, dtype):
    """Float activations and fp4 weights sharded like fp4.matmul's operands: within
    SPEC 9.8's tolerance of golden's float64 product of golden's decoded weight,
    left sharded as (dims of x, rows of w)."""
    mesh = _mesh()
    x = jnp.asarray(_values(x_shape, 15), dtype)
    xw = _values((12, x_shape[-1]), 16)
    w = fp4.quantize(xw, "mxfp4")
    ref_w = _golden_tensor(w, xw, "mxfp4")
    y = fp4.weight_only_matmul(_put(x, mesh, *x_spec), _shard(w, mesh, w_spec),
                               implementation=impl)
    ref = G.weight_only_reference(np.asarray(x), ref_w["codes"], ref_w["scales"],
                                  ref_w["global_scale"], scale_dtype_w="e8m0")
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P(*x_spec[:-1], w_spec[0])),
                                       len(x_shape))
    y = np.asarray(y, np.float64)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(y), nan) and nan.any() and not nan.all()
    assert np.linalg.norm(y[~nan] - ref[~nan]) / np.linalg.norm(ref[~nan]) < 1e-5
    with pytest.raises(ValueError, match="x: the inner dim K"):
        fp4.weight_only_matmul(_put(x, mesh, *((None,) * (len(x_shape) - 1) + ("x",))), w)
    with pytest.raises(ValueError, match="x's dims and w's rows .* different mesh axes"):
        fp4.weight_only_matmul(_put(x, mesh, *x_spec), _shard(w, mesh, ("x", None)))
