"""scmp_jax.flax QuantLinear (linen and nnx) over scmp_jax.fp4 (SPEC.md section 9).

Pallas backends run in interpret mode off GPU (marked ``gpu`` where used).
"""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from golden import fp4 as G
from scmp_jax import fp4
from scmp_jax.flax import NNXQuantLinear, QuantLinear
from tests.helpers import check_fp4_transform

F32 = np.float32
BF16 = jnp.bfloat16
R = np.random.default_rng(0)
X = jnp.asarray(R.standard_normal((3, 64)), jnp.float32)
W = (R.standard_normal((32, 64)) * 0.1).astype(F32)       # (out_features, in_features)
T = np.linalg.qr(R.standard_normal((16, 16)))[0].astype(F32)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _gold_kw(fmt, global_scale):
    cfg = fp4.PRESETS[fmt]
    return dict(group_size=cfg.group_size, scale_dtype=cfg.scale_dtype,
                scale_scale=cfg.scale_scale, global_scale=float(global_scale),
                rounding=cfg.rounding)


def _golden_layer(x, st, fmt):
    """golden's forward of a QuantLinear state without a transform: golden
    quantizes ``x`` with the state's activation global scale and forms the
    float64 product with the state's weight codes (SPEC 9.8)."""
    kw = _gold_kw(fmt, st["act_global_scale"])
    a = G.quantize(np.asarray(x), **kw)
    return G.matmul_reference(a["codes"], a["scales"], a["global_scale"],
                              np.asarray(st["codes"]), np.asarray(st["scales"]).view(np.uint8),
                              st["global_scale"], scale_dtype_a=kw["scale_dtype"],
                              scale_dtype_w=kw["scale_dtype"])


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
def test_from_dense_matches_fp4_api(fmt):
    m, v = QuantLinear.from_dense(W, fmt, transform=T, quant_impl="xla", matmul_impl="xla")
    y = m.apply(v, X)
    assert y.shape == (3, 32) and y.dtype == jnp.float32
    st = v["fp4"]
    assert st["codes"].dtype == jnp.uint8 and st["codes"].shape == (32, 32)
    cfg = fp4.PRESETS[fmt]
    # the weight and the activation: golden's quantize(transform(.)) end to end (SPEC 9.7)
    check_fp4_transform(st["codes"], np.asarray(st["scales"]).view(np.uint8), W, T,
                        **_gold_kw(fmt, st["global_scale"]))
    a = fp4.quantize(X, cfg, global_scale=st["act_global_scale"], transform=T)
    check_fp4_transform(a.codes, a.scale_bytes, np.asarray(X), T,
                        **_gold_kw(fmt, st["act_global_scale"]))
    ref = G.matmul_reference(np.asarray(a.codes), np.asarray(a.scale_bytes), a.global_scale,
                             np.asarray(st["codes"]), np.asarray(st["scales"]),
                             st["global_scale"], scale_dtype_a=cfg.scale_dtype,
                             scale_dtype_w=cfg.scale_dtype)
    assert _rel(y, ref) < 1e-5
    dense = np.asarray(X) @ W.T                                # orthogonal T: same product
    assert _rel(y, dense) < 0.25
    n = NNXQuantLinear.from_dense(W, fmt, transform=T, quant_impl="xla", matmul_impl="xla")
    assert np.array_equal(np.asarray(n(X)), np.asarray(y))


