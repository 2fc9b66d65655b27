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
from scmp_jax.flax import (FP4, NNXQuantLinear, QuantLinear, Rule, fp4_dot_general, fp4_einsum,
                           simulate)
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


# ---- weight-only mode: float activations, fp4 weights (SPEC 9.9) ---------------------------

def _golden_weight_only(x, st):
    """golden's float64 product of float activations with a layer state's weight."""
    sb = np.asarray(st["scales"]).view(np.uint8)
    scale_dtype = "e8m0" if sb.shape[-1] * 32 == 2 * np.shape(st["codes"])[-1] else "e4m3"
    return G.weight_only_reference(np.asarray(x), np.asarray(st["codes"]), sb,
                                   st["global_scale"], scale_dtype_w=scale_dtype)


def _close(y, ref):
    assert np.asarray(y).dtype == np.float32
    assert _rel(y, ref) < 1e-5


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
def test_weight_only_layers_match_golden(fmt):
    """linen and nnx layers (from a dense weight and from init): golden's weight
    codes, golden's float64 product with bf16 / f32 activations, the same bits
    from both layers."""
    m, v = QuantLinear.from_dense(W, fmt, weight_only=True, quant_impl="xla", matmul_impl="xla")
    st = v["fp4"]
    assert set(st) == {"codes", "scales", "global_scale"}
    ref_w = G.quantize(W, **_gold_kw(fmt, st["global_scale"]))
    assert np.array_equal(np.asarray(st["codes"]), ref_w["codes"])
    assert np.array_equal(np.asarray(st["scales"]).view(np.uint8), ref_w["scales"])
    n = NNXQuantLinear.from_dense(W, fmt, weight_only=True, quant_impl="xla", matmul_impl="xla")
    for x in (X.astype(BF16), X.reshape(3, 1, 64)):
        y = m.apply(v, x)
        assert y.shape == x.shape[:-1] + (32,)
        _close(y, _golden_weight_only(x, st))
        assert np.array_equal(np.asarray(n(x)).view(np.uint32), np.asarray(y).view(np.uint32))
    assert set(n.state_dict()) == {"codes", "scales", "global_scale"}


def test_weight_only_init():
    """Built by init (linen) and from rngs (nnx): no activation entry; golden's
    product of the state's weight."""
    layer = QuantLinear(16, weight_only=True, matmul_impl="xla")
    st = jax.jit(layer.init)(jax.random.key(0), X)["fp4"]
    assert set(st) == {"codes", "scales", "global_scale"}
    _close(layer.apply({"fp4": st}, X[:1]), _golden_weight_only(X[:1], st))
    n = nnx.jit(lambda: NNXQuantLinear(64, 16, weight_only=True, rngs=nnx.Rngs(0),
                                       quant_impl="xla", matmul_impl="xla"))()
    sd = n.state_dict()
    assert set(sd) == {"codes", "scales", "global_scale"}
    _close(n(X), _golden_weight_only(X, sd))


@pytest.mark.gpu
def test_weight_only_layers_pallas_match_golden():
    m, v = QuantLinear.from_dense(W, "mxfp4", weight_only=True, matmul_impl="pallas")
    _close(m.apply(v, X.astype(BF16)), _golden_weight_only(X.astype(BF16), v["fp4"]))
    n = NNXQuantLinear.from_dense(W, "nvfp4", weight_only=True, matmul_impl="pallas")
    _close(n(X[:1]), _golden_weight_only(X[:1], n.state_dict()))


def test_weight_only_serves_a_w4a4_checkpoint():
    """A W4A4 layer's state loads into a weight-only layer (its activation scale
    dropped) and gives golden's weight-only product of that weight."""
    _, v = QuantLinear.from_dense(W, "nvfp4", quant_impl="xla", matmul_impl="xla")
    m, vw = QuantLinear.from_state_dict(v["fp4"], "nvfp4", weight_only=True, matmul_impl="xla")
    assert set(vw["fp4"]) == {"codes", "scales", "global_scale"}
    y = m.apply(vw, X)
    _close(y, _golden_weight_only(X, v["fp4"]))
    n = NNXQuantLinear(64, 32, fmt="nvfp4", weight_only=True, rngs=nnx.Rngs(0),
                       matmul_impl="xla")
    n.load_state_dict(v["fp4"])
    assert np.array_equal(np.asarray(n(X)).view(np.uint32), np.asarray(y).view(np.uint32))


