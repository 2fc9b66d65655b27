"""XLA (pure jnp/lax) SC enable-signal matmul (SPEC.md sections 4-7).

Counts are exact int32: one lookup per product, ``sign_a * sign_b * c =
table[ro ^ co]`` in the signed table of ``tables.Layout`` (``c = cum[sid_b[d],
k[n, d], bb[m, d]]``). The inner dim is walked in chunks with ``lax.scan``, so
memory is ``O(N*M + tables)``: never an ``(N, M, D)`` array. When the table
would exceed ``Static.cap`` bytes, tables are built on device per chunk of
``d`` (``_chunked_counts``), each under the cap.

With ``Static.impl == "pallas"`` the counts come from the Pallas kernel
(``pallas_counts``); with ``Static.counts == "dense"`` from an int8 matmul
(``dense``, both implementations). The float assembly below is shared.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._src import ieee as _ieee
from ..quant import xla as QX
from . import dense, pallas_counts
from .tables import EnableTables, Layout, layout, signed_table

__all__ = ["Static", "sc_matmul_xla"]

F32 = jnp.float32
_GATHER_BUDGET = 1 << 22       # elements of one (dc, N, M) gather chunk


@dataclasses.dataclass(frozen=True)
class Static:
    """Resolved, validated static arguments of one call."""
    granularity: str
    mode: str
    p: int
    L: int
    G: int
    chunk_d: int
    group_a: int
    group_b: int
    soft_div: bool = False      # integer IEEE division (GPU); part of the jit key
    impl: str = "xla"           # "pallas": counts by the Pallas kernel (table path)
    counts: str = "gather"      # "dense": counts as an int8 matmul (``dense``)
    interpret: bool = False     # Pallas interpret mode (off GPU)
    cap: int = 256 << 20        # table bytes; beyond it the chunked path builds tables per d-chunk
    axes_a: tuple = ()          # mesh axes a / b are sharded over (inside shard_map)
    axes_b: tuple = ()

    @property
    def V(self) -> int:
        return self.G + 1

    @property
    def f(self) -> np.float32:
        q = QX.qmax(self.mode, self.p)
        return np.float32(q * q) / np.float32(self.L)


def _chunks(x, dc):
    """(D, ...) -> (n, dc, ...) with zero padding of D."""
    D = x.shape[0]
    n = -(-D // dc)
    pad = n * dc - D
    if pad:
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((n, dc) + x.shape[1:])


def _indices(qa: QX.Quantized, qb: QX.Quantized, tabs: EnableTables, lay: Layout, st: Static,
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


def _table_counts(ro, co, table, st: Static, lay: Layout | None = None,
                  post: dense.Post = dense.IDENTITY):
    """``post.fn(acc, post.meta)`` of the exact int32 ``acc[h, n, m] = sum_d
    table[ro[h, d, n] ^ co[h, d, m]]`` (``dense``: row-major ``ro[h, n, d]`` and
    codes ``co[h, m, d]``, ``_indices``; it applies ``post`` per chunk of heads)."""
    if st.counts == "dense":
        return dense.counts(ro, co, table, lay, mode=st.mode, p=st.p, L=st.L, G=st.G,
                            cap=st.cap, post=post)
    fn, meta, _ = post
    if st.impl == "pallas":
        return fn(pallas_counts.accumulate(ro, co, table, interpret=st.interpret), meta)
    H, D, N = ro.shape
    M = co.shape[2]
    dc = int(max(1, min(D, _GATHER_BUDGET // max(1, H * N * M))))

    def body(acc, x):
        idx = x[0][:, :, :, None] ^ x[1][:, :, None, :]                  # (dc, H, N, M)
        c = jnp.take(table, idx, mode="clip").astype(jnp.int32)
        return acc + jnp.sum(c, axis=0, dtype=jnp.int32), None

    xs = (_chunks(jnp.moveaxis(ro, 1, 0), dc), _chunks(jnp.moveaxis(co, 1, 0), dc))
    acc, _ = lax.scan(body, jnp.zeros((H, N, M), jnp.int32), xs)
    return fn(acc, meta)


def _chunked_counts(qa, qb, tabs: EnableTables, st: Static):
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
    dcol = lambda x: jnp.moveaxis(_chunks(jnp.moveaxis(x, -1, 0), dc), 1, -1)   # (n, ..., dc)
    xs = (sid_b, dcol(qa.boundary), dcol(qb.boundary), jnp.pad(tabs.sid_a, (0, pad)).reshape(n, dc))
    if st.mode == "bipolar":
        xs += (dcol(qa.sign), dcol(qb.sign))
    local = jnp.arange(dc, dtype=jnp.int32)

    def body(acc, x):
        table = signed_table(jnp.take(tabs.streams_b, x[0], axis=0), st.G)
        qa_c = qa._replace(boundary=x[1], sign=x[4] if len(x) > 4 else None)
        qb_c = qb._replace(boundary=x[2], sign=x[5] if len(x) > 4 else None)
        sub = tabs._replace(sid_a=x[3], sid_b=local)
        ro, co = _indices(qa_c, qb_c, sub, lay, st, table)
        return acc + _table_counts(ro, co, table, st, lay), None

    H = qa.boundary.shape[0] if qa.boundary.ndim == 3 else 1
    N, M = qa.boundary.shape[-2], qb.boundary.shape[-2]
    acc, _ = lax.scan(body, jnp.zeros((H, N, M), jnp.int32), xs)
    return acc


def _acc(qa: QX.Quantized, qb: QX.Quantized, tabs, st, fin, meta):
    """``fin(acc, meta)`` of the exact int32 accumulators ``acc``, ``(N, M)`` or
    ``(H, N, M)`` (3D: ``fin`` may run per chunk of heads, see ``dense.counts``)."""
    three = qa.boundary.ndim == 3
    if tabs.table is None:
        acc = _chunked_counts(qa, qb, tabs, st)
        return fin(acc if three else acc[0], meta)
    lay = layout(tabs.streams_b.shape[0], st.L, st.G)
    ro, co = _indices(qa, qb, tabs, lay, st)
    if three:
        return _table_counts(ro, co, tabs.table, st, lay, post=dense.Post(fin, meta))
    return fin(_table_counts(ro, co, tabs.table, st, lay)[0], meta)


def meta(qa: QX.Quantized, qb: QX.Quantized, bad_a, bad_b):
    """What the float assembly reads: scales, zero points, row sums, bad rows."""
    keep = lambda q: QX.Quantized(None, None, q.scale, None, q.zp, q.rowsum)
    return keep(qa), keep(qb), bad_a, bad_b


def _assemble(acc, qa, qb, D, st: Static, f=None):
    """Per-row float assembly (SPEC.md section 6), shapes (..., N, M). ``f``:
    ``st.f``, or per row ``(N, 1)`` (mixed stream lengths)."""
    # separate(): XLA would otherwise reorder (acc * f) * sab to pull the
    # constant f outward, and contract the unipolar sums into FMAs
    sep = QX.separate
    if st.granularity == "per_head":
        head = sep(st.f * sep(qa.scale * qb.scale))
        return acc.astype(F32) * head[:, None, None]
    raw = sep(acc.astype(F32) * (st.f if f is None else f))
    sab = sep(qa.scale[..., :, None] * qb.scale[..., None, :])
    if st.mode == "bipolar":
        return raw * sab
    zpa, zpb = qa.zp[..., :, None], qb.zp[..., None, :]
    Sa = qa.rowsum.astype(F32)[..., :, None]
    Sb = qb.rowsum.astype(F32)[..., None, :]
    corr = (sep((-zpb) * Sa) - sep(zpa * Sb)) + sep(sep(np.float32(D) * zpa) * zpb)
    return (raw + corr) * sab


def schemes(st: Static) -> tuple[QX.Scheme, QX.Scheme]:
    """Quantization of a and b (chunk_d: per-row reciprocal form per chunk)."""
    chunk = st.chunk_d > 0
    return (QX.Scheme(st.granularity, st.mode, st.p, st.G, st.group_a, chunk, st.axes_a),
            QX.Scheme(st.granularity, st.mode, st.p, st.G, st.group_b, chunk, st.axes_b))


def quantize_operands(a, b, smooth, st: Static):
    """``(qa, qb, bad rows of a, bad rows of b)`` of float32 a, b (2D or 3D).
    SmoothQuant ``(a / s, b * s)`` comes first: in XLA here, in the kernels'
    loads on the Pallas path."""
    sa, sb = schemes(st)
    if st.impl != "pallas":
        if smooth is not None:
            a, b = QX.div(a, smooth), b * smooth
        (qa, bad_a), (qb, bad_b) = QX.quantize(a, sa), QX.quantize(b, sb)
        return qa, qb, bad_a, bad_b
    from ..quant import pallas as QP     # kernels only imported on this path
    out = []
    for x, sch, mul in ((a, sa, False), (b, sb, True)):
        q, bad = QP.quantize(x if x.ndim == 3 else x[None], smooth, sch,
                             interpret=st.interpret, smooth_mul=mul)
        if x.ndim == 2:                  # per_head is 3D only: every field has the lead 1
            q, bad = jax.tree_util.tree_map(lambda v: v[0], q), bad[0]
        out.append((q, bad))
    (qa, bad_a), (qb, bad_b) = out
    return qa, qb, bad_a, bad_b


def _product(a, b, smooth, tabs, st: Static, fin):
    """``fin(acc, (qa, qb, bad rows of a, bad rows of b))`` (``meta``). With a
    whole table, the Pallas path encodes straight into the count kernel's
    indices."""
    if st.impl == "pallas" and tabs.table is not None:
        from . import pallas as SP
        return SP.product(a, b, smooth, tabs, st, fin)
    qa, qb, bad_a, bad_b = quantize_operands(a, b, smooth, st)
    return _acc(qa, qb, tabs, st, fin, meta(qa, qb, bad_a, bad_b))


def _part(acc, m, *, D, st: Static):
    """One chunk_d chunk (2D, bipolar): its assembled part and its bad products."""
    qa, qb, bad_a, bad_b = m
    return QX.separate(_assemble(acc, qa, qb, D, st)), bad_a[:, None] | bad_b[None, :]


def _finish(acc, m, *, D, st: Static):
    """The float result: assembly, NaN where a row or column is bad (SPEC.md 6, 7)."""
    qa, qb, bad_a, bad_b = m
    out = _assemble(acc, qa, qb, D, st)
    return jnp.where(bad_a[..., :, None] | bad_b[..., None, :], F32(jnp.nan), out)


def _chunked(a, b, smooth, tabs: EnableTables, st: Static):
    """chunk_d path: per chunk, per-row reciprocal quantization; ``out = out + part``
    in chunk order. Full chunks run in a ``lax.scan`` (program size independent
    of ``D / chunk_d``), the shorter tail chunk after them."""
    N, D = a.shape
    M = b.shape[0]
    c = st.chunk_d

    def step(carry, abs_):
        out, bad = carry
        ac, bc, sc = abs_
        n = ac.shape[1]
        sub = tabs._replace(sid_a=tabs.sid_a[:n], sid_b=tabs.sid_b[:n])
        part, bad_c = _product(ac, bc, sc, sub, st, partial(_part, D=n, st=st))
        return (out + part, bad | bad_c), None

    carry = (jnp.zeros((N, M), F32), jnp.zeros((N, M), bool))
    n_full = D // c
    sm = (lambda lo, hi: None) if smooth is None else (lambda lo, hi: smooth[lo:hi])
    if n_full:
        split = lambda x: jnp.moveaxis(x[..., :n_full * c].reshape(x.shape[:-1] + (n_full, c)),
                                       -2, 0)
        xs = (split(a), split(b), None if smooth is None else split(smooth))
        carry, _ = lax.scan(step, carry, xs)
    if D % c:
        carry, _ = step(carry, (a[:, n_full * c:], b[:, n_full * c:], sm(n_full * c, D)))
    out, bad = carry
    return jnp.where(bad, F32(jnp.nan), out)


@partial(jax.jit, static_argnames=("st",))
def sc_matmul_xla(a, b, smooth, tabs: EnableTables, st: Static):
    """float32 ``(N, M)`` or ``(H, N, M)``; inputs already validated."""
    with _ieee.soft_division(st.soft_div):
        return _sc_matmul(a, b, smooth, tabs, st)


def _sc_matmul(a, b, smooth, tabs: EnableTables, st: Static):
    a = a.astype(F32)
    b = b.astype(F32)
    if smooth is not None:
        smooth = smooth.astype(F32)
    if st.chunk_d:
        return _chunked(a, b, smooth, tabs, st)
    return _product(a, b, smooth, tabs, st, partial(_finish, D=a.shape[-1], st=st))
