"""Pallas (Triton backend) kernel for the SC count accumulation (SPEC.md section 4).

``acc[h, n, m] = sum_d sa[h, d, n] * sb[h, d, m] * cum[rowoff[h, d, n] + col[h, d, m]]``
with ``rowoff = off_b[d] + k[n, d] * V`` and ``col = bb[m, d]`` precomputed by
XLA; exact int32. One program per ``(BN, BM)`` output tile, the inner dim walked
with a ``fori_loop`` unrolled by hand (``unroll=`` is not supported by this
backend). Off GPU the same kernel runs with ``interpret=True``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

try:  # jax >= 0.10: Triton-specific pieces live under pallas.triton
    from jax.experimental.pallas import triton as _pltriton
except ImportError:  # pragma: no cover
    _pltriton = None

__all__ = ["accumulate", "UNROLL"]

UNROLL = 8
I32 = jnp.int32


def _kernel(ro_ref, co_ref, sa_ref, sb_ref, cum_ref, out_ref, *, n_steps, bipolar):
    def step(j, acc):
        for u in range(UNROLL):
            d = j * UNROLL + u
            ro = ro_ref[d, :]
            co = co_ref[d, :]
            c = cum_ref[ro[:, None] + co[None, :]].astype(I32)
            if bipolar:
                c = c * (sa_ref[d, :][:, None] * sb_ref[d, :][None, :])
            acc = acc + c
        return acc

    bn, bm = out_ref.shape
    out_ref[...] = lax.fori_loop(0, n_steps, step, jnp.zeros((bn, bm), I32))


def _pad_to(x, axis, size):
    pad = size - x.shape[axis]
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)


def _tile(n: int) -> int:
    return max(16, min(64, pl.next_power_of_2(n)))


@functools.partial(jax.jit, static_argnames=("interpret",))
def accumulate(rowoff, col, sa, sb, cum, *, interpret: bool):
    """rowoff, sa: (H, D, N) int32; col, sb: (H, D, M) int32 (sa/sb None for
    unipolar); cum: flat int16 table. Returns (H, N, M) int32."""
    H, D, N = rowoff.shape
    M = col.shape[2]
    bn, bm = _tile(N), _tile(M)
    Np, Mp = pl.cdiv(N, bn) * bn, pl.cdiv(M, bm) * bm
    Dp = pl.cdiv(D, UNROLL) * UNROLL
    bipolar = sa is not None
    # padding reads index 0 (in range): cum[stream 0, k=0, v=0] = 0, so padded
    # inner indices add nothing; padded rows/cols are sliced away
    ro = _pad_to(_pad_to(rowoff, 1, Dp), 2, Np)
    co = _pad_to(_pad_to(col, 1, Dp), 2, Mp)
    if bipolar:
        sa_p = _pad_to(_pad_to(sa, 1, Dp), 2, Np)
        sb_p = _pad_to(_pad_to(sb, 1, Dp), 2, Mp)
    else:
        sa_p = jnp.zeros((H, 1, bn), I32)
        sb_p = jnp.zeros((H, 1, bm), I32)
    T = cum.shape[0]
    kernel = functools.partial(_kernel, n_steps=Dp // UNROLL, bipolar=bipolar)
    sa_spec = (pl.BlockSpec((None, Dp, bn), lambda h, i, j: (h, 0, i)) if bipolar
               else pl.BlockSpec((None, 1, bn), lambda h, i, j: (h, 0, 0)))
    sb_spec = (pl.BlockSpec((None, Dp, bm), lambda h, i, j: (h, 0, j)) if bipolar
               else pl.BlockSpec((None, 1, bm), lambda h, i, j: (h, 0, 0)))
    params = {}
    if not interpret and _pltriton is not None:
        params["compiler_params"] = _pltriton.CompilerParams(num_warps=4, num_stages=1)
    out = pl.pallas_call(
        kernel,
        grid=(H, Np // bn, Mp // bm),
        in_specs=[
            pl.BlockSpec((None, Dp, bn), lambda h, i, j: (h, 0, i)),
            pl.BlockSpec((None, Dp, bm), lambda h, i, j: (h, 0, j)),
            sa_spec,
            sb_spec,
            pl.BlockSpec((T,), lambda h, i, j: (0,)),
        ],
        out_specs=pl.BlockSpec((None, bn, bm), lambda h, i, j: (h, i, j)),
        out_shape=jax.ShapeDtypeStruct((H, Np, Mp), I32),
        interpret=interpret,
        **params,
    )(ro, co, sa_p, sb_p, cum)
    return out[:, :N, :M]
