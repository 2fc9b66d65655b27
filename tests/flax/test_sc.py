"""Flax integration: sc/fp4 dot_general injection, sc_attention_fn, simulate();
references from golden (SC bit for bit, fp4 within SPEC 9.8's tolerance)."""
from __future__ import annotations

import functools
import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import golden
from golden import fp4 as G
from scmp_jax import fp4
from scmp_jax.flax.attention import sc_attention_fn
from scmp_jax.flax.dot_general import fp4_dot_general, sc_dot_general, sc_einsum
from scmp_jax.flax.intercept import FP4, SC, Rule, simulate
from tests.helpers import assert_same_bits

KW = dict(sc_prec=5, stoc_len=16)
HK = dict(sc_prec=5, stoc_len=16)                 # attention (per_head)


def rnd(shape, seed=0):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def sc(a, b, g="per_row", **kw):
    """golden's SC matmul of (JAX or NumPy) float32 operands, as a JAX array."""
    return jnp.asarray(golden.sc_matmul(np.asarray(a, np.float32), np.asarray(b, np.float32), g,
                                        **{**KW, **kw}))


def fp4_golden(x, w, fmt):
    """golden's float64 ``quantize(x) @ quantize(w)^T`` (SPEC 9.8) for a preset."""
    kw = dict(G.PRESETS[fmt])
    a, b = G.quantize(np.asarray(x), **kw), G.quantize(np.asarray(w), **kw)
    return G.matmul_reference(a["codes"], a["scales"], a["global_scale"], b["codes"],
                              b["scales"], b["global_scale"], scale_dtype_a=kw["scale_dtype"],
                              scale_dtype_w=kw["scale_dtype"])


def rel(y, ref):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    return np.linalg.norm(y - ref) / np.linalg.norm(ref)


# ------------------------------------------------------------------ injection (linen)


def test_linen_dense_injection_equals_functional():
    x = rnd((2, 3, 8))
    m = nn.Dense(5, dot_general=sc_dot_general(**KW))
    v = m.init(jax.random.key(1), x)
    W, b = v["params"]["kernel"], v["params"]["bias"]
    ref = sc(x.reshape(6, 8), W.T).reshape(2, 3, 5) + b
    assert_same_bits(m.apply(v, x), ref)


def test_linen_dense_general_multi_axis_and_batch():
    x = rnd((2, 3, 4))
    m = nn.DenseGeneral((2, 3), axis=(-2, -1), dot_general=sc_dot_general("per_tensor", **KW))
    v = m.init(jax.random.key(1), x)
    W, b = v["params"]["kernel"], v["params"]["bias"]            # (3, 4, 2, 3)
    ref = sc(x.reshape(2, 12), W.reshape(12, 6).T, "per_tensor").reshape(2, 2, 3) + b
    assert_same_bits(m.apply(v, x), ref)
    mb = nn.DenseGeneral(5, batch_dims=(0,), dot_general=sc_dot_general(**KW), use_bias=False)
    vb = mb.init(jax.random.key(2), x)
    Wb = vb["params"]["kernel"]                                   # (2, 4, 5)
    assert_same_bits(mb.apply(vb, x), sc(x, Wb.transpose(0, 2, 1)))


def test_per_head_on_dense_is_a_clear_error():
    m = nn.Dense(4, dot_general=sc_dot_general("per_head", **KW))
    with pytest.raises(ValueError, match="per_head"):
        m.init(jax.random.key(0), jnp.ones((2, 4)))
    with pytest.raises(TypeError):
        sc_dot_general(no_such_kwarg=1)


@pytest.mark.parametrize("fmt", ["mxfp4", "nvfp4"])
def test_fp4_dot_general_equals_functional(fmt):
    x = rnd((3, 32))
    m = nn.Dense(4, dot_general=fp4_dot_general(fmt), use_bias=False)
    v = m.init(jax.random.key(1), x)
    W = v["params"]["kernel"]
    y = m.apply(v, x)
    assert rel(y, fp4_golden(x, W.T, fmt)) < 1e-5
    assert_same_bits(y, fp4.matmul(fp4.quantize(x, fmt), fp4.quantize(W.T, fmt)))
    with pytest.raises(ValueError, match="group_size"):
        m.init(jax.random.key(1), jnp.ones((2, 24)))


