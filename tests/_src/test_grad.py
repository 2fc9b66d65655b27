"""Differentiation through the simulated ops (SPEC.md "Differentiation"): an
error by default, a straight-through estimator with ``grad="ste"`` whose value
is the simulated result (golden's bits) and whose gradient is the exact
float matmul's (checked against NumPy float64)."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import golden
from golden import fp4 as GF
from scmp_jax import fp4, quant, sc_matmul
from scmp_jax.flax import (FP4, SC, NNXQuantLinear, QuantLinear, Rule, fp4_dot_general,
                           sc_dot_general, simulate)
from tests.helpers import assert_same_bits

F32 = np.float32
KW = dict(sc_prec=5, stoc_len=16)


def rnd(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(F32)


def close(x, ref, tol=2e-5):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    assert x.shape == ref.shape, (x.shape, ref.shape)
    np.testing.assert_allclose(x, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))


def raises_naming(op, fn, *args):
    """``fn(*args)`` raises a TypeError/ValueError naming ``op`` and grad='ste'."""
    with pytest.raises((TypeError, ValueError)) as e:
        fn(*args)
    msg = str(e.value)
    assert f"{op} is not differentiable" in msg and "grad='ste'" in msg, msg


A, B = rnd((4, 32), 0), rnd((3, 32), 1)
CT = rnd((4, 3), 2)                                   # the loss's weights: sum(CT * y)


def loss_of(f, ct=CT):
    return lambda *args: jnp.sum(jnp.asarray(ct) * f(*args))


def sc_ste(a, b, **kw):
    return sc_matmul(a, b, **{**KW, **kw, "grad": "ste"})


# jitted: eager fp4 calls compile op by op (slow on CPU)
q4 = jax.jit(lambda x, t=None: fp4.quantize(x, "mxfp4", transform=t))
qmm = jax.jit(lambda x, w: fp4.quantized_matmul(x, w, "mxfp4"))


# ------------------------------------------------------------------ (a) default: a clear error


@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_sc_matmul_default_raises(impl):
    f = loss_of(lambda a, b: sc_matmul(a, b, **KW, implementation=impl))
    raises_naming("sc_matmul", jax.grad(f), A, B)
    if impl == "xla":                  # every way in: forward, linearize, vjp, jit, w.r.t. b
        raises_naming("sc_matmul", lambda: jax.jvp(f, (A, B), (A, B)))
        raises_naming("sc_matmul", lambda: jax.linearize(lambda a: f(a, B), A))
        raises_naming("sc_matmul", lambda: jax.vjp(lambda b: f(A, b), B))
        raises_naming("sc_matmul", jax.jit(jax.grad(f, argnums=1)), A, B)


def test_quantizers_and_fp4_ops_default_raise():
    raises_naming("quant.quantize", jax.grad(lambda x: quant.quantize(x).scale.sum()), A)
    raises_naming("fp4.quantize",
                  jax.grad(lambda x: fp4.quantize(x, "mxfp4").scales.astype(F32).sum()), A)
    w = q4(A)
    raises_naming("fp4.quantized_matmul",
                  jax.grad(lambda x: fp4.quantized_matmul(x, w, "mxfp4").sum()), A)
    raises_naming("fp4.matmul", jax.grad(
        lambda g: fp4.matmul(dataclasses.replace(w, global_scale=g), w).sum()), F32(0.5))


def test_not_on_the_differentiated_path_is_fine():
    """Only tangents that reach the op raise: a constant operand path does not."""
    y = jnp.asarray(sc_matmul(A, B, **KW))
    g = jax.grad(lambda s: jnp.sum(s * sc_matmul(A, B, **KW)))(F32(2.0))
    close(g, y.sum())


def _mlp(dot_general=None):
    kw = {} if dot_general is None else dict(dot_general=dot_general)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1, **kw)(jax.nn.relu(nn.Dense(32, **kw)(x)))
    return MLP()


def test_flax_dot_generals_and_rules_default_raise():
    x = rnd((8, 32), 3)
    v = _mlp().init(jax.random.key(0), x)          # the same params for every variant
    for dg, op in ((sc_dot_general(**KW), "sc_dot_general"),
                   (fp4_dot_general("mxfp4"), "fp4_dot_general")):
        m = _mlp(dg)
        raises_naming(op, jax.grad(lambda v: m.apply(v, x).sum()), v)
    for arith, op, hint in ((SC(**KW), "SC arithmetic", "SC"), (FP4("mxfp4"), "FP4 arithmetic",
                                                               "FP4")):
        sim = simulate(_mlp(), [Rule("Dense_0", arith)])
        raises_naming(op, jax.grad(lambda v: sim.apply(v, x).sum()), v)
        with pytest.raises(TypeError, match=rf"module 'Dense_0'.*{hint}\(\.\.\., grad='ste'\)"):
            jax.jit(jax.grad(lambda v: sim.apply(v, x).sum()))(v)


def test_quant_linear_default_raises():
    x = rnd((2, 32), 4)
    m = QuantLinear(3)
    v = jax.jit(m.init)(jax.random.key(0), x)
    raises_naming("QuantLinear", jax.grad(lambda x: m.apply(v, x).sum()), x)
    layer = nnx.jit(lambda: NNXQuantLinear(32, 3, rngs=nnx.Rngs(0)))()
    raises_naming("NNXQuantLinear", jax.grad(lambda x: layer(x).sum()), x)


def test_grad_argument_is_validated():
    for bad in ("STE", True, "exact"):
        with pytest.raises(ValueError, match="grad must be None or 'ste'"):
            sc_matmul(A, B, **KW, grad=bad)
        with pytest.raises(ValueError, match="grad must be None or 'ste'"):
            fp4.quantized_matmul(A, q4(B), "mxfp4", grad=bad)
        with pytest.raises(ValueError, match="grad must be None or 'ste'"):
            SC(**KW, grad=bad)
        with pytest.raises(ValueError, match="grad must be None or 'ste'"):
            QuantLinear(3, grad=bad).init(jax.random.key(0), A)


# ------------------------------------------------------------------ (b) ste: the same bits


@pytest.mark.parametrize("gran,mode", [("per_row", "bipolar"), ("per_tensor", "unipolar")])
def test_sc_ste_forward_is_golden(gran, mode):
    ref = golden.sc_matmul(A, B, gran, mode=mode, **KW)
    assert_same_bits(sc_ste(A, B, granularity=gran, mode=mode), ref)
    assert_same_bits(sc_matmul(A, B, gran, mode=mode, **KW), ref)
    # traced (under jit and inside a jvp) the value is still golden's
    assert_same_bits(jax.jit(lambda a, b: sc_ste(a, b, granularity=gran, mode=mode))(A, B), ref)
    y, _ = jax.jvp(lambda a: sc_ste(a, B, granularity=gran, mode=mode), (A,), (A,))
    assert_same_bits(y, ref)


def test_fp4_ste_forward_is_golden():
    ga, gw = (GF.quantize(x, group_size=32, scale_dtype="e8m0", scale_scale=4.0,
                          global_scale=F32(1 / 3)) for x in (A, B))
    w = q4(B)
    assert np.array_equal(np.asarray(w.codes), gw["codes"])
    y0 = qmm(A, w)
    y1, _ = jax.jit(lambda x: jax.jvp(lambda x: fp4.quantized_matmul(x, w, "mxfp4", grad="ste"),
                                      (x,), (x,)))(A)
    assert_same_bits(y1, y0)
    qa = q4(A)
    assert np.array_equal(np.asarray(qa.codes), ga["codes"])
    assert_same_bits(jax.jit(lambda a, w: fp4.matmul(a, w, grad="ste"))(qa, w), y0)
    ref = GF.matmul_reference(ga["codes"], ga["scales"], ga["global_scale"], gw["codes"],
                              gw["scales"], gw["global_scale"], scale_dtype_a="e8m0",
                              scale_dtype_w="e8m0")
    assert np.linalg.norm(np.asarray(y0) - ref) / np.linalg.norm(ref) < 1e-5


# ------------------------------------------------------------------ (c) ste: the exact gradient


def test_sc_ste_gradient_is_exact():
    ga, gb = jax.grad(loss_of(sc_ste), argnums=(0, 1))(A, B)
    A64, B64, C64 = (x.astype(np.float64) for x in (A, B, CT))
    close(ga, C64 @ B64)
    close(gb, C64.T @ A64)
    jg = jax.jit(jax.grad(loss_of(lambda a, b: sc_ste(a, b, granularity="per_tensor")),
                          argnums=(0, 1)))(A, B)
    close(jg[0], C64 @ B64)
    close(jg[1], C64.T @ A64)
    da, db = rnd(A.shape, 5), rnd(B.shape, 6)
    _, t = jax.jvp(sc_ste, (A, B), (da, db))
    close(t, da.astype(np.float64) @ B64.T + A64 @ db.astype(np.float64).T)


def test_sc_ste_smooth_scales_3d_and_bf16():
    s = np.abs(rnd((32,), 7)) + F32(0.5)
    ga, gs = jax.grad(loss_of(lambda a, s: sc_ste(a, B, smooth_scales=s)), argnums=(0, 1))(A, s)
    close(ga, CT.astype(np.float64) @ B)          # (a / s) @ (b * s).T is a @ b.T
    assert not np.any(np.asarray(gs))
    a3, b3, c3 = rnd((2, 4, 32), 8), rnd((2, 3, 32), 9), rnd((2, 4, 3), 10)
    g3 = jax.grad(loss_of(lambda a: sc_ste(a, b3, granularity="per_head"), c3))(a3)
    close(g3, np.einsum("hnm,hmd->hnd", c3.astype(np.float64), b3))
    gbf = jax.grad(loss_of(lambda a: sc_ste(a, B)))(A.astype(jnp.bfloat16))
    assert gbf.dtype == jnp.bfloat16
    close(gbf.astype(F32), (CT.astype(np.float64) @ B), tol=1e-2)


def test_sc_ste_vmap_and_pallas():
    a2 = np.stack([A, 2 * A])
    g = jax.vmap(jax.grad(loss_of(lambda a: sc_ste(a, B))))(a2)
    close(g, np.stack([CT @ B.astype(np.float64)] * 2))
    # under vmap the value is the batched sc_matmul's
    assert_same_bits(jax.vmap(lambda a: sc_ste(a, B))(a2),
                     jax.vmap(lambda a: sc_matmul(a, B, **KW))(a2))
    a, b, ct = A[:2, :8], B[:2, :8], CT[:2, :2]     # interpret-mode Pallas: a tiny shape
    f = lambda a, b: sc_ste(a, b, implementation="pallas")            # noqa: E731
    y, t = jax.jvp(f, (a, b), (a, b))
    assert_same_bits(y, golden.sc_matmul(a, b, "per_row", **KW))
    close(t, 2 * a.astype(np.float64) @ b.T)
    close(jax.grad(loss_of(lambda a: f(a, b), ct))(a), ct.astype(np.float64) @ b)


def test_fp4_ste_gradients_are_exact():
    w = q4(B)
    Wd = np.asarray(fp4.dequantize(w), np.float64)
    g = jax.jit(jax.grad(loss_of(lambda x: fp4.quantized_matmul(x, w, "mxfp4", grad="ste"))))(A)
    close(g, CT.astype(np.float64) @ Wd)
    # with a transform: the tangent of T(x) @ dequantize(w).T
    t = np.asarray(jnp.asarray(np.linalg.qr(rnd((32, 32), 11))[0], jnp.float32))
    wt = q4(B, t)
    g = jax.jit(jax.grad(loss_of(lambda x: fp4.quantized_matmul(x, wt, "mxfp4", transform=t,
                                                                grad="ste"))))(A)
    close(g, (CT.astype(np.float64) @ np.asarray(fp4.dequantize(wt), np.float64)) @ t)
    # fp4.matmul: linear in each global scale, d/d gs_a = dequant(a) @ dequant(w).T / gs_a
    qa = q4(A)
    y = np.asarray(fp4.dequantize(qa), np.float64) @ Wd.T
    gs = F32(qa.global_scale)
    g = jax.jit(jax.grad(loss_of(lambda s: fp4.matmul(dataclasses.replace(qa, global_scale=s),
                                                      w, grad="ste"))))(gs)
    close(g, np.sum(CT * y) / gs)


def test_fp4_ste_pallas():
    """Interpret-mode Pallas kernels on CPU, tiny shape: same value, exact tangent."""
    w, x = q4(B), A[:2]
    f = lambda x: fp4.quantized_matmul(x, w, "mxfp4", quant_implementation="pallas",  # noqa
                                       matmul_implementation="pallas", grad="ste")
    y, t = jax.jit(lambda x: jax.jvp(f, (x,), (x,)))(x)
    assert_same_bits(y, qmm(x, w))
    close(t, x.astype(np.float64) @ np.asarray(fp4.dequantize(w), np.float64).T)


def test_quant_linear_ste_is_the_packed_layer_with_exact_gradients():
    x = rnd((2, 3, 32), 12)
    ct = rnd((2, 3, 3), 13)
    for fmt, tsize in (("mxfp4", None), ("nvfp4", 32)):
        m = QuantLinear(3, fmt=fmt, transform_size=tsize, grad="ste")
        v = jax.jit(m.init)(jax.random.key(1), x)
        kernel = v["params"]["kernel"]                            # (32, 3) like nn.Dense
        # the packed layer of the same weight; nvfp4's global scale (amax-based) is concrete
        # here, traced in the jitted layer
        t = v.get("fp4", {}).get("transform")
        if fmt == "nvfp4":
            packed, pv = QuantLinear.from_dense(kernel.T, fmt, t)
        else:
            packed = QuantLinear(3, fmt=fmt)
            pv = jax.jit(lambda w: QuantLinear.from_dense(w, fmt)[1])(kernel.T)
        assert_same_bits(jax.jit(m.apply)(v, x), jax.jit(packed.apply)(pv, x))
        loss = lambda x, v: jnp.sum(ct * m.apply(v, x))                # noqa: E731
        gx, gv = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, v)
        K64, x64, c64 = (np.asarray(arr, np.float64) for arr in (kernel, x, ct))
        close(gx, c64 @ K64.T)               # an orthonormal transform leaves x @ w.T as is
        close(gv["params"]["kernel"], np.einsum("bnk,bnm->km", x64, c64))
    layer = NNXQuantLinear(32, 3, grad="ste", rngs=nnx.Rngs(0))       # the same _core forward
    g = nnx.jit(nnx.grad(lambda l: jnp.sum(ct * l(x))))(layer)
    close(g.kernel[...], np.einsum("bnk,bnm->km", np.asarray(x, np.float64), ct))


# ------------------------------------------------------------------ (c') weight-only fp4


def test_weight_only_gradient_in_x_is_exact():
    """Nothing rounds the activation: its gradient is ``g @ dequant(w)`` with either
    ``grad``; the weight's global scale needs ``grad="ste"`` (linear in it)."""
    w = q4(B)
    Wd = np.asarray(fp4.dequantize(w), np.float64)
    for grad in (None, "ste"):
        f = lambda x: fp4.weight_only_matmul(x, w, grad=grad)                # noqa: E731
        close(jax.jit(jax.grad(loss_of(f)))(A), CT.astype(np.float64) @ Wd)
    _, t = jax.jit(lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),)))(jnp.asarray(A, jnp.bfloat16))
    close(t, np.ones_like(A, np.float64) @ Wd.T)                        # bfloat16 activations
    g_of = lambda grad: jax.grad(loss_of(lambda s: fp4.weight_only_matmul(   # noqa: E731
        A, dataclasses.replace(w, global_scale=s), grad=grad)))
    raises_naming("fp4.weight_only_matmul", g_of(None), F32(w.global_scale))
    y = np.asarray(A, np.float64) @ Wd.T
    close(jax.jit(g_of("ste"))(F32(w.global_scale)), np.sum(CT * y) / F32(w.global_scale))


