"""The Pallas path of the SC matmul with a whole table (SPEC.md sections 4-7).

Per operand: ``quant.pallas.stats`` (one read; SmoothQuant applied in the
load), the per-row scales in XLA (tiny), then ``quant.pallas.encode_index``
(second read) writes the count kernel's table indices directly (d-major for
the gather, row-major for ``dense``);
``pallas_counts.accumulate`` does the lookups
(or ``dense`` the int8 matmul). (Above the table cap,
``xla.quantize_operands`` + the chunked-table walk run the kernels instead.)
"""
from __future__ import annotations

import functools

from ..quant import pallas as QP
from ..quant import xla as QX
from . import dense as DN
from . import pallas_assemble as PA
from .tables import EnableTables, layout


def _as3(x):
    return x if x.ndim == 3 else x[None]


def _side(x3, smooth, sch, st, smooth_mul):
    stats = QP.stats(x3, smooth, interpret=st.interpret, smooth_mul=smooth_mul)
    return QX.row_params(stats, sch)


def _meta(prm: QX.Params, rowsum, two_d: bool) -> QX.Quantized:
    """What the float assembly reads (scale, zp, row sums), 2D shapes restored."""
    sq = (lambda v: v if v is None else v[0]) if two_d else (lambda v: v)
    scale = prm.scale if prm.scale.ndim == 1 else sq(prm.scale)   # per_head: (H,)
    return QX.Quantized(None, None, scale, None, sq(prm.zp), sq(rowsum))


def product(a, b, smooth, tabs: EnableTables, st, fin):
    """``fin(acc, (qa, qb, bad rows of a, bad rows of b))``, like ``xla._product``."""
    from .xla import _table_counts, schemes
    two_d = a.ndim == 2
    a3, b3 = _as3(a), _as3(b)
    sch_a, sch_b = schemes(st)
    pa = _side(a3, smooth, sch_a, st, smooth_mul=False)
    pb = _side(b3, smooth, sch_b, st, smooth_mul=True)
    sq = (lambda v: v[0]) if two_d else (lambda v: v)
    lay = layout(tabs.streams_b.shape[0], st.L, st.G)
    D = a.shape[-1]
    dense = st.counts == "dense"        # row-major indices, side a as dense's X rows
    roff = DN.row_offsets(tabs.sid_b[:D], st.L) if dense else tabs.sid_b[:D] * lay.row_s
    ro, ra = QP.encode_index(a3, smooth, pa, roff, tabs.sid_a[:D] * st.V, tabs.ktab,
                             sch=sch_a, interpret=st.interpret, shift=lay.shift, vp=lay.vp,
                             dmajor=not dense, xrow=dense)
    if dense:       # b-side codes: y_table[sid_b * vp + boundary] | neg << NEG_SHIFT
        ytab = DN.y_table(tabs.table, lay, mode=st.mode, p=st.p, L=st.L, G=st.G)
        co, rb = QP.encode_index(b3, smooth, pb, None, tabs.sid_b[:D] * lay.vp, ytab, sch=sch_b,
                                 interpret=st.interpret, shift=DN.NEG_SHIFT, vp=1,
                                 smooth_mul=True, dmajor=False)
    else:
        co, rb = QP.encode_index(b3, smooth, pb, sch=sch_b, interpret=st.interpret,
                                 shift=lay.shift, vp=lay.vp, smooth_mul=True)
    m = (_meta(pa, ra, two_d), _meta(pb, rb, two_d), sq(pa.bad), sq(pb.bad))
    if two_d:
        return fin(_table_counts(ro, co, tabs.table, st, lay)[0], m)
    into = None
    if dense and PA.fits(a.shape[1], b.shape[1]):
        into = functools.partial(PA.into, H=a.shape[0], D=D, st=st, interpret=st.interpret)
    post = DN.Post(fin, m, into)
    return _table_counts(ro, co, tabs.table, st, lay, post=post)
