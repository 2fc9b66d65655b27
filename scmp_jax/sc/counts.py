"""The exact int32 SC counts from quantized operands (SPEC.md section 4), in
XLA, shared by both implementations.

One lookup per product, ``sign_a * sign_b * c = table[ro ^ co]`` in the signed
table of ``tables.Layout`` (``c = cum[sid_b[d], k[n, d], bb[m, d]]``). The
lookups themselves are the implementation's ``gather(ro, co, table, st)``
(``xla.gather``: a ``lax.scan`` over chunks of ``d``; ``pallas.gather``: the
count kernel); ``Static.counts == "dense"`` forms the same integers as an
int8 matmul (``dense``) in both. When the table would exceed ``Static.cap``
bytes, tables are built on device per chunk of ``d`` (``chunked_counts``),
each under the cap.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ..quant import xla as QX
from . import dense
from .static import Static
from .tables import EnableTables, Layout, layout, signed_table

__all__ = ["chunks", "indices", "table_counts", "chunked_counts", "accumulate"]


def chunks(x, dc):
    """(D, ...) -> (n, dc, ...) with zero padding of D."""
    D = x.shape[0]
    n = -(-D // dc)
    pad = n * dc - D
    if pad:
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((n, dc) + x.shape[1:])


def indices(qa: QX.Quantized, qb: QX.Quantized, tabs: EnableTables, lay: Layout, st: Static,
            table=None):
    """Table indices ``ro``, ``co`` int32 with ``table[ro ^ co] = sign_a * sign_b *
    cum[sid_b[d], k, bb]`` (``tables.Layout``), d-major ``(H, D, N)``, ``(H, D, M)``
    for the gathers; for ``dense`` row-major ``(H, N, D)``, ``(H, M, D)``: ``ro``
    is dense's X row ``2 * (sid_b[d] * (L + 1) + k) + neg_a`` and ``co`` the
    b-side code ``dense.y_codes`` (of ``table``, default ``tabs.table``)."""
    lift = (lambda x: x) if qa.boundary.ndim == 3 else (lambda x: x[None])
    rows = st.counts == "dense"
    dmaj = (lambda x: lift(x)) if rows else (lambda x: jnp.swapaxes(lift(x), 1, 2))
    k = jnp.take(tabs.ktab, tabs.sid_a * st.V + qa.boundary, mode="clip")
    bip = st.mode == "bipolar"
    neg_a = (dmaj(qa.sign) < 0).astype(jnp.int32) if bip else None
    neg_b = (dmaj(qb.sign) < 0).astype(jnp.int32) if bip else None
    if rows:
        ro = dense.row_offsets(tabs.sid_b, st.L)[None, None, :] + 2 * dmaj(k)
        ytab = dense.y_table(tabs.table if table is None else table, lay, mode=st.mode,
                             p=st.p, L=st.L, G=st.G)
        co = dense.y_codes(dmaj(qb.boundary), neg_b, tabs.sid_b, ytab, lay)
        return (ro if neg_a is None else ro + neg_a), co
    ro = (tabs.sid_b * lay.row_s)[None, :, None] + dmaj(k) * lay.vp
    co = dmaj(qb.boundary)
    if bip:
        ro = ro | neg_a << lay.shift
        co = co | neg_b << lay.shift
    return ro, co


def table_counts(ro, co, table, st: Static, lay: Layout | None = None,
                 post: dense.Post = dense.IDENTITY, *, gather):
    """``post.fn(acc, post.meta)`` of the exact int32 ``acc[h, n, m] = sum_d
    table[ro[h, d, n] ^ co[h, d, m]]`` (``dense``: row-major ``ro[h, n, d]`` and
    codes ``co[h, m, d]``, ``indices``; it applies ``post`` per chunk of heads)."""
    if st.counts == "dense":
        return dense.counts(ro, co, table, lay, mode=st.mode, p=st.p, L=st.L, G=st.G,
                            cap=st.cap, post=post)
    fn, meta, _ = post
    return fn(gather(ro, co, table, st), meta)


def chunked_counts(qa, qb, tabs: EnableTables, st: Static, *, gather):
    """Table beyond the cap: walk ``d`` in chunks whose own tables (one per
    ``d``, built on device from ``streams_b``) fit ``st.cap``; same integers."""
    D = qa.boundary.shape[-1]
    lay1 = layout(1, st.L, st.G)
    dc = int(max(1, min(D, st.cap // (2 * lay1.size))))
    while dc > 1 and 2 * layout(dc, st.L, st.G).size > st.cap:
        dc -= 1
    lay = layout(dc, st.L, st.G)
    n = -(-D // dc)
    pad = n * dc - D
    # per chunk: local stream id = position in the chunk
    sid_b = jnp.pad(tabs.sid_b, (0, pad)).reshape(n, dc)
    dcol = lambda x: jnp.moveaxis(chunks(jnp.moveaxis(x, -1, 0), dc), 1, -1)   # (n, ..., dc)
    xs = (sid_b, dcol(qa.boundary), dcol(qb.boundary), jnp.pad(tabs.sid_a, (0, pad)).reshape(n, dc))
    if st.mode == "bipolar":
        xs += (dcol(qa.sign), dcol(qb.sign))
    local = jnp.arange(dc, dtype=jnp.int32)

    def body(acc, x):
        table = signed_table(jnp.take(tabs.streams_b, x[0], axis=0), st.G)
        qa_c = qa._replace(boundary=x[1], sign=x[4] if len(x) > 4 else None)
        qb_c = qb._replace(boundary=x[2], sign=x[5] if len(x) > 4 else None)
        sub = tabs._replace(sid_a=x[3], sid_b=local)
        ro, co = indices(qa_c, qb_c, sub, lay, st, table)
        return acc + table_counts(ro, co, table, st, lay, gather=gather), None

    H = qa.boundary.shape[0] if qa.boundary.ndim == 3 else 1
    N, M = qa.boundary.shape[-2], qb.boundary.shape[-2]
    acc, _ = lax.scan(body, jnp.zeros((H, N, M), jnp.int32), xs)
    return acc


def accumulate(qa: QX.Quantized, qb: QX.Quantized, tabs, st: Static, fin, meta, *, gather):
    """``fin(acc, meta)`` of the exact int32 accumulators ``acc``, ``(N, M)`` or
    ``(H, N, M)`` (3D: ``fin`` may run per chunk of heads, see ``dense.counts``)."""
    three = qa.boundary.ndim == 3
    if tabs.table is None:
        acc = chunked_counts(qa, qb, tabs, st, gather=gather)
        return fin(acc if three else acc[0], meta)
    lay = layout(tabs.streams_b.shape[0], st.L, st.G)
    ro, co = indices(qa, qb, tabs, lay, st)
    if three:
        return table_counts(ro, co, tabs.table, st, lay, post=dense.Post(fin, meta),
                            gather=gather)
    return fin(table_counts(ro, co, tabs.table, st, lay, gather=gather)[0], meta)
