"""``python -m bench.sc_probe``: can int8 tensor cores count SC products exactly?

The gather kernel (``sc.pallas_counts``) does one table lookup per product and
is bound by the gather rate (about 1.6 T lookups/s on the H100/H200). Dense
form tried here: with ``la``/``lb`` the magnitude levels (``|x_int|``, 0..127
bipolar p=8) and signs ``sa``/``sb``, ``c = cum[k(la), bb(lb)]`` and

    acc[n, m] = sum_d sum_j X[n, d, j] * Y[m, d, j]  (+ a rank-3-per-d correction)

with ``Y = sb * onehot(lb)`` and ``X = (c - 128)`` (sa = +1) or ``(127 - c)``
(sa = -1), both int8 (c in [0, L], L <= 256; c = 256 is clamped and
corrected: it happens only on the product set ``k = L`` x ``bb > max r_b``).
The correction is ``127 sa.sb + [sa=1].sb + (sa [k=L]).(sb [bb>max r])``.
Rows: the gather kernel; cuBLAS int8 on the whole (materialized) problem in
d-chunks; a Pallas kernel reading X and building the one-hot of Y in-kernel.
Every dense result is compared with the gather kernel's (``==``).
"""
from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from bench.__main__ import device_time
from scmp_jax._src.dispatch import triton_params
from scmp_jax.cli_tools.argtypes import int_in
from scmp_jax.sc import pallas_counts
from scmp_jax.sc.config import SCConfig
from scmp_jax.sc.tables import enable_tables, layout

I8, I32 = jnp.int8, jnp.int32
P, L, G, Q = 8, 256, 256, 127


def levels(rng, shape):
    x = rng.standard_normal(shape, dtype=np.float32)
    s = np.abs(x).max(axis=-1, keepdims=True) / Q
    xi = np.clip(np.rint(x / s), -Q, Q).astype(np.int32)
    return np.abs(xi), np.sign(xi)


def bnd(l):
    return np.rint(l.astype(np.float32) * (np.float32(G) / np.float32(Q))).astype(np.int32)


def tables(D):
    t = enable_tables(SCConfig.sobol_simple(), D, P, L, G, "bitrev", 256 << 20)
    assert int(np.max(t.sid_a)) == 0 and int(np.max(t.sid_b)) == 0
    ktab = np.asarray(t.ktab)
    rb = np.asarray(t.streams_b)[0]
    v = np.arange(G + 1)
    cum = np.concatenate([np.zeros((1, G + 1), np.int32),
                          np.cumsum(rb[:, None] < v, axis=0)], axis=0)       # (L+1, V)
    lv = np.arange(Q + 1)
    k, bb = ktab[bnd(lv)], bnd(lv)
    c = cum[k[:, None], bb[None, :]]                                         # (128, 128)
    tx = np.stack([np.clip(c - 128, -128, 127), np.clip(127 - c, -128, 127)])
    tx[:, 0, :] = 0
    tx[:, :, 0] = 0
    return t, ktab, tx.astype(np.int8), (k == L), (bb > rb.max())


def dense_operands(la, sa, lb, sb, tx, kfull, bover):
    """X (H, N, D*128) int8, signed levels of b (H, D, M) int8, corrections."""
    X = tx[(sa < 0).astype(np.int32), la]                         # (H, N, D, 128)
    H, N, D, W = X.shape
    X = X.reshape(H, N, D * W)
    yb = np.swapaxes((sb * lb).astype(np.int8), 1, 2)
    xe = np.concatenate([sa, (sa > 0), sa * kfull[la]], axis=-1).astype(np.int8)
    ye = np.concatenate([127 * sb, sb, sb * bover[lb]], axis=-1).astype(np.int8)
    return X, yb, xe, ye


def correction(xe, ye):
    return lax.dot_general(xe, ye, (((2,), (2,)), ((0,), (0,))), preferred_element_type=I32)


def xla_dense(X, yb, xe, ye, *, dc):
    """cuBLAS int8 per chunk of dc inner indices (one-hot of Y materialized)."""
    H, N, DW = X.shape
    D, W = yb.shape[1], DW // yb.shape[1]
    acc = correction(xe, ye)
    for c0 in range(0, D, dc):
        y = yb[:, c0:c0 + dc, :].astype(I32)                            # (H, dc, M)
        oh = jnp.where(jnp.abs(y)[..., None] == jnp.arange(W), jnp.sign(y)[..., None], 0)
        oh = jnp.swapaxes(oh.astype(I8), 1, 2)
        oh = oh.reshape(H, oh.shape[1], -1)                            # (H, M, dc*W)
        acc = acc + lax.dot_general(X[:, :, c0 * W:(c0 + dc) * W], oh,
                                    (((2,), (2,)), ((0,), (0,))), preferred_element_type=I32)
    return acc


