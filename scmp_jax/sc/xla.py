"""XLA (pure jnp/lax) SC enable-signal matmul (SPEC.md sections 4-7).

Counts are exact int32. The inner dim is walked in chunks with ``lax.scan``,
so memory is ``O(N*M + tables)``: never an ``(N, M, D)`` array. Two count
strategies give identical integers:

* table:  ``c = cum[sid_b[d], k[n, d], bb[m, d]]`` (one gather per product);
* stream: ``c = sum_t [t < k[n, d]] * [r'_b[d, t] < bb[m, d]]``, a matmul over
  cycles, used when ``cum`` would exceed the table cap.

With ``Static.impl == "pallas"`` the table counts come from the Pallas kernel
(``pallas_counts``); quantization and the float assembly below are shared.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _ieee
from ..quant import xla as QX
from . import pallas_counts
from .tables import EnableTables

__all__ = ["Static", "sc_matmul_xla"]

F32 = jnp.float32
_GATHER_BUDGET = 1 << 22       # elements of one (dc, N, M) gather chunk
_STREAM_BUDGET = 1 << 24       # elements of one (dc, N + M, L) cycle chunk


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
    interpret: bool = False     # Pallas interpret mode (off GPU)

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


def _counts(k, sa, bb, sb, tabs: EnableTables, st: Static):
    """acc[h, n, m] = sum_d sa*sb*c (bipolar) or sum_d c.

    k, sa: (H, N, D) int32; bb, sb: (H, M, D) int32 (sa, sb None for unipolar).
    """
    H, N, D = k.shape
    M = bb.shape[1]
    bipolar = sa is not None
    if st.impl == "pallas":
        off = (tabs.sid_b * ((st.L + 1) * st.V))[None, :, None]
        hd = lambda x: None if x is None else jnp.swapaxes(x, 1, 2)    # (H, D, R)
        return pallas_counts.accumulate(off + hd(k) * st.V, hd(bb), hd(sa), hd(sb), tabs.cum,
                                        interpret=st.interpret)
    dT = lambda x: jnp.moveaxis(x, -1, 0)                           # (D, H, R)
    if tabs.cum is not None:
        dc = int(max(1, min(D, _GATHER_BUDGET // max(1, H * N * M))))
        off = tabs.sid_b * ((st.L + 1) * st.V)
        xs = [_chunks(dT(k), dc), _chunks(dT(bb), dc), _chunks(off, dc)]
        if bipolar:
            xs += [_chunks(dT(sa), dc), _chunks(dT(sb), dc)]

        def body(acc, x):
            idx = (x[2][:, None, None, None] + x[0][:, :, :, None] * st.V
                   + x[1][:, :, None, :])                              # (dc, H, N, M)
            c = jnp.take(tabs.cum, idx, mode="clip").astype(jnp.int32)
            if bipolar:
                c = c * (x[3][:, :, :, None] * x[4][:, :, None, :])
            return acc + jnp.sum(c, axis=0, dtype=jnp.int32), None
    else:
        L = st.L
        dc = int(max(1, min(D, _STREAM_BUDGET // max(1, H * (N + M) * L), (1 << 24) // L)))
        rb = jnp.take(tabs.streams_b, tabs.sid_b, axis=0)                # (D, L)
        xs = [_chunks(dT(k), dc), _chunks(dT(bb), dc), _chunks(rb, dc)]
        if bipolar:
            xs += [_chunks(dT(sa), dc), _chunks(dT(sb), dc)]
        t = jnp.arange(L, dtype=jnp.int32)

        def body(acc, x):
            ea = (t < x[0][..., None]).astype(F32)                          # (dc, H, N, L)
            eb = (x[2][:, None, None, :] < x[1][..., None]).astype(F32)     # (dc, H, M, L)
            if bipolar:
                ea = ea * x[3][..., None].astype(F32)
                eb = eb * x[4][..., None].astype(F32)
            # |part| <= dc * L <= 2**24: exact in float32
            part = jnp.einsum("jhnt,jhmt->hnm", ea, eb, precision=lax.Precision.HIGHEST,
                              preferred_element_type=F32)
            return acc + part.astype(jnp.int32), None

    acc, _ = lax.scan(body, jnp.zeros((H, N, M), jnp.int32), tuple(xs))
    return acc


def _enable_k(ba, tabs: EnableTables, st: Static):
    """k[..., n, d] = k_table[sid_a[d], ba[..., n, d]]."""
    return jnp.take(tabs.ktab, tabs.sid_a * st.V + ba, mode="clip")


def _acc(qa: QX.Quantized, qb: QX.Quantized, tabs, st):
    """Exact int32 accumulators, ``(N, M)`` or ``(H, N, M)``."""
    lift = (lambda x: x) if qa.boundary.ndim == 3 else (lambda x: None if x is None else x[None])
    k = _enable_k(qa.boundary, tabs, st)
    acc = _counts(lift(k), lift(qa.sign), lift(qb.boundary), lift(qb.sign), tabs, st)
    return acc if qa.boundary.ndim == 3 else acc[0]


def _assemble(acc, qa, qb, D, st: Static):
    """Per-row float assembly (SPEC.md section 6), shapes (..., N, M)."""
    # separate(): XLA would otherwise reorder (acc * f) * sab to pull the
    # constant f outward, and contract the unipolar sums into FMAs
    sep = QX.separate
    raw = sep(acc.astype(F32) * st.f)
    sab = sep(qa.scale[..., :, None] * qb.scale[..., None, :])
    if st.mode == "bipolar":
        return raw * sab
    zpa, zpb = qa.zp[..., :, None], qb.zp[..., None, :]
    Sa = qa.rowsum.astype(F32)[..., :, None]
    Sb = qb.rowsum.astype(F32)[..., None, :]
    corr = (sep((-zpb) * Sa) - sep(zpa * Sb)) + sep(sep(np.float32(D) * zpa) * zpb)
    return (raw + corr) * sab


def _quantize(x, st: Static, group: int):
    if st.granularity == "per_tensor":
        return QX.per_tensor(x, st.mode, st.p, st.G)
    if st.granularity == "per_row":
        return QX.per_row(x, st.mode, st.p, st.G, group)
    return QX.per_head(x, st.p, st.G)


def _bad_mask(a, b, qa, qb):
    return QX.bad_rows(a, qa.scale)[..., :, None] | QX.bad_rows(b, qb.scale)[..., None, :]


def _chunked(a, b, tabs: EnableTables, st: Static):
    """chunk_d path: per chunk, per-row reciprocal quantization; ``out = out + part``
    in chunk order. Full chunks run in a ``lax.scan`` (program size independent
    of ``D / chunk_d``), the shorter tail chunk after them."""
    N, D = a.shape
    M = b.shape[0]
    c = st.chunk_d

    def step(carry, ab):
        out, bad = carry
        ac, bc = ab
        n = ac.shape[1]
        qa, qb = QX.per_row_chunk(ac, st.p, st.G), QX.per_row_chunk(bc, st.p, st.G)
        sub = tabs._replace(sid_a=tabs.sid_a[:n], sid_b=tabs.sid_b[:n])
        part = QX.separate(_assemble(_acc(qa, qb, sub, st), qa, qb, n, st))   # bipolar
        return (out + part, bad | _bad_mask(ac, bc, qa, qb)), None

    carry = (jnp.zeros((N, M), F32), jnp.zeros((N, M), bool))
    n_full = D // c
    if n_full:
        split = lambda x: jnp.moveaxis(x[:, :n_full * c].reshape(x.shape[0], n_full, c), 1, 0)
        carry, _ = lax.scan(step, carry, (split(a), split(b)))
    if D % c:
        carry, _ = step(carry, (a[:, n_full * c:], b[:, n_full * c:]))
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
        a = QX.div(a, smooth)
        b = b * smooth
    if st.chunk_d:
        return _chunked(a, b, tabs, st)
    D = a.shape[-1]
    qa, qb = _quantize(a, st, st.group_a), _quantize(b, st, st.group_b)
    acc = _acc(qa, qb, tabs, st)
    if st.granularity == "per_head":
        head = QX.separate(st.f * QX.separate(qa.scale * qb.scale))
        out = acc.astype(F32) * head[:, None, None]
        bad = ~(jnp.isfinite(qa.scale) & jnp.isfinite(qb.scale)
                & jnp.all(jnp.isfinite(a), axis=(1, 2)) & jnp.all(jnp.isfinite(b), axis=(1, 2)))
        return jnp.where(bad[:, None, None], F32(jnp.nan), out)
    out = _assemble(acc, qa, qb, D, st)
    return jnp.where(_bad_mask(a, b, qa, qb), F32(jnp.nan), out)
