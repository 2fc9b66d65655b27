"""Pallas (Triton backend) float assembly of one chunk of heads, written in place
(SPEC.md sections 6 and 7), for the dense counts' head walk (``dense.counts``).

``into(out, h0, acc, meta)`` turns the int32 counts ``acc (hc, N, M)`` of heads
``h0 .. h0 + hc`` into float32 results and stores them into those heads of
``out (H, N, M)``, aliased (``input_output_aliases``): no zero-filled stacked
output, no separate int32 -> float32 pass and no copy into the stack, the three
passes XLA's ``lax.map`` made of it (docs/decisions.md, "in-place assembly").
With ``out=None`` it creates ``out``: only the chunk's heads are written, the
walk's later chunks write the rest.

The arithmetic is ``pipeline.finish``'s, operation by operation: the
granularity's ``kernel_vectors`` (formed in XLA) and ``kernel_assemble`` over
``kernel_math`` (PTX ``.rn`` operations: no FMA contraction), then NaN where
the row of a or the column of b is bad. Blocks tile ``N`` and ``M`` exactly
(``fits``); other shapes keep the XLA epilogue.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from .._src.dispatch import triton_params
from .._src.kernel_math import kernel_math

__all__ = ["fits", "into"]

F32, I32 = jnp.float32, jnp.int32
_BR, _BC = 32, 128


def _block(n: int, top: int) -> int:
    """The largest power of two <= ``top`` dividing ``n``."""
    return min(top, n & -n)


def fits(N: int, M: int) -> bool:
    """Blocks of at least 8 x 16 tile ``(N, M)`` exactly (in range by construction)."""
    return _block(N, _BR) >= 8 and _block(M, _BC) >= 16


def _kernel(h0_ref, acc_ref, *refs, gran, mode, nr, nc, f, D, interpret):
    # refs: nr row vectors, nc column vectors, [the aliased out, not read], out
    rows, cols, o_ref = refs[:nr], refs[nr:nr + nc], refs[-1]
    m = kernel_math(interpret)
    h, i, j = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    br, bc = acc_ref.shape[-2:]
    c = acc_ref[...].reshape(br, bc).astype(F32)
    r = [v[...].reshape(br, 1) for v in rows]
    k = [v[...].reshape(1, bc) for v in cols]
    val = gran.kernel_assemble(c, r[:-1], k[:-1], mode=mode, f=f, D=D, m=m)
    bad = (r[-1] != 0) | (k[-1] != 0)               # the last row / column vectors
    val = jnp.where(bad, F32(jnp.nan), val)
    o_ref[h0_ref[0] + h, pl.ds(i * br, br), pl.ds(j * bc, bc)] = val


def into(out, h0, acc, meta, *, H: int, D: int, st):
    """``out`` (H, N, M) float32 (None: a new array) with heads ``h0 .. h0 + hc``
    set to the float results of ``acc`` (hc, N, M) int32 and ``meta`` =
    ``(qa, qb, bad_a, bad_b)`` of those heads (``pipeline.meta``; lead dim hc)."""
    hc, N, M = acc.shape
    qa, qb, bad_a, bad_b = meta
    gran, interpret = st.granularity, st.backend.interpret
    rows, cols = gran.kernel_vectors(qa, qb, mode=st.mode, f=st.f, hc=hc, N=N)
    rows, cols = [*rows, bad_a.astype(I32)], [*cols, bad_b.astype(I32)]
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
    kern = functools.partial(_kernel, gran=gran, mode=st.mode, nr=len(rows), nc=len(cols),
                             f=np.float32(st.f), D=D, interpret=interpret)
    return pl.pallas_call(
        kern,
        grid=(hc, N // br, M // bc),
        in_specs=specs,
        out_specs=whole,
        out_shape=jax.ShapeDtypeStruct((H, N, M), F32),
        input_output_aliases=alias,
        interpret=interpret,
        name=f"sc_assemble_{gran.name}_{st.mode}{'_into' if out is not None else ''}",
        **triton_params(interpret, warps=4),
    )(*args)
