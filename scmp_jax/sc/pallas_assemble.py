"""Pallas (Triton backend) float assembly of one chunk of heads, written in place
(SPEC.md sections 6 and 7), for the dense counts' head walk (``dense.counts``).

``into(out, h0, acc, meta)`` turns the int32 counts ``acc (hc, N, M)`` of heads
``h0 .. h0 + hc`` into float32 results and stores them into those heads of
``out (H, N, M)``, aliased (``input_output_aliases``): no zero-filled stacked
output, no separate int32 -> float32 pass and no copy into the stack, the three
passes XLA's ``lax.map`` made of it (0.18 of 1.28 ms busy at per_head on the
H200, session 14). With ``out=None`` it creates ``out``: only the chunk's
heads are written, the walk's later chunks write the rest.

The arithmetic is ``xla._finish``'s, operation by operation, with
``kernel_math`` (PTX ``.rn`` operations: no FMA contraction):

* per_head: ``float(acc) * head`` (``head`` formed in XLA as in ``_assemble``);
* bipolar: ``(float(acc) * f) * (s_a * s_b)``;
* unipolar: ``(raw + ((-zp_b * S_a - zp_a * S_b) + (D * zp_a) * zp_b)) * (s_a * s_b)``;

then NaN where the row of a or the column of b is bad. Blocks tile ``N`` and
``M`` exactly (``fits``); other shapes keep the XLA epilogue.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from .._src.dispatch import triton_params
from .._src.kernel_math import kernel_math
from ..quant import xla as QX

__all__ = ["fits", "into"]

F32, I32 = jnp.float32, jnp.int32
_BR, _BC = 32, 128


def _block(n: int, top: int) -> int:
    """The largest power of two <= ``top`` dividing ``n``."""
    return min(top, n & -n)


def fits(N: int, M: int) -> bool:
    """Blocks of at least 8 x 16 tile ``(N, M)`` exactly (in range by construction)."""
    return _block(N, _BR) >= 8 and _block(M, _BC) >= 16


def _kernel(h0_ref, acc_ref, *refs, kind, nr, nc, f, D, interpret):
    # refs: nr row vectors, nc column vectors, [the aliased out, not read], out
    rows, cols, o_ref = refs[:nr], refs[nr:nr + nc], refs[-1]
    m = kernel_math(interpret)
    h, i, j = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    br, bc = acc_ref.shape[-2:]
    c = acc_ref[...].reshape(br, bc).astype(F32)
    r = [v[...].reshape(br, 1) for v in rows]
    k = [v[...].reshape(1, bc) for v in cols]
    if kind == "head":                  # cols: only the bad flags
        val = m.mul(c, r[0])
    else:
        sab = m.mul(r[0], k[0])
        val = m.mul(c, F32(f))
        if kind == "unipolar":
            (zpa, sa_sum), (zpb, sb_sum) = r[1:3], k[1:3]
            corr = m.add(m.add(m.mul(-zpb, sa_sum), -m.mul(zpa, sb_sum)),
                         m.mul(m.mul(F32(D), zpa), zpb))
            val = m.add(val, corr)
        val = m.mul(val, sab)
    bad = (r[-1] != 0) | (k[-1] != 0)
    val = jnp.where(bad, F32(jnp.nan), val)
    o_ref[h0_ref[0] + h, pl.ds(i * br, br), pl.ds(j * bc, bc)] = val


def _vectors(meta, st, hc: int, N: int, M: int):
    """(kind, per-row vectors (hc, N), per-column vectors (hc, M)), float32 / int32."""
    qa, qb, bad_a, bad_b = meta
    if st.granularity == "per_head":
        sep = QX.separate
        head = sep(st.f * sep(qa.scale * qb.scale))                  # as xla._assemble
        rows, cols, kind = [jnp.broadcast_to(head[:, None], (hc, N))], [], "head"
    elif st.mode == "bipolar":
        rows, cols, kind = [qa.scale], [qb.scale], "bipolar"
    else:
        rows = [qa.scale, qa.zp, qa.rowsum.astype(F32)]
        cols = [qb.scale, qb.zp, qb.rowsum.astype(F32)]
        kind = "unipolar"
    rows.append(bad_a.astype(I32))
    cols.append(bad_b.astype(I32))
    return kind, rows, cols


def into(out, h0, acc, meta, *, H: int, D: int, st, interpret: bool):
    """``out`` (H, N, M) float32 (None: a new array) with heads ``h0 .. h0 + hc``
    set to the float results of ``acc`` (hc, N, M) int32 and ``meta`` =
    ``(qa, qb, bad_a, bad_b)`` of those heads (``xla.meta``; lead dim hc)."""
    hc, N, M = acc.shape
    kind, rows, cols = _vectors(meta, st, hc, N, M)
    br, bc = _block(N, _BR), _block(M, _BC)
    row = pl.BlockSpec((None, br), lambda h, i, j: (h, i))
    col = pl.BlockSpec((None, bc), lambda h, i, j: (h, j))
    whole = pl.BlockSpec((H, N, M), lambda h, i, j: (0, 0, 0))
    args = [jnp.asarray(h0, I32).reshape(1), acc, *rows, *cols]
    specs = [pl.BlockSpec((1,), lambda h, i, j: (0,)),
             pl.BlockSpec((None, br, bc), lambda h, i, j: (h, i, j)),
             *[row] * len(rows), *[col] * len(cols)]
    alias = {}
    if out is not None:
        alias = {len(args): 0}
        args.append(out)
        specs.append(whole)
    kern = functools.partial(_kernel, kind=kind, nr=len(rows), nc=len(cols),
                             f=np.float32(st.f), D=D, interpret=interpret)
    return pl.pallas_call(
        kern,
        grid=(hc, N // br, M // bc),
        in_specs=specs,
        out_specs=whole,
        out_shape=jax.ShapeDtypeStruct((H, N, M), F32),
        input_output_aliases=alias,
        interpret=interpret,
        **triton_params(interpret, warps=4),
    )(*args)