def _kernel(x_ref, y_ref, o_ref, *, D, W, form):
    """form: "b" one-hot as the dot's RHS; "a" one-hot as the LHS (acc is (bm, bn),
    stored transposed); "pure" the one-hot is an input (plain int8 GEMM)."""
    bn, bm = o_ref.shape
    lane = lax.broadcasted_iota(I32, (bm, W) if form == "a" else (W, bm), 1 if form == "a" else 0)

    def step(d, acc):
        x = x_ref[:, pl.ds(pl.multiple_of(d * W, W), W)]
        if form == "pure":
            return acc + lax.dot_general(x, y_ref[:, pl.ds(pl.multiple_of(d * W, W), W)],
                                         (((1,), (1,)), ((), ())), preferred_element_type=I32)
        y = y_ref[d, :].astype(I32)
        if form == "a":
            oh = jnp.where(lane == jnp.abs(y)[:, None], jnp.sign(y)[:, None], 0).astype(I8)
            return acc + lax.dot_general(oh, x, (((1,), (1,)), ((), ())),
                                         preferred_element_type=I32)
        oh = jnp.where(lane == jnp.abs(y)[None, :], jnp.sign(y)[None, :], 0).astype(I8)
        return acc + jnp.dot(x, oh, preferred_element_type=I32)

    shape = (bm, bn) if form == "a" else (bn, bm)
    acc = lax.fori_loop(0, D, step, jnp.zeros(shape, I32))
    o_ref[...] = acc.T if form == "a" else acc


def onehot_full(yb, W):
    y = yb.astype(I32)
    oh = jnp.where(jnp.abs(y)[..., None] == jnp.arange(W), jnp.sign(y)[..., None], 0).astype(I8)
    H, D, M = yb.shape
    return jnp.swapaxes(oh, 1, 2).reshape(H, M, D * W)