WX, WCT = rnd((2, 3, 32), 15), rnd((2, 3, 3), 16)


def test_weight_only_packed_layers_gradients():
    """Packed weight-only layers: exact gradient in x, none for the packed state."""
    x, ct, c64 = WX, WCT, np.asarray(WCT, np.float64)
    m = QuantLinear(3, weight_only=True)
    v = jax.jit(lambda w: QuantLinear.from_dense(w, weight_only=True)[1])(jnp.asarray(B))
    Wd = np.asarray(fp4.dequantize(q4(B)), np.float64)
    close(jax.jit(jax.grad(lambda x: jnp.sum(ct * m.apply(v, x))))(x), c64 @ Wd)
    raises_naming("QuantLinear", jax.grad(
        lambda g: m.apply({"fp4": dict(v["fp4"], global_scale=g)}, x).sum()),
        v["fp4"]["global_scale"])
    layer = nnx.jit(lambda: NNXQuantLinear(32, 3, weight=B, weight_only=True))()
    close(jax.jit(jax.grad(lambda x: jnp.sum(ct * layer(x))))(x), c64 @ Wd)


def test_weight_only_ste_layers_gradients():
    """``grad="ste"``: the packed layer's value, exact in x, straight-through
    ``x^T g`` for the kernel."""
    x, ct = WX, WCT
    x64, c64 = np.asarray(x, np.float64), np.asarray(ct, np.float64)
    s = QuantLinear(3, weight_only=True, grad="ste")
    vs = jax.jit(s.init)(jax.random.key(5), x)
    kernel = vs["params"]["kernel"]                                      # (32, 3)
    packed = QuantLinear(3, weight_only=True)
    pv = jax.jit(lambda w: QuantLinear.from_dense(w, weight_only=True)[1])(kernel.T)
    assert_same_bits(jax.jit(s.apply)(vs, x), jax.jit(packed.apply)(pv, x))
    gx, gv = jax.jit(jax.grad(lambda x, v: jnp.sum(ct * s.apply(v, x)), argnums=(0, 1)))(x, vs)
    st = {k: np.asarray(a) for k, a in pv["fp4"].items()}                # golden's decode
    close(gx, c64 @ GF.dequantize(st["codes"], st["scales"], scale_dtype="e8m0",
                                  global_scale=st["global_scale"]).astype(np.float64))
    close(gv["params"]["kernel"], np.einsum("bnk,bnm->km", x64, c64))
    n = NNXQuantLinear(32, 3, weight=kernel.T, weight_only=True, grad="ste")
    close(nnx.jit(nnx.grad(lambda l: jnp.sum(ct * l(x))))(n).kernel[...],
          np.einsum("bnk,bnm->km", x64, c64))