@pytest.mark.gpu
def test_backend_mixes_agree():
    m, v = QuantLinear.from_dense(W, "mxfp4", quant_impl="xla", matmul_impl="xla")
    _, vp = QuantLinear.from_dense(W, "mxfp4", quant_impl="pallas")
    for k in ("codes", "scales", "global_scale"):                # weight quantization: bit-equal
        assert np.array_equal(np.asarray(v["fp4"][k]), np.asarray(vp["fp4"][k]))
    base = m.apply(v, X)
    assert _rel(base, _golden_layer(X, v["fp4"], "mxfp4")) < 1e-5
    for qi in ("xla", "pallas"):
        for mi in ("xla", "pallas"):
            y = m.clone(quant_impl=qi, matmul_impl=mi).apply(v, X)
            assert _rel(y, base) < 1e-5, (qi, mi)
    a_x = fp4.quantize(X, "mxfp4", implementation="xla")
    a_p = fp4.quantize(X, "mxfp4", implementation="pallas")
    ref = G.quantize(np.asarray(X), **G.PRESETS["mxfp4"])
    assert np.array_equal(np.asarray(a_x.codes), ref["codes"])
    assert np.array_equal(np.asarray(a_p.codes), ref["codes"])
    n = NNXQuantLinear.from_dense(W, "mxfp4", quant_impl="pallas", matmul_impl="pallas")
    assert _rel(n(X), base) < 1e-5


def test_linen_init_and_astype_leaves_fp4_alone():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return QuantLinear(16, fmt="nvfp4", transform_size=16,
                               quant_impl="xla", matmul_impl="xla")(nn.Dense(64)(x))

    net = Net()
    v = net.init(jax.random.key(0), X)
    assert set(v) == {"params", "fp4"}
    fp4_state = v["fp4"]["QuantLinear_0"]
    assert set(fp4_state) == {"codes", "scales", "global_scale", "act_global_scale", "transform"}
    y = net.apply(v, X)
    assert y.shape == (3, 16)
    params16 = jax.tree.map(lambda p: p.astype(BF16), v["params"])
    v16 = {"params": params16, "fp4": v["fp4"]}
    for a, b in zip(jax.tree.leaves(v16["fp4"]), jax.tree.leaves(v["fp4"])):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert net.apply(v16, X).dtype == jnp.float32
    # the layer's output: golden end to end (the Dense output h quantized after the
    # Hadamard transform, within SPEC 9.7's tolerance; the product within 9.8's)
    h = nn.Dense(64).apply({"params": v["params"]["Dense_0"]}, X)
    T16 = np.asarray(fp4_state["transform"])
    a = fp4.quantize(h, "nvfp4", global_scale=fp4_state["act_global_scale"], transform=T16)
    check_fp4_transform(a.codes, a.scale_bytes, np.asarray(h), T16,
                        **_gold_kw("nvfp4", fp4_state["act_global_scale"]))
    ref = G.matmul_reference(np.asarray(a.codes), np.asarray(a.scale_bytes), a.global_scale,
                             np.asarray(fp4_state["codes"]),
                             np.asarray(fp4_state["scales"]).view(np.uint8),
                             fp4_state["global_scale"], scale_dtype_a="e4m3", scale_dtype_w="e4m3")
    assert _rel(y, ref) < 1e-5
    y_jit = jax.jit(net.apply)(v, X)                             # and jit == eager, bit for bit
    assert np.array_equal(np.asarray(y_jit).view(np.uint32), np.asarray(y).view(np.uint32))


def test_nnx_init_and_astype_leaves_fp4_alone():
    model = NNXQuantLinear(64, 16, fmt="mxfp4", rngs=nnx.Rngs(0), quant_impl="xla",
                           matmul_impl="xla")
    assert len(jax.tree.leaves(nnx.state(model, nnx.Param))) == 0
    before = model.state_dict()
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    params = jax.tree.map(lambda p: p.astype(BF16), params)
    model2 = nnx.merge(graph, params, rest)
    for k, v in model2.state_dict().items():
        assert v.dtype == before[k].dtype and np.array_equal(np.asarray(v), np.asarray(before[k]))
    y = model2(X)
    assert y.shape == (3, 16) and y.dtype == jnp.float32
    # the weight is kernel_init's draw from the same rng stream: golden's codes
    w = np.asarray(nnx.initializers.lecun_normal()(nnx.Rngs(0).params(), (64, 16), F32)).T
    ref_w = G.quantize(w, **_gold_kw("mxfp4", before["global_scale"]))
    assert np.array_equal(np.asarray(before["codes"]), ref_w["codes"])
    assert np.array_equal(np.asarray(before["scales"]).view(np.uint8), ref_w["scales"])
    assert _rel(y, _golden_layer(X, before, "mxfp4")) < 1e-5
    # the linen layer on the same state: the same bits
    m, v = QuantLinear.from_state_dict(before, "mxfp4", quant_impl="xla", matmul_impl="xla")
    assert np.array_equal(np.asarray(m.apply(v, X)).view(np.uint32), np.asarray(y).view(np.uint32))


