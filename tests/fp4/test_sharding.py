"""Sharded fp4 quantize / matmul / QuantLinear: same bits as unsharded, outputs left
distributed (SPEC.md section 9). 4 host devices on CPU (conftest sets
XLA_FLAGS); Pallas cases run interpreted there and compiled on the GPU machine."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

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


def _same_tensor(t, ref):
    assert np.array_equal(np.asarray(t.codes), np.asarray(ref.codes))
    assert np.array_equal(np.asarray(t.scale_bytes), np.asarray(ref.scale_bytes))


@needs4
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("preset,spec", [("mxfp4", ("x", None)), ("nvfp4", ("x", "y")),
                                         ("nvfp4", (None, ("x", "y"))),
                                         ("mxfp4", (("x", "y"), None))])
def test_quantize_sharded_same_bits(impl, preset, spec):
    mesh = _mesh()
    x = _values((8, 256), 1)
    ref = fp4.quantize(x, preset, global_scale=0.5, implementation=impl)
    t = fp4.quantize(_put(x, mesh, *spec), preset, global_scale=0.5, implementation=impl)
    _same_tensor(t, ref)
    want = NamedSharding(mesh, P(*spec))
    assert t.codes.sharding.is_equivalent_to(want, 2)
    assert t.scales.sharding.is_equivalent_to(want, 2)


@needs4
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("a_spec,w_spec,a_shape", [
    (("x", None), ("y", None), (8, 128)),
    (("x", None), (None, None), (8, 128)),
    ((None, None), (("x", "y"), None), (4, 128)),
    (("x", "y", None), (None, None), (2, 6, 128)),          # batch and rows of a
    (("x", None, None), ("y", None), (2, 5, 512)),          # 3D a, w rows; Pallas split-K
])
def test_matmul_sharded_same_bits(impl, a_spec, w_spec, a_shape):
    mesh = _mesh()
    xa, xw = _values(a_shape, 2), _values((12, a_shape[-1]), 3)
    a = fp4.quantize(xa, "nvfp4", global_scale=0.25)
    w = fp4.quantize(xw, "mxfp4")
    ref = fp4.matmul(a, w, implementation=impl)
    y = fp4.matmul(_shard(a, mesh, a_spec), _shard(w, mesh, w_spec), implementation=impl)
    assert np.array_equal(_bits(y), _bits(ref))
    want = NamedSharding(mesh, P(*a_spec[:-1], w_spec[0]))
    assert y.sharding.is_equivalent_to(want, len(a_shape))
    assert np.isnan(np.asarray(y)).any() and np.isfinite(np.asarray(y)).any()


@needs4
@pytest.mark.parametrize("impl", IMPLS)
def test_quantize_sharded_with_transform(impl):
    """A shared (g, g) transform with rows and K sharded (whole blocks per shard),
    a per-block (K/g, g, g) one with rows sharded (XLA only: the kernel runs the
    same per-shard program for both): same bits."""
    mesh = _mesh()
    r = np.random.default_rng(11)
    x = _values((8, 128), 12)
    t2 = np.linalg.qr(r.standard_normal((32, 32)))[0].astype(F32)
    t3 = np.stack([np.linalg.qr(r.standard_normal((16, 16)))[0] for _ in range(8)]).astype(F32)
    for t, spec in ((t2, ("x", "y")),) + (((t3, (("x", "y"), None)),) if impl == "xla" else ()):
        ref = fp4.quantize(x, "nvfp4", transform=t, implementation=impl)
        q = fp4.quantize(_put(x, mesh, *spec), "nvfp4", transform=t, implementation=impl)
        _same_tensor(q, ref)
        assert q.codes.sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), 2)


@needs4
def test_matmul_inside_jit_explicit_mesh():
    """Under jit the tracers' (explicit, jax.make_mesh's default) shardings route
    quantize and matmul to the per-shard programs."""
    mesh = _mesh()
    xa, xw = _values((8, 64), 4), _values((6, 64), 5)
    ref = fp4.matmul(fp4.quantize(xa, "mxfp4"), fp4.quantize(xw, "mxfp4"))
    f = jax.jit(lambda u, v: fp4.matmul(fp4.quantize(u, "mxfp4"), fp4.quantize(v, "mxfp4")))
    y = f(_put(xa, mesh, "x", None), _put(xw, mesh, "y", None))
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
    ref = fp4.matmul(fp4.quantize(xa, "mxfp4"), fp4.quantize(xw, "mxfp4"))
    y = fp4.matmul(fp4.quantize(_put(xa, mesh, ("x", "y"), None), "mxfp4"), w)
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
    ref = mod.apply(v, x)
    y = mod.apply(v, _put(x, mesh, ("x", "y"), None))
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
    N decodes to bfloat16 and calls XLA's GEMM per shard): same bits."""
    n_dev = len(jax.devices())
    mesh = jax.make_mesh((n_dev,), ("x",))
    xa, xw = _values((128 * n_dev, 64), 9), _values((48, 64), 10)
    a, w = fp4.quantize(xa, "mxfp4"), fp4.quantize(xw, "mxfp4")
    ref = fp4.matmul(a, w, implementation=impl)
    y = fp4.matmul(fp4.quantize(_put(xa, mesh, "x", None), "mxfp4"), w, implementation=impl)
    assert np.array_equal(_bits(y), _bits(ref))
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("x", None)), 2)