def test_weight_only_rule_gradients():
    """``FP4(weight_only=True)``: the activation's gradient is exact by default,
    the params' raises; with ``grad="ste"`` the kernel's is ``x^T g``."""
    x, ct = rnd((8, 32), 17), rnd((8, 3), 18)
    dense = nn.Dense(3, use_bias=False)
    v = dense.init(jax.random.key(6), x)
    kernel = np.asarray(v["params"]["kernel"])
    Wd = np.asarray(fp4.dequantize(q4(kernel.T)), np.float64)
    sim = simulate(dense, [Rule(".*", FP4("mxfp4", weight_only=True))])
    close(jax.jit(jax.grad(lambda x: jnp.sum(ct * sim.apply(v, x))))(x),
          ct.astype(np.float64) @ Wd)
    raises_naming("FP4 arithmetic", jax.grad(lambda v: sim.apply(v, x).sum()), v)
    ste = simulate(dense, [Rule(".*", FP4("mxfp4", weight_only=True, grad="ste"))])
    g = jax.jit(jax.grad(lambda v: jnp.sum(ct * ste.apply(v, x))))(v)
    close(g["params"]["kernel"], np.asarray(x, np.float64).T @ ct)


# ------------------------------------------------------------------ (d) training


def _problem():
    r = np.random.default_rng(14)
    x = r.standard_normal((64, 32)).astype(F32)
    y = np.tanh(x @ r.standard_normal((32, 1)).astype(F32) / F32(4)) * F32(2)
    return jnp.asarray(x), jnp.asarray(y)