def test_serialization_round_trip():
    m, v = QuantLinear.from_dense(W, "nvfp4", transform=T, quant_impl="xla", matmul_impl="xla")
    blob = flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(v))
    restored = flax.serialization.msgpack_restore(blob)
    m2, v2 = QuantLinear.from_state_dict(restored["fp4"], "nvfp4", quant_impl="xla",
                                         matmul_impl="xla")
    assert np.array_equal(np.asarray(m2.apply(v2, X)), np.asarray(m.apply(v, X)))
    v3 = flax.serialization.from_state_dict(v, restored)
    assert np.array_equal(np.asarray(m.apply(v3, X)), np.asarray(m.apply(v, X)))
    # nnx: pure dict -> msgpack -> a fresh layer
    n = NNXQuantLinear.from_dense(W, "nvfp4", quant_impl="xla", matmul_impl="xla")
    blob = flax.serialization.msgpack_serialize(n.state_dict())
    fresh = NNXQuantLinear(64, 32, fmt="nvfp4", rngs=nnx.Rngs(1), quant_impl="xla",
                           matmul_impl="xla")
    fresh.load_state_dict(flax.serialization.msgpack_restore(blob))
    assert np.array_equal(np.asarray(fresh(X)), np.asarray(n(X)))
    pure = nnx.to_pure_dict(nnx.state(n))
    assert set(pure) >= {"codes", "scales", "global_scale", "act_global_scale"}


BAD = [
    (lambda: QuantLinear.from_dense(W, "fp8"), "fmt"),
    (lambda: QuantLinear.from_dense(W, "mxfp4", act_fmt="int4"), "act_fmt"),
    (lambda: QuantLinear.from_dense(W, "mxfp4", quant_impl="cuda"), "quant_impl"),
    (lambda: NNXQuantLinear.from_dense(W, matmul_impl="triton"), "matmul_impl"),
    (lambda: QuantLinear.from_dense(W[None], "mxfp4"), "w must be 2D"),
    (lambda: NNXQuantLinear.from_dense(W[None]), "w must be 2D"),
    (lambda: QuantLinear.from_dense(W, "mxfp4", transform=np.eye(3, dtype=F32)), "transform"),
    (lambda: NNXQuantLinear(64, 16), "rngs"),
    (lambda: NNXQuantLinear(64, 16, weight=W), "weight"),
]


@pytest.mark.parametrize("fn,match", BAD)
def test_bad_arguments_raise(fn, match):
    with pytest.raises(ValueError, match=match):
        fn()


def test_bad_input_and_state_raise():
    m, v = QuantLinear.from_dense(W, "mxfp4", quant_impl="xla", matmul_impl="xla")
    with pytest.raises(ValueError, match="x must have last axis"):
        m.apply(v, jnp.ones((3, 32)))
    with pytest.raises(ValueError, match="x must be a float"):
        m.apply(v, jnp.ones((3, 64), jnp.int32))
    bad = dict(v["fp4"], scales=np.zeros((32, 4), np.uint8))
    with pytest.raises(ValueError, match="scales"):
        QuantLinear.from_state_dict(bad, "mxfp4")
    n = NNXQuantLinear.from_dense(W, "mxfp4")
    with pytest.raises(ValueError, match="codes"):
        n.load_state_dict(dict(n.state_dict(), codes=np.zeros((32, 31), np.uint8)))