# ------------------------------------------------------------------ injection (nnx)


def test_nnx_linear_general_einsum_injection():
    x = rnd((2, 3, 8))
    lin = nnx.Linear(8, 5, dot_general=sc_dot_general(**KW), rngs=nnx.Rngs(0))
    ref = sc(x.reshape(6, 8), lin.kernel[...].T).reshape(2, 3, 5) + lin.bias[...]
    assert_same_bits(lin(x), ref)
    lg = nnx.LinearGeneral((3, 8), (2, 2), axis=(-2, -1), dot_general=sc_dot_general(**KW),
                           rngs=nnx.Rngs(1), use_bias=False)
    ref = sc(x.reshape(2, 24), lg.kernel[...].reshape(24, 4).T).reshape(2, 2, 2)
    assert_same_bits(lg(x), ref)
    es = nnx.Einsum("btd,dh->bth", (8, 5), (5,), einsum_op=sc_einsum(**KW),
                    rngs=nnx.Rngs(2))
    ref = sc(x.reshape(6, 8), es.kernel[...].T).reshape(2, 3, 5) + es.bias[...]
    assert_same_bits(es(x), ref)


# ------------------------------------------------------------------ attention


def hand_attention(q, k, v, mask=None):
    """Per-head SC attention written out, both matmuls golden's: (B, T, H, d) ->
    (B, T, H, d)."""
    B, T, H, d = q.shape
    S = k.shape[1]
    qh = (q / jnp.sqrt(d).astype(q.dtype)).transpose(0, 2, 1, 3).reshape(B * H, T, d)
    kh = k.transpose(0, 2, 1, 3).reshape(B * H, S, d)
    s = sc(qh, kh, "per_head", **HK).reshape(B, H, T, S)
    if mask is not None:
        s = jnp.where(mask, s, jnp.finfo(jnp.float32).min)
    p = jax.nn.softmax(s).reshape(B * H, T, S)
    vt = v.transpose(0, 2, 3, 1).reshape(B * H, -1, S)
    o = sc(p, vt, "per_head", **HK).reshape(B, H, T, -1)
    return o.transpose(0, 2, 1, 3)


def test_attention_fn_equals_hand_written_and_masks():
    q, k, v = rnd((2, 4, 2, 8), 1), rnd((2, 5, 2, 8), 2), rnd((2, 5, 2, 8), 3)
    fn = sc_attention_fn(**HK)
    assert_same_bits(fn(q, k, v), hand_attention(q, k, v))
    mask = jnp.arange(5)[None, None, None, :] < 3                # keys 3, 4 masked
    out = fn(q, k, v, mask=mask)
    assert_same_bits(out, hand_attention(q, k, v, mask))
    k2, v2 = k.at[:, 3:].set(7.0), v.at[:, 3:].set(-9.0)          # masked keys do not matter
    assert_same_bits(fn(q, k2, v2, mask=mask), hand_attention(q, k2, v2, mask))
    err = np.abs(out - nn.dot_product_attention(q, k, v, mask=mask))   # sane semantics
    assert err.mean() < 0.25, err.mean()


def golden_mha(params, x):
    """flax's multi-head attention with linen ``params``: float32 projections
    around ``hand_attention`` (golden SC matmuls)."""
    proj = lambda n: jnp.einsum("btd,dhk->bthk", x, params[n]["kernel"]) + params[n]["bias"]  # noqa
    o = hand_attention(proj("query"), proj("key"), proj("value"))
    return jnp.einsum("bthk,hkd->btd", o, params["out"]["kernel"]) + params["out"]["bias"]