@pytest.mark.parametrize("dtype,fmt", [(jnp.float32, "mxfp4"), (BF16, "nvfp4")])
def test_weight_only_rule_and_dot_general_same_bits_as_functional(dtype, fmt):
    """``FP4(fmt, weight_only=True)`` inside simulate and ``fp4_dot_general`` in a
    Dense: the bits of ``fp4.weight_only_matmul(x, quantize(kernel.T))`` in the
    Dense's dtype."""
    dense = nn.Dense(32, use_bias=False, dtype=dtype)
    v = dense.init(jax.random.key(1), X)
    k = v["params"]["kernel"].astype(dtype)
    want = jax.jit(lambda x, k: fp4.weight_only_matmul(x, fp4.quantize(k.T, fmt)).astype(dtype))(
        X.astype(dtype), k)
    sim = simulate(dense, [Rule(".*", FP4(fmt, weight_only=True, implementation="xla"))])
    y = jax.jit(sim.apply)(v, X)
    assert y.dtype == dtype and np.array_equal(np.asarray(y), np.asarray(want))
    dg = nn.Dense(32, use_bias=False, dtype=dtype,
                  dot_general=fp4_dot_general(fmt, weight_only=True, implementation="xla"))
    assert np.array_equal(np.asarray(jax.jit(dg.apply)(v, X)), np.asarray(want))
    assert repr(FP4(fmt, weight_only=True)) == f"FP4('{fmt}', weight_only=True)"


def test_weight_only_einsum_with_batch_dim():
    """A contraction with a batch dim: one weight-only product per index."""
    a, b = X.reshape(3, 1, 64), jnp.asarray(W[:6].reshape(3, 2, 64))
    y = jax.jit(fp4_einsum("mxfp4", weight_only=True), static_argnums=0)("hnd,hmd->hnm", a, b)
    for h in range(3):
        w = fp4.quantize(b[h], "mxfp4")
        assert np.array_equal(np.asarray(y[h]), np.asarray(fp4.weight_only_matmul(a[h], w)))


BAD_WEIGHT_ONLY = [
    (lambda: QuantLinear.from_dense(W, weight_only=True, act_fmt="nvfp4"), ValueError,
     "act_fmt must be None with weight_only=True"),
    (lambda: QuantLinear.from_dense(W, transform=T, weight_only=True), ValueError,
     "transform must be None with weight_only=True"),
    (lambda: QuantLinear(8, weight_only=True, transform_size=16).init(jax.random.key(0), X),
     ValueError, "transform_size must be None"),
    (lambda: NNXQuantLinear.from_dense(W, act_fmt="mxfp4", weight_only=True), ValueError,
     "act_fmt must be None"),
    (lambda: NNXQuantLinear.from_dense(W, transform=T, weight_only=True), ValueError,
     "transform must be None"),
    (lambda: QuantLinear.from_dense(W, weight_only="yes"), TypeError,
     "weight_only must be a bool"),
    (lambda: NNXQuantLinear.from_dense(W, weight_only=1), TypeError, "weight_only must be a bool"),
    (lambda: FP4("mxfp4", w_fmt="nvfp4", weight_only=True), ValueError, "w_fmt must be None"),
    (lambda: fp4_dot_general(weight_only=None), TypeError, "weight_only must be a bool"),
]


@pytest.mark.parametrize("fn,err,match", BAD_WEIGHT_ONLY)
def test_weight_only_bad_arguments_raise(fn, err, match):
    with pytest.raises(err, match=match):
        fn()


def test_weight_only_bad_input_and_state_raise():
    m, v = QuantLinear.from_dense(W, "mxfp4", weight_only=True, matmul_impl="xla")
    with pytest.raises(ValueError, match="x must be a float array"):
        m.apply(v, fp4.quantize(X, "mxfp4"))
    with pytest.raises(ValueError, match="x must be a float array"):
        m.apply(v, jnp.ones((3, 64), jnp.int32))
    with pytest.raises(ValueError, match="x must have last axis in_features=64"):
        m.apply(v, jnp.ones((3, 32)))
    _, vt = QuantLinear.from_dense(W, "mxfp4", transform=T)
    with pytest.raises(ValueError, match=r"state\['transform'\] has no use"):
        QuantLinear.from_state_dict(vt["fp4"], "mxfp4", weight_only=True)
    with pytest.raises(ValueError, match=r"\['transform'\] has no use"):
        m.apply({"fp4": dict(v["fp4"], transform=T)}, X)
    n = NNXQuantLinear.from_dense(W, "mxfp4", weight_only=True)
    with pytest.raises(ValueError, match="missing 'global_scale'"):
        n.load_state_dict({k: n.state_dict()[k] for k in ("codes", "scales")})
