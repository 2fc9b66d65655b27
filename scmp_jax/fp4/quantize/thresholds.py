"""e2m1 codes by thresholds instead of a division per element (SPEC.md section 9,
ties to even), for the fp4 quantize kernels (``quantize.pallas``,
``quantize.encode``).

With ``p = 2^d * gs`` exactly (e8m0 scales: every group), ``RN(|x| / p)`` is
``RN(z / gs)`` for ``z = |x| * 2^-d`` (exact), and the code of a quotient is
monotone in ``z``: code = #{i : z >= c_i} for the 7 smallest floats ``c_i``
whose quotient ``RN(c_i / gs)`` passes the i-th e2m1 midpoint (reaching it,
where the tie goes up). The ``c_i`` depend on ``gs`` only: found once per
call, outside the kernel, by exact (softfloat) division of the floats around
``t_i * gs``; in the kernel each element is scaled by its group's ``2^-d``
and compared with them as an integer bit pattern.

``p_ref`` is the kernels' int32 params vector (``quantize.params.params``): [1]
the bits of ``gs``, [4] the ok flag and [5:12] ``c_0..c_6`` of ``thresholds``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from .. import softfloat as SF

__all__ = ["Arith", "SOFT", "thresholds", "threshold_codes", "use_thresholds"]

F32 = jnp.float32
I32 = jnp.int32
_INF = 0x7F800000


class Arith(NamedTuple):
    """The float32 arithmetic ``thresholds`` runs on: an array module and
    correctly rounded ``mul`` / ``div`` (NaN results the canonical
    ``0x7FC00000``) with bit casts. ``SOFT``: ``softfloat`` on jnp (traced, any
    backend); ``quantize.params`` has the host's NumPy one for concrete scalars."""
    xp: Any
    mul: Callable
    div: Callable
    bits: Callable
    from_bits: Callable


SOFT = Arith(jnp, SF.mul, SF.div, SF.bits, SF.from_bits)

_MIDS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)
_TIE_UP = (False, True, False, True, False, True, False)   # even: up iff the lower code is odd
_WINDOW = 4


def thresholds(gs, rounding, ar: Arith = SOFT):
    """float32 scalar ``gs``, rounding index -> int32 (8,): [ok, c_0..c_6] (bit
    patterns of positive floats). ok = 1 when rounding is even, every ``c_i``
    was bracketed by its window (first candidate below, last at or above) and
    ``c_0`` above the least normal and ``c_6`` finite (then ``z`` underflowing or overflowing
    cannot change a code). ``ar``: the arithmetic (``Arith``)."""
    xp, i32 = ar.xp, ar.xp.int32
    mids = xp.asarray(_MIDS, xp.float32)
    base = ar.bits(ar.mul(mids, xp.broadcast_to(gs, mids.shape)))
    cand = base[:, None] + xp.arange(-_WINDOW, _WINDOW + 1, dtype=i32)[None, :]
    cand = xp.clip(cand, 0, i32(_INF))
    q = ar.bits(ar.div(ar.from_bits(cand), xp.broadcast_to(gs, cand.shape)))
    mb = ar.bits(mids)[:, None]
    past = xp.where(xp.asarray(_TIE_UP)[:, None], q >= mb, q > mb)       # monotone in cand
    c = xp.min(xp.where(past, cand, i32(_INF)), axis=1)
    ok = ((xp.asarray(rounding) == 0) & xp.all(~past[:, 0] & past[:, -1])
          & (c[0] > i32(1 << 23)) & (c[-1] < i32(_INF)))
    return xp.concatenate([xp.asarray(ok).astype(i32)[None], c])


def _k(e, gb):
    """Biased exponent ``e`` of ``p = 2^d * gs``, bits ``gb`` of ``gs`` -> ``127 - d``,
    the biased exponent of ``2^-d``."""
    return I32(127) + (gb >> 23) - e


def _down(p, gb):
    """Per group ``p = 2^d * gs`` (``gb``: bits of ``gs``, scalar or per group) ->
    ``2^-d`` as float32 (clamped to a normal power of two; groups outside that
    range are not eligible, but for all-zero groups, whose codes are 0 whatever
    the factor)."""
    return SF.from_bits(jnp.clip(_k(SF.bits(p) >> 23, gb), 1, 254) << 23)


def _fits(p, gb):
    """Per group: ``p`` is a normal ``2^d * gs`` (same significand as ``gs``, bits
    ``gb``) with ``2^-d`` normal."""
    pb = SF.bits(p)
    e = pb >> 23
    k = _k(e, gb)
    return (((pb ^ gb) & I32(0x7FFFFF)) == 0) & (e >= 1) & (e <= 254) & (k >= 1) & (k <= 254)


def threshold_codes(lo, hi, p, p_ref, mul, c=None):
    """(codes lo, codes hi) int32 by thresholds, for a block where ``use_thresholds``
    holds: ``z = |x| * 2^-d`` (``mul``: the kernels' IEEE multiply; exact unless
    ``z`` is subnormal, then below ``c_0`` either way, or overflows to Inf, above
    ``c_6`` either way) compared with the 7 scalar thresholds ``c_i`` on bit
    patterns.

    One ``mul.rn`` per element, compared as integers by a binary search: the
    fastest of the measured forms (docs/decisions.md).

    ``c``: the 7 thresholds as Python ints when known at trace time (compile-time
    constants in the kernel), else None (read from ``p_ref``)."""
    c = [p_ref[5 + i] for i in range(7)] if c is None else [I32(v) for v in c]
    return _codes_by(lo, hi, _down(p, p_ref[1]), c, mul)


def _codes_by(lo, hi, down, c, mul):
    """Codes of the halves (BR, NG, H) from the per-group ``2^-d`` (BR, NG) and the
    7 scalar thresholds, by a binary search."""
    down = jnp.broadcast_to(down[:, :, None], lo.shape)

    def code(v):
        b = SF.bits(v)
        z = SF.bits(mul(SF.from_bits(b & I32(0x7FFFFFFF)), down))
        s2 = z >= c[3]
        s1 = z >= jnp.where(s2, c[5], c[1])
        s0 = z >= jnp.where(s2, jnp.where(s1, c[6], c[4]), jnp.where(s1, c[2], c[0]))
        n = (s2.astype(I32) << 2) | (s1.astype(I32) << 1) | s0.astype(I32)
        return n | ((b >> 28) & I32(8))

    return code(lo), code(hi)


def use_thresholds(p, amax, p_ref, known_ok=False):
    """Scalar bool: thresholds found (``p_ref[4]``) and every ``p`` of the block is
    a normal ``2^d * gs`` (same significand as ``gs``) with ``2^-d`` normal, but
    for all-zero groups (any divisor gives them code 0).

    Then for every float ``X >= 0``: ``RN(X / p)`` passes the i-th midpoint iff
    ``RN(X * 2^-d) >= c_i`` (``X / p`` and ``(X * 2^-d) / gs`` are the same real,
    the quotient is monotone, and rounding ``X * 2^-d`` only happens below the
    least normal, under ``c_0``, or at overflow, above ``c_6``)."""
    every = jnp.min((_fits(p, p_ref[1]) | (amax == 0)).astype(I32)) == 1
    return every if known_ok else (p_ref[4] == 1) & every