def test_attention_fn_in_linen_and_nnx_modules():
    """linen and nnx MultiHeadAttention with sc_attention_fn == golden_mha bit for
    bit, each with its own parameters; nnx == linen given nnx's parameters."""
    x = rnd((2, 4, 8))
    mha = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8,
                                          attention_fn=sc_attention_fn(**HK))
    v = mha.init(jax.random.key(0), x)
    y = mha.apply(v, x)
    assert_same_bits(y, golden_mha(v["params"], x))
    mn = nnx.MultiHeadAttention(2, 8, qkv_features=8, attention_fn=sc_attention_fn(**HK),
                                decode=False, rngs=nnx.Rngs(0))
    yn = mn(x)
    st = nnx.state(mn, nnx.Param)
    lv = {"params": {n: {"kernel": st[n]["kernel"][...], "bias": st[n]["bias"][...]}
                     for n in ("query", "key", "value", "out")}}
    assert_same_bits(yn, golden_mha(lv["params"], x))
    assert_same_bits(yn, mha.apply(lv, x))
    drop = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, dropout_rate=0.5,
                                           attention_fn=sc_attention_fn(**HK))
    a = drop.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    b = drop.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
    assert not np.array_equal(a, b)
    assert_same_bits(drop.apply(v, x, deterministic=True), y)


# ------------------------------------------------------------------ interception


class MLP(nn.Module):
    dg: object = None

    @nn.compact
    def __call__(self, x):
        kw = {} if self.dg is None else {"dot_general": self.dg}
        y = nn.relu(nn.Dense(8, name="fc1", **kw)(x))
        y = nn.DenseGeneral((2, 2), name="fc2", **kw)(y)
        return nn.Dense(3, name="head", **kw)(y.reshape(*y.shape[:-2], 4))


class NMLP(nnx.Module):
    def __init__(self, dg=jax.lax.dot_general, rngs=None):
        self.fc1 = nnx.Linear(6, 8, dot_general=dg, rngs=rngs)
        self.fc2 = nnx.Linear(8, 4, dot_general=dg, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.relu(self.fc1(x)))


def test_linen_simulate_equals_injection_and_rules():
    x = rnd((2, 3, 6))
    v = MLP().init(jax.random.key(0), x)
    ref = MLP(dg=sc_dot_general(**KW)).apply(v, x)
    sim = simulate(MLP(), [Rule(".*", SC(**KW))])
    assert_same_bits(sim.apply(v, x), ref)
    assert [r.path for r in sim.report.records] == ["fc1", "fc2", "head"]
    rules = [Rule("fc", FP4()), Rule("fc[0-9]", SC(**KW)), Rule("fc2", None),
             Rule("head", None), Rule("unused.*", SC(**KW))]
    sim = simulate(MLP(), rules)
    out = sim.apply(v, x)
    rep = sim.report
    assert [(r.path, r.rule) for r in rep.records] == [("fc1", 1), ("fc2", 1), ("head", 3)]
    assert [i for i, _ in rep.unused_rules] == [0, 2, 4]
    assert "unused rule 4" in rep.table() and "SC('per_row'" in rep.table()
    assert out.shape == ref.shape
    exact = simulate(MLP(), [Rule(".*", None)]).apply(v, x)
    assert_same_bits(exact, MLP().apply(v, x))


def test_nnx_simulate_equals_injection():
    x = rnd((6, 6))                                  # the linen MLP's shapes: no new compiles
    base = NMLP(rngs=nnx.Rngs(0))
    inj = NMLP(dg=sc_dot_general(**KW), rngs=nnx.Rngs(0))
    sim = simulate(base, [Rule("fc1", SC(**KW)), Rule("fc2", SC(**KW))])
    assert_same_bits(sim(x), inj(x))
    assert [r.path for r in sim.report.records] == ["fc1", "fc2"]
    assert sim.report.unused_rules == []
    assert_same_bits(simulate(base, [])(x), base(x))


def test_act_act_and_attention_interception_linen():
    x = rnd((2, 4, 8))
    base = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)
    v = base.init(jax.random.key(0), x)
    sim = simulate(base, [Rule(".*", SC(**KW))])
    sim.apply(v, x)
    ops = [(r.path, r.op, r.act_act, r.arithmetic) for r in sim.report.records]
    assert [o[2] for o in ops] == [False] * 3 + [True] * 2 + [False]
    assert all(o[3] == "exact" for o in ops if o[2])
    assert [o[1] for o in ops if o[2]] == ["einsum", "einsum"]
    rules = [Rule(".*", SC(**KW)), Rule(".*", SC("per_head", **HK), act_act=True)]
    out = simulate(base, rules).apply(v, x)
    assert_same_bits(out, linen_mha_injected().apply(v, x))


