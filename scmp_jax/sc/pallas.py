"""The Pallas SC matmul: kernels end to end (SPEC.md sections 4-7).

With a whole table, per operand: ``quant.pallas.stats`` (one read; SmoothQuant
applied in the load), the per-row scales in XLA (tiny, ``quant.xla.row_params``),
then ``pallas_encode.encode_index`` (second read) writes the count kernel's
table indices directly (d-major for the gather, row-major for ``dense``);
``pallas_counts.accumulate`` does the lookups (or ``dense`` the int8 matmul,
whose head walk ``pallas_assemble.into`` assembles in place). Above the table
cap (and for mixed stream lengths) the operands are quantized by
``quant.pallas.quantize`` and counted by the chunked-table walk of ``counts``
with the count kernel. The float assembly and the chunk_d walk are the
shared XLA ones (``pipeline``).
"""
from __future__ import annotations

import functools

import jax

from ..quant import pallas as QP
from ..quant import xla as QX
from . import counts as CT
from . import dense as DN
from . import mixed, pallas_counts, pipeline
from . import pallas_assemble as PA
from .pallas_encode import encode_index
from .static import Static
from .tables import EnableTables, layout

__all__ = ["quantize_operands", "gather", "product", "sc_matmul", "sc_matmul_mixed"]


def quantize_operands(a, b, smooth, st: Static):
    """``(qa, qb, bad rows of a, bad rows of b)`` by the kernels; SmoothQuant in
    their loads (``a / s``, ``b * s``)."""
    sa, sb = st.schemes()
    interpret = st.backend.interpret
    qa, bad_a = QP.quantize(a, smooth, sa, interpret=interpret)
    qb, bad_b = QP.quantize(b, smooth, sb, interpret=interpret, smooth_mul=True)
    return qa, qb, bad_a, bad_b


def gather(ro, co, table, st: Static):
    """The count kernel (``pallas_counts.accumulate``)."""
    return pallas_counts.accumulate(ro, co, table, interpret=st.backend.interpret)


def _as3(x):
    return x if x.ndim == 3 else x[None]


def _params(x3, smooth, sch, st, smooth_mul):
    stats = QP.stats(x3, smooth, interpret=st.backend.interpret, smooth_mul=smooth_mul)
    return QX.row_params(stats, sch)


def _meta(prm: QX.Params, rowsum, two_d: bool) -> QX.Quantized:
    """What the float assembly reads (scale, zp, row sums), 2D shapes restored."""
    sq = (lambda v: v if v is None else v[0]) if two_d else (lambda v: v)
    scale = prm.scale if prm.scale.ndim == 1 else sq(prm.scale)   # per_head: (H,)
    return QX.Quantized(None, None, scale, None, sq(prm.zp), sq(rowsum))


def _encoded(a, b, smooth, tabs: EnableTables, st: Static, fin):
    """``product`` with a whole table: the operands encoded straight into indices."""
    two_d = a.ndim == 2
    a3, b3 = _as3(a), _as3(b)
    sch_a, sch_b = st.schemes()
    interpret = st.backend.interpret
    pa = _params(a3, smooth, sch_a, st, smooth_mul=False)
    pb = _params(b3, smooth, sch_b, st, smooth_mul=True)
    sq = (lambda v: v[0]) if two_d else (lambda v: v)
    lay = layout(tabs.streams_b.shape[0], st.L, st.G)
    D = a.shape[-1]
    dense = st.counts == "dense"        # row-major indices, side a as dense's X rows
    roff = DN.row_offsets(tabs.sid_b[:D], st.L) if dense else tabs.sid_b[:D] * lay.row_s
    ro, ra = encode_index(a3, smooth, pa, roff, tabs.sid_a[:D] * st.V, tabs.ktab,
                          sch=sch_a, interpret=interpret, shift=lay.shift, vp=lay.vp,
                          dmajor=not dense, xrow=dense)
    if dense:       # b-side codes: y_table[sid_b * vp + boundary] | neg << NEG_SHIFT
        ytab = DN.y_table(tabs.table, lay, mode=st.mode, p=st.p, L=st.L, G=st.G)
        co, rb = encode_index(b3, smooth, pb, None, tabs.sid_b[:D] * lay.vp, ytab, sch=sch_b,
                              interpret=interpret, shift=DN.NEG_SHIFT, vp=1,
                              smooth_mul=True, dmajor=False)
    else:
        co, rb = encode_index(b3, smooth, pb, sch=sch_b, interpret=interpret,
                              shift=lay.shift, vp=lay.vp, smooth_mul=True)
    m = (_meta(pa, ra, two_d), _meta(pb, rb, two_d), sq(pa.bad), sq(pb.bad))
    if two_d:
        return fin(CT.table_counts(ro, co, tabs.table, st, lay, gather=gather)[0], m)
    into = None
    if dense and PA.fits(a.shape[1], b.shape[1]):
        into = functools.partial(PA.into, H=a.shape[0], D=D, st=st)
    post = DN.Post(fin, m, into)
    return CT.table_counts(ro, co, tabs.table, st, lay, post=post, gather=gather)


def product(a, b, smooth, tabs: EnableTables, st: Static, fin):
    """``fin(acc, pipeline.meta(...))`` of float32 a, b."""
    if tabs.table is not None:
        return _encoded(a, b, smooth, tabs, st, fin)
    return pipeline.product(a, b, smooth, tabs, st, fin, quantize=quantize_operands,
                            gather=gather)


@functools.partial(jax.jit, static_argnames=("st",))
def sc_matmul(a, b, smooth, tabs: EnableTables, st: Static):
    """float32 ``(N, M)`` or ``(H, N, M)``; inputs already validated."""
    return pipeline.run(a, b, smooth, tabs, st, product)


@functools.partial(jax.jit, static_argnames=("st", "levels", "shift", "vp", "has_col"))
def sc_matmul_mixed(a, b, smooth, row_len, col_len, mt: mixed.MixedTables, *, st: Static,
                    levels, shift, vp, has_col):
    """float32 ``(N, M)`` with per-row / per-column stream lengths (``mixed``)."""
    return mixed.run(a, b, smooth, row_len, col_len, mt, st=st, levels=levels, shift=shift,
                     vp=vp, has_col=has_col, quantize=quantize_operands, gather=gather)
