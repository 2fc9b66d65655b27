"""e2m1 codes by thresholds instead of a division per element (SPEC.md section 9,
ties to even), for the fp4 quantize kernels of ``pallas``.

With ``p = 2^d * gs`` exactly (e8m0 scales: every group), ``RN(|x| / p)`` is
``RN(z / gs)`` for ``z = |x| * 2^-d`` (exact), and the code of a quotient is
monotone in ``z``: code = #{i : z >= c_i} for the 7 smallest floats ``c_i``
whose quotient ``RN(c_i / gs)`` passes the i-th e2m1 midpoint (reaching it,
where the tie goes up). The ``c_i`` depend on ``gs`` only: found once per
call, outside the kernel, by exact (softfloat) division of the floats around
``t_i * gs``; in the kernel each element is scaled by its group's ``2^-d``
and compared with them as an integer bit pattern.

e4m3 scales (NVFP4) are ``2^e * (1 + j/8)``: the same holds per group with
one of 8 threshold sets, for ``gs_j = RN((1 + j/8) * gs)`` (``threshold_sets``;
only for concrete scalars, found at trace time).

``p_ref`` is the kernels' int32 params vector (``pallas_params.params``): [1] the
bits of ``gs``, [4] the ok flag and [5:12] ``c_0..c_6`` of ``thresholds``;
with sets, [16:81] ``threshold_sets``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from . import softfloat as SF

__all__ = ["Arith", "SOFT", "thresholds", "threshold_codes", "use_thresholds", "threshold_sets",
           "set_index", "use_threshold_sets", "threshold_set_codes", "SETS_AT", "SETS_LEN"]

F32 = jnp.float32
I32 = jnp.int32
_INF = 0x7F800000


class Arith(NamedTuple):
    """The float32 arithmetic ``thresholds`` / ``threshold_sets`` run on: an array
    module and correctly rounded ``mul`` / ``div`` (NaN results the canonical
    ``0x7FC00000``) with bit casts. ``SOFT``: ``softfloat`` on jnp (traced, any
    backend); ``pallas_params`` has the host's NumPy one for concrete scalars."""
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

    GPU note (H200): this form (one PTX ``mul.rn`` per element; the kernel jaxpr
    of commit 12e5e1f) ran at 2115 GB/s = 66 % of copy (session 5); two
    integer-only forms (``|x| >= c_i * 2^d`` with per-group thresholds, then
    ``bits(|x|) - (d << 23) >= c_i``) ran at ~1650 GB/s (session 6), slower
    than dividing every element. Session 9 (static thresholds, 2x1024/2 tiles):
    comparing as float32, or counting the 7 comparisons instead of the binary
    search, ran at the same speed (70.7-70.9 % of copy at 4x512/2).

    ``c``: the 7 thresholds as Python ints when known at trace time (compile-time
    constants in the kernel), else None (read from ``p_ref``)."""
    c = [p_ref[5 + i] for i in range(7)] if c is None else [I32(v) for v in c]
    return _codes_by(lo, hi, _down(p, p_ref[1]), c, mul)


def _codes_by(lo, hi, down, c, mul):
    """Codes of the halves (BR, NG, H) from the per-group ``2^-d`` (BR, NG) and the
    7 thresholds (scalars, or (BR, NG) per group), by a binary search."""
    down = jnp.broadcast_to(down[:, :, None], lo.shape)
    c = [t[:, :, None] if jnp.ndim(t) == 2 else t for t in c]

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


# ---- e4m3 scales: one threshold set per scale significand ------------------------------

SETS_AT = 16        # params offset: [16] ok, [17 + 8j] bits of gs_j, [18 + 8j + i] c_{j,i}
SETS_LEN = 1 + 8 * 8


def threshold_sets(gs, rounding, ar: Arith = SOFT):
    """float32 scalar ``gs``, rounding index -> int32 (65,): [ok, then for j = 0..7
    the bits of ``gs_j = RN((1 + j/8) * gs)`` and ``thresholds(gs_j)``'s c_0..c_6].

    An e4m3 scale (normal or subnormal) is ``2^e * (1 + j/8)`` for its top three
    significand bits ``j``, so a group's divisor ``p = RN(scale * gs)``, when
    normal, is ``2^e * gs_j`` exactly: the e8m0 argument holds per group with
    the group's set ``j`` (``use_threshold_sets``). ok: every set found."""
    xp = ar.xp
    ok, rows = xp.asarray(True), []
    for j in range(8):
        gj = ar.mul(xp.float32(1 + j / 8), gs)
        t = thresholds(gj, rounding, ar)
        ok = ok & (t[0] == 1)
        rows += [xp.asarray(ar.bits(gj)).reshape(1), t[1:]]
    return xp.concatenate([ok.astype(xp.int32).reshape(1)] + rows)


def set_index(scale_deq):
    """Decoded e4m3 scales float32 (BR, NG) -> their set ``j`` (top 3 significand bits)."""
    return (SF.bits(scale_deq) >> 20) & I32(7)


def _set_base(j):
    """Params index of set ``j``'s ``gs_j`` bits (its ``c_i`` follow)."""
    return SETS_AT + 1 + 8 * j


def use_threshold_sets(p, j, p_ref):
    """Scalar bool: every ``p`` of the block is a normal ``2^d * gs_j`` of its
    group's set (same significand as ``gs_j``) with ``2^-d`` normal (a zero or
    NaN scale fails: such blocks divide). The caller knows the sets are ok."""
    return jnp.min(_fits(p, p_ref[_set_base(j)]).astype(I32)) == 1


def threshold_set_codes(lo, hi, p, j, p_ref, mul):
    """(codes lo, codes hi) int32 for a block where ``use_threshold_sets`` holds:
    ``threshold_codes`` with each group's ``gs_j`` and thresholds ``c_{j,i}``
    (gathered from ``p_ref`` per group)."""
    base = _set_base(j)
    return _codes_by(lo, hi, _down(p, p_ref[base]), [p_ref[base + 1 + i] for i in range(7)], mul)