def _train(apply, params, steps=30, lr=0.2):
    """Plain SGD under one jit; the losses before and after."""
    x, y = _problem()
    loss = lambda p: jnp.mean((apply(p, x) - y) ** 2)                  # noqa: E731

    @jax.jit
    def step(p):
        g = jax.grad(loss)(p)
        return jax.tree.map(lambda p, g: p - lr * g, p, g)
    first = float(jax.jit(loss)(params))
    for _ in range(steps):
        params = step(params)
    return first, float(jax.jit(loss)(params))


def test_training_through_simulate_sc_ste():
    m = _mlp()
    p = m.init(jax.random.key(2), _problem()[0])["params"]
    sim = simulate(m, [Rule(".*", SC(sc_prec=6, stoc_len=64, grad="ste"))])
    first, last = _train(lambda p, x: sim.apply({"params": p}, x), p)
    assert last < 0.05 * first, (first, last)


def test_training_quant_linear_fp4_ste():
    class QMLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return QuantLinear(1, grad="ste")(jax.nn.relu(QuantLinear(32, grad="ste")(x)))
    m = QMLP()
    v = jax.jit(m.init)(jax.random.key(3), _problem()[0])
    assert set(v) == {"params"}
    first, last = _train(lambda p, x: m.apply({"params": p}, x), v["params"])
    assert last < 0.05 * first, (first, last)


def test_training_nnx_quant_linear_fp4_ste():
    class QMLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = NNXQuantLinear(32, 32, fmt="nvfp4", grad="ste", rngs=rngs)
            self.l2 = NNXQuantLinear(32, 1, fmt="nvfp4", grad="ste", rngs=rngs)

        def __call__(self, x):
            return self.l2(jax.nn.relu(self.l1(x)))
    gd, params, rest = nnx.split(QMLP(nnx.Rngs(4)), nnx.Param, ...)
    first, last = _train(lambda p, x: nnx.merge(gd, p, rest)(x), params)
    assert last < 0.05 * first, (first, last)
