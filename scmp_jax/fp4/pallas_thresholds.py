"""e2m1 codes by thresholds instead of a division per element (SPEC.md section 9,
ties to even), for the fp4 quantize kernels of ``pallas``.

With ``p = 2^k * gs`` exactly (e8m0 scales: every group), ``RN(x / p)`` is
``RN(z / gs)`` for ``z = |x| * 2^-k`` (exact), and the code of a quotient is
monotone in ``z``: code = #{i : z >= c_i} for the 7 smallest ``c_i`` whose
quotient rounds past the i-th e2m1 midpoint (reaching it, where the tie goes
up). The ``c_i`` depend on ``gs`` only: found once per call, outside the
kernel, by exact (softfloat) division of the floats around ``t_i * gs``.

``p_ref`` is the kernels' int32 params vector (``pallas._params``): [1] the
bits of ``gs``, [4] the ok flag and [5:12] ``c_0..c_6`` of ``thresholds``.
"""
from __future__ import annotations

import jax.numpy as jnp

from . import softfloat as SF
from .pallas_matmul import _mul

__all__ = ["thresholds", "threshold_codes", "use_thresholds"]

F32 = jnp.float32
I32 = jnp.int32
_INF = 0x7F800000

_MIDS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
_TIE_UP = (False, True, False, True, False, True, False)   # even: up iff the lower code is odd
_WINDOW = 4


def thresholds(gs, rounding):
    """float32 scalar ``gs``, rounding index -> int32 (8,): [ok, c_0..c_6] (bit
    patterns of positive floats). ok = 1 when rounding is even, every ``c_i``
    was bracketed by its window (first candidate below, last at or above) and
    ``c_0`` above the least normal and ``c_6`` finite (then ``z`` underflowing or overflowing
    cannot change a code)."""
    mids = jnp.asarray(_MIDS, F32)
    base = SF.bits(SF.mul(mids, jnp.broadcast_to(gs, mids.shape)))
    cand = base[:, None] + jnp.arange(-_WINDOW, _WINDOW + 1, dtype=I32)[None, :]
    cand = jnp.clip(cand, 0, I32(_INF))
    q = SF.bits(SF.div(SF.from_bits(cand), jnp.broadcast_to(gs, cand.shape)))
    mb = SF.bits(mids)[:, None]
    past = jnp.where(jnp.asarray(_TIE_UP)[:, None], q >= mb, q > mb)       # monotone in cand
    c = jnp.min(jnp.where(past, cand, I32(_INF)), axis=1)
    ok = ((rounding == 0) & jnp.all(~past[:, 0] & past[:, -1]) & (c[0] > I32(1 << 23))
          & (c[-1] < I32(_INF)))
    return jnp.concatenate([ok.astype(I32)[None], c])


def threshold_codes(lo, hi, p, p_ref, interpret):
    """(codes lo, codes hi) int32 by thresholds, for a block whose every ``p`` is
    ``2^k * gs`` with ``2^-k`` normal (the caller's check)."""
    e = SF.bits(p) >> 23
    shape = lo.shape
    k = jnp.clip(I32(127) + (p_ref[1] >> 23) - e, 1, 254)
    down = jnp.broadcast_to(SF.from_bits(k << 23)[:, :, None], shape)        # 2^-k
    c = [p_ref[5 + i] for i in range(7)]

    def code(v):
        b = SF.bits(v)
        z = SF.bits(_mul(SF.from_bits(b & I32(0x7FFFFFFF)), down, interpret))
        s2 = z >= c[3]
        s1 = z >= jnp.where(s2, c[5], c[1])
        s0 = z >= jnp.where(s2, jnp.where(s1, c[6], c[4]), jnp.where(s1, c[2], c[0]))
        n = (s2.astype(I32) << 2) | (s1.astype(I32) << 1) | s0.astype(I32)
        return n | ((b >> 28) & I32(8))

    return code(lo), code(hi)


def use_thresholds(p, amax, p_ref):
    """Scalar bool: thresholds found (``p_ref[4]``) and every ``p`` of the block is
    ``gs`` times a power of two ``2^k`` with ``2^-k`` normal, but for all-zero
    groups (any divisor gives them code 0; ``threshold_codes`` clamps their ``k``)."""
    pb, gb = SF.bits(p), p_ref[1]
    e, eg = pb >> 23, gb >> 23
    k = I32(127) + eg - e
    fit = (((pb ^ gb) & I32(0x7FFFFF)) == 0) & (e >= 1) & (e <= 254) & (k >= 1) & (k <= 254)
    return (p_ref[4] == 1) & (jnp.min((fit | (amax == 0)).astype(I32)) == 1)