def linen_mha_injected(**kw):
    """flax's own attention with every dot_general injected: interception of the
    default attention equals this (jnp.einsum lowers PV as dot_general(V, P),
    so the SC operand order is V^T, P there, unlike sc_attention_fn's P, V^T)."""
    attn = functools.partial(nn.dot_product_attention,
                             einsum_dot_general=sc_dot_general("per_head", **HK))
    return nn.MultiHeadDotProductAttention(
        num_heads=2, qkv_features=8, attention_fn=attn, qkv_dot_general=sc_dot_general(**KW),
        out_dot_general=sc_dot_general(**KW), **kw)


def test_nnx_attention_interception_and_dropout_state():
    x = rnd((2, 4, 8))
    mk = lambda **kw: nnx.MultiHeadAttention(2, 8, qkv_features=8, decode=False,  # noqa
                                             rngs=nnx.Rngs(0), **kw)
    rules = [Rule(".*", SC(**KW)), Rule(".*", SC("per_head", **HK), act_act=True,
                                        op_names=("einsum", "matmul"))]
    # dropout_rate > 0 takes nnx's einsum path (rate 0 calls jax.nn.dot_product_attention)
    base = mk(dropout_rate=0.5)
    sim = simulate(base, rules)
    out = sim(x, deterministic=True)
    assert len(sim.report.records) == 6 and sim.report.unused_rules == []
    st = nnx.state(base, nnx.Param)
    lv = {"params": {n: {"kernel": st[n]["kernel"][...], "bias": st[n]["bias"][...]}
                     for n in ("query", "key", "value", "out")}}
    assert_same_bits(out, linen_mha_injected(dropout_rate=0.5).apply(lv, x, deterministic=True))
    count = base.rngs.count[...]
    a, b = sim(x, deterministic=False), sim(x, deterministic=False)   # state written back
    assert base.rngs.count[...] == count + 2 and not np.array_equal(a, b)


def test_internal_ops_not_reintercepted_and_threads():
    x = rnd((3, 32))
    m = nn.Dense(4, dot_general=fp4_dot_general("mxfp4"))
    v = m.init(jax.random.key(0), x)
    sim = simulate(m, [Rule(".*", SC(**KW))])
    assert_same_bits(sim.apply(v, x), m.apply(v, x))
    assert sim.report.records == []
    plain = nn.Dense(4)
    sims = {"sc": simulate(plain, [Rule(".*", SC(**KW))]),
            "fp4": simulate(plain, [Rule(".*", FP4("nvfp4"))])}
    got = {}

    def work(k):
        got[k] = (sims[k].apply(v, x), sims[k].report.records[0].arithmetic)
    ts = [threading.Thread(target=work, args=(k,)) for k in sims]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert got["sc"][1].startswith("SC(") and got["fp4"][1] == "FP4('nvfp4')"
    assert_same_bits(got["fp4"][0], nn.Dense(4, dot_general=fp4_dot_general("nvfp4"))
                     .apply(v, x))


def test_scan_and_jit_inside_model():
    class Blk(nn.Module):
        @nn.compact
        def __call__(self, c, _):
            return nn.Dense(6, name="d")(c), None

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, x):
            y, _ = nn.scan(Blk, variable_axes={"params": 0}, split_rngs={"params": True},
                           length=2)(name="blocks")(x, None)
            return jax.jit(lambda a: a @ a.T)(y)
    x = rnd((3, 6))
    v = Stack().init(jax.random.key(0), x)
    sim = simulate(Stack(), [Rule("blocks(/d)?", SC(**KW)),
                             Rule("", SC("per_tensor", **KW), act_act=True)])
    out = jax.jit(sim.apply)(v, x)                                # simulate under jit
    recs = [(r.path, r.op, r.rule) for r in sim.report.records]
    assert recs == [("blocks/d", "dot_general", 0), ("", "matmul", 1)]
    W, b = v["params"]["blocks"]["d"]["kernel"], v["params"]["blocks"]["d"]["bias"]
    y = x
    for i in range(2):
        y = sc(y, W[i].T) + b[i]
    assert_same_bits(out, sc(y, y, "per_tensor"))