@functools.partial(jax.jit, static_argnames=("bn", "bm", "warps", "stages", "form"))
def pallas_dense(X, yb, xe, ye, *, bn=128, bm=128, warps=8, stages=3, form="b"):
    H, N, DW = X.shape
    D, M = yb.shape[1], yb.shape[2]
    W = DW // D
    interp = jax.default_backend() != "gpu"
    acc = pl.pallas_call(
        functools.partial(_kernel, D=D, W=W, form=form),
        grid=(H, N // bn, M // bm),
        in_specs=[pl.BlockSpec((None, bn, DW), lambda h, i, j: (h, i, 0)),
                  pl.BlockSpec((None, bm, DW), lambda h, i, j: (h, j, 0)) if form == "pure"
                  else pl.BlockSpec((None, D, bm), lambda h, i, j: (h, 0, j))],
        out_specs=pl.BlockSpec((None, bn, bm), lambda h, i, j: (h, i, j)),
        out_shape=jax.ShapeDtypeStruct((H, N, M), I32),
        interpret=interp, **triton_params(interp, warps, stages))(
            X, onehot_full(yb, W) if form == "pure" else yb)
    return acc + correction(xe, ye)


def gather(ro, co, table):
    return pallas_counts.accumulate(ro, co, table, interpret=jax.default_backend() != "gpu")


def case(name, H, N, M, D, variants, repeats, check=True):
    rng = np.random.default_rng(0)
    la, sa = levels(rng, (H, N, D))
    lb, sb = levels(rng, (H, M, D))
    t, ktab, tx, kfull, bover = tables(D)
    lay = layout(1, L, G)
    ro = np.swapaxes(ktab[bnd(la)] * lay.vp | (sa < 0).astype(np.int32) << lay.shift, 1, 2)
    co = np.swapaxes(bnd(lb) | (sb < 0).astype(np.int32) << lay.shift, 1, 2)
    ro, co = jnp.asarray(ro), jnp.asarray(co)
    ref = gather(ro, co, t.table)
    prods = H * N * M * D
    ms = device_time(gather, (ro, co, t.table), repeats=repeats, reps=2) * 1e3
    print(f"{name:10s} gather                      {ms:8.3f} ms  {prods / ms / 1e9:6.2f} T/s",
          flush=True)
    ops = jax.device_put(dense_operands(la, sa, lb, sb, tx, kfull, bover))
    idx = jnp.asarray((sa < 0).astype(np.int32) * (Q + 1) + la)
    txd = jnp.asarray(tx.reshape(-1, tx.shape[-1]))
    xgen = jax.jit(lambda i, t: jnp.take(t, i, axis=0).reshape(i.shape[0], i.shape[1], -1))
    assert bool(jnp.array_equal(xgen(idx, txd), ops[0]))
    ms3 = device_time(xgen, (idx, txd), repeats=repeats, reps=2) * 1e3
    print(f"{name:10s} X from levels (XLA take)     {ms3:8.3f} ms", flush=True)
    for label, fn in variants:
        try:
            out = fn(*ops)
            same = bool(jnp.array_equal(out, ref)) if check else None
            ms2 = device_time(fn, ops, repeats=repeats, reps=2) * 1e3
            print(f"{name:10s} {label:28s} {ms2:8.3f} ms  {prods / ms2 / 1e9:6.2f} T/s  "
                  f"x{ms / ms2:5.2f} vs gather  same={same}", flush=True)
        except Exception as e:  # noqa: BLE001 - a probe row that fails is reported
            print(f"{name:10s} {label:28s} FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)


def e2e(name, H, N, M, D, repeats, kw):
    """Whole ``sc_matmul`` calls (device time) per (implementation, counts,
    table cap), and the expansion of X's table rows alone (int32 words by
    ``take``; a Pallas gather kernel for it measured 2.99 vs
    3.12 TB/s on the H200, since dropped)."""
    import scmp_jax
    rng = np.random.default_rng(0)
    sh = lambda r: (H, r, D) if H > 1 else (r, D)
    a = jnp.asarray(rng.standard_normal(sh(N), dtype=np.float32))
    b = jnp.asarray(rng.standard_normal(sh(M), dtype=np.float32))
    ref = None
    for impl, counts, cap in (("pallas", "gather", 256), ("pallas", "dense", 256),
                              ("xla", "dense", 256), ("pallas", "dense", 2048),
                              ("xla", "dense", 2048)):
        fn = jax.jit(functools.partial(scmp_jax.sc_matmul, implementation=impl, counts=counts,
                                       table_cap_bytes=cap << 20, **kw))
        out = np.asarray(fn(a, b)).view(np.uint32)
        ref = out if ref is None else ref
        ms = device_time(fn, (a, b), repeats=repeats, reps=2) * 1e3
        print(f"{name:10s} sc_matmul {impl:6s} {counts:6s} cap {cap:4d} MB {ms:8.3f} ms  "
              f"same={bool(np.array_equal(out, ref))}", flush=True)
    words = jnp.asarray(rng.integers(-2 ** 31, 2 ** 31 - 1, (514, 32)), jnp.int32)
    idx = jnp.asarray(rng.integers(0, 514, (H, N, min(D, 1024))), jnp.int32)
    take = jax.jit(lambda w, i: jnp.take(w, i, axis=0, mode="clip"))
    for label, fn in (("take", take),):
        ms = device_time(fn, (words, idx), repeats=repeats, reps=2) * 1e3
        gb = idx.size * 128 / 1e9
        print(f"{name:10s} X rows by {label:12s} {ms:8.3f} ms  {gb / ms:6.2f} TB/s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="per_row,per_head")
    ap.add_argument("--variants", default="xla,p128x128w8s3,p128x256w8s3")
    ap.add_argument("--repeats", type=int_in(1), default=3)
    ap.add_argument("--small", action="store_true", help="tiny shapes (CPU check)")
    args = ap.parse_args(argv)
    print("jax", jax.__version__, jax.devices()[0].device_kind, flush=True)
    table = {}
    for v in args.variants.split(","):
        if v.startswith("xla"):
            dc = int(v[3:] or 256)
            table[v] = (f"xla cuBLAS int8 dc={dc}", functools.partial(xla_dense, dc=dc))
        else:                      # {p|a|g}{bn}x{bm}w{warps}s{stages}: b / a / pure forms
            form = {"p": "b", "a": "a", "g": "pure"}[v[0]]
            s = v[1:]
            bn, rest = s.split("x")
            bm, rest = rest.split("w")
            w, st = rest.split("s")
            table[v] = (f"pallas {v}", functools.partial(
                pallas_dense, bn=int(bn), bm=int(bm), warps=int(w), stages=int(st), form=form))
    variants = list(table.values())
    shapes = {"per_row": (1, 2048, 4096, 4096), "per_head": (32, 1024, 1024, 128)}
    if args.small:
        shapes = {"per_row": (1, 128, 128, 64), "per_head": (2, 128, 128, 32)}
    for name in args.cases.split(","):
        if name.startswith("e2e_"):
            base = name[4:]
            kw = dict(granularity="per_head") if base == "per_head" else {}
            e2e(base, *shapes[base], args.repeats, kw)
        else:
            case(name, *shapes[name], variants, args.repeats)


if __name__ == "__main__":
    main()
