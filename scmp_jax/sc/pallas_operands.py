"""Pallas (Triton backend) row expansion of the dense counts' Y operand
(SPEC.md section 4; ``sc.dense``), one chunk at a time.

``y(co, h0, d0, ...)`` writes the same int32 words as ``dense._y_operand`` for
heads ``h0 .. h0 + hc`` and inner indices ``d0 .. d0 + dc`` of the whole
row-major codes ``co`` ``(H, M, Dp)`` (``dense.y_codes``; no sliced copy of
the chunk). A row of the result is ``dc * W / 4`` words (``d``-major: ``d``'s
``W`` bytes, ``dense.width``) then ``dc`` correction words, ``(hc, M, (W / 4 +
1) dc)``; its int8 view is the GEMM operand.

Each program writes a ``(bm, bw)`` block of words: ``bw`` consecutive words of
``bm`` rows, all of the one-hot part or all of the correction part, from the
rows' codes (gathered, L1-resident) by shifts and selects. XLA wrote the same
words at the same speed (3.3 TB/s on the H200) but first materialised the
decoded codes in a separate pass (about 4 us per chunk at per_head, session
15). The same kernel for X (a gather of table words per output word) measured
slower than XLA's ``take`` (203 vs 175 us at per_head) and was dropped. Where
the blocks do not tile (``fits``), ``dense`` keeps XLA's builder.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from .._backend import triton_params

__all__ = ["fits", "y"]

I32 = jnp.int32
_BM, _BW = 16, 128


def _pow2_part(n: int, top: int) -> int:
    return min(top, n & -n)


def fits(R: int, dc: int) -> bool:
    """Blocks of at least 8 rows x 32 words tile the chunk's rows and words."""
    return _pow2_part(R, _BM) >= 8 and _pow2_part(dc, _BW) >= 32


def _kernel(hd_ref, co_ref, o_ref, *, M, Dp, dc, wd):
    h, i, t = pl.program_id(0), pl.program_id(1), pl.program_id(2)
    bm, bw = o_ref.shape[-2:]
    hot = t < (wd * dc) // bw
    q = t * bw + jax.lax.broadcasted_iota(I32, (1, bw), 1)           # word of the row
    d = jnp.where(hot, q // wd, q - wd * dc)                          # its inner index
    rows = i * bm + jax.lax.broadcasted_iota(I32, (bm, 1), 0)
    code = co_ref[((hd_ref[0] + h) * M + rows) * Dp + hd_ref[1] + d]   # (bm, bw) gather
    j = code & 127                              # dense._y_operand, word by word
    sb = ((code >> 7) & 1) * (1 - 2 * ((code >> 8) & 1))
    eb = sb * ((code >> 9) & 1)
    word = jnp.where((j >> 2) == q % wd, (sb & 255) << (8 * (j & 3)), 0)
    extra = ((127 * sb) & 255) | ((sb & 255) << 8) | ((eb & 255) << 16)
    o_ref[...] = jnp.where(hot, word, extra)


def y(co, h0, d0, *, hc: int, dc: int, W: int, interpret: bool):
    """``co (H, M, Dp)`` int32 codes, heads from ``h0``, inner indices from ``d0``
    -> (hc, M, (W / 4 + 1) dc) int32 words."""
    H, M, Dp = co.shape
    bm, bw = _pow2_part(M, _BM), _pow2_part(dc, _BW)
    return pl.pallas_call(
        functools.partial(_kernel, M=M, Dp=Dp, dc=dc, wd=W // 4),
        grid=(hc, M // bm, (W // 4 + 1) * dc // bw),
        in_specs=[pl.BlockSpec((2,), lambda h, i, t: (0,)),
                  pl.BlockSpec((H * M * Dp,), lambda h, i, t: (0,))],
        out_specs=pl.BlockSpec((None, bm, bw), lambda h, i, t: (h, i, t)),
        out_shape=jax.ShapeDtypeStruct((hc, M, (W // 4 + 1) * dc), I32),
        interpret=interpret,
        **triton_params(interpret, warps=4),
    )(jnp.stack([jnp.asarray(h0, I32), jnp.asarray(d0, I32)]), co.reshape(-1))
