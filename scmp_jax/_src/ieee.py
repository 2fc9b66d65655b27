"""IEEE float32 guards for XLA (shared by every op family).

* ``separate(x)``: identity the compiler can neither contract into an FMA
  with a following add nor reassociate across.
* ``sqrt(x)``: IEEE float32 square root, by the same rule (integer
  digit-by-digit square root off CPU, where XLA's is approximate).
* ``div(num, den)``: IEEE round-to-nearest-even float32 division. On CPU it is
  the native division behind an optimization barrier (XLA rewrites
  ``A / constant`` and ``A / broadcast(B)`` into ``A * (1 / B)``; both operands
  pass the barrier as one stacked array, so this also holds under ``vmap``,
  which broadcasts an unbatched divisor right before the divide); on GPU,
  where XLA emits ``div.full.f32`` (up to 2 ulp off), the quotient of every
  normal result is recomputed by integer long division (exact anywhere).
* ``abs_max_exact``, ``max_exact``, ``min_exact``, ``maximum_exact``: maxima and
  minima on integer images of the values, exact for subnormals, which XLA's
  CPU float compares flush (SPEC.md section 7.8).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from . import platform

__all__ = ["max_nan", "min_nan", "pmax_nan", "abs_max_exact", "max_exact", "min_exact",
           "maximum_exact", "separate",
           "div", "div_exact_int", "sqrt", "sqrt_exact_int", "soft_division", "use_soft"]

F32 = jnp.float32
I32 = jnp.int32
_FORCE_SOFT = None      # None: by backend


class soft_division:
    """Context manager: while tracing, ``div`` uses the integer division
    (``enabled=True``) or the native one (False) whatever the backend. Callers
    that cache traces must key them on ``use_soft()``."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        global _FORCE_SOFT
        self._prev, _FORCE_SOFT = _FORCE_SOFT, self.enabled
        return self

    def __exit__(self, *exc):
        global _FORCE_SOFT
        _FORCE_SOFT = self._prev


def max_nan(x, axis=None):
    """``jnp.max`` that propagates NaN: XLA CPU's vectorized reductions drop
    NaN (measured: a (70, 130) row max ignores it)."""
    return jnp.where(jnp.any(jnp.isnan(x), axis=axis), F32(jnp.nan).astype(x.dtype),
                     jnp.max(x, axis=axis))


def min_nan(x, axis=None):
    """``jnp.min`` that propagates NaN (see ``max_nan``)."""
    return jnp.where(jnp.any(jnp.isnan(x), axis=axis), F32(jnp.nan).astype(x.dtype),
                     jnp.min(x, axis=axis))


def _int_type(dtype):
    """The signed integer type of a float dtype's width."""
    return {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[jnp.dtype(dtype).itemsize]


def _key(x):
    """Integers of x's width in the order of the float values (subnormals exact,
    -0 == +0; NaN to be handled apart): XLA's CPU float compares flush them."""
    it = _int_type(x.dtype)
    b = lax.bitcast_convert_type(x, it)
    mag = b & jnp.iinfo(it).max
    return jnp.where(b < 0, -mag, mag)


def _unkey(k, dtype):
    """The float of a key (``_key``'s inverse; key 0 is +0)."""
    it = k.dtype
    b = jnp.where(k < 0, (-k) | jnp.iinfo(it).min, k)
    return lax.bitcast_convert_type(b.astype(it), dtype)


def abs_max_exact(x, axis=None):
    """``max |x|`` with subnormals compared exactly; NaN propagates (a NaN's
    magnitude bits exceed Inf's). Integer ops only, so it also runs in Triton
    kernels."""
    it = _int_type(x.dtype)
    mag = lax.bitcast_convert_type(x, it) & jnp.iinfo(it).max
    return lax.bitcast_convert_type(jnp.max(mag, axis=axis), x.dtype)


def max_exact(x, axis=None):
    """``max`` as IEEE orders the values, subnormals included (XLA's CPU max
    treats them as 0); NaN propagates; +0 for a maximum of zeros."""
    nan = jnp.any(jnp.isnan(x), axis=axis)
    v = _unkey(jnp.max(_key(x), axis=axis), x.dtype)
    return jnp.where(nan, jnp.asarray(jnp.nan, x.dtype), v)


def min_exact(x, axis=None):
    """``min`` counterpart of ``max_exact``."""
    nan = jnp.any(jnp.isnan(x), axis=axis)
    v = _unkey(jnp.min(_key(x), axis=axis), x.dtype)
    return jnp.where(nan, jnp.asarray(jnp.nan, x.dtype), v)


def maximum_exact(a, b):
    """Element-wise ``numpy.maximum`` (``b`` on ties such as -0 vs +0; NaN
    propagates), subnormals compared exactly."""
    dt = jnp.result_type(a, b)
    a, b = jnp.broadcast_arrays(jnp.asarray(a, dt), jnp.asarray(b, dt))
    nan = jnp.isnan(a) | jnp.isnan(b)
    out = jnp.where(_key(a) > _key(b), a, b)
    return jnp.where(nan, jnp.asarray(jnp.nan, out.dtype), out)


def pmax_nan(x, axes):
    """``lax.pmax`` over mesh ``axes`` that propagates NaN (flag reduced separately)."""
    nan = lax.pmax(jnp.isnan(x).astype(I32), axes) > 0
    return jnp.where(nan, F32(jnp.nan).astype(x.dtype), lax.pmax(x, axes))


def separate(x):
    """Identity, opaque to FMA contraction and algebraic rewrites: an integer
    select on one NaN bit pattern sits between producer and consumers."""
    bits = lax.bitcast_convert_type(x, I32)
    bits = jnp.where(bits == I32(-1), I32(-2), bits)
    return lax.bitcast_convert_type(bits, F32)


def _unpack(x):
    """|x| of a finite non-zero float32 as (mantissa in [2**23, 2**24), exponent)
    with x = m * 2**(e - 150); subnormals normalized."""
    bits = lax.bitcast_convert_type(x, I32) & I32(0x7FFFFFFF)
    exp = bits >> 23
    frac = bits & I32(0x7FFFFF)
    sub = exp == 0
    # subnormal: value = frac * 2**-149; shift frac up to put its top bit at 23
    shift = jnp.where(sub, lax.clz(frac) - I32(8), I32(0))
    m = jnp.where(sub, frac << shift, frac | I32(0x800000))
    e = jnp.where(sub, I32(1) - shift, exp)
    return m, e


def div_exact_int(num, den, approx):
    """Correctly rounded ``num / den`` for every normal result, from integer
    long division of the mantissas; ``approx`` (any faithful quotient) is
    returned where the result is zero, subnormal, infinite or NaN."""
    special = ~(jnp.isfinite(num) & jnp.isfinite(den)) | (num == 0) | (den == 0)
    safe_n = jnp.where(special, F32(1), num)
    safe_d = jnp.where(special, F32(1), den)
    ma, ea = _unpack(safe_n)
    mb, eb = _unpack(safe_d)
    lt = ma < mb
    r = jnp.where(lt, ma << 1, ma)             # mb <= r < 2 mb < 2**25
    e = ea - eb - lt.astype(I32)               # unbiased exponent of the quotient
    q = jnp.zeros_like(ma)
    for _ in range(25):                        # 24 mantissa bits + the round bit
        bit = r >= mb
        r = jnp.where(bit, r - mb, r) << 1
        q = (q << 1) | bit.astype(I32)
    mant, rnd = q >> 1, q & 1
    up = (rnd == 1) & ((r != 0) | ((mant & 1) == 1))
    mant = mant + up.astype(I32)
    carry = mant == I32(1 << 24)
    mant = jnp.where(carry, mant >> 1, mant)
    E = e + I32(127) + carry.astype(I32)
    sign = (lax.bitcast_convert_type(safe_n, I32) ^ lax.bitcast_convert_type(safe_d, I32)) & \
        I32(-2147483648)
    exact = lax.bitcast_convert_type(sign | (E << 23) | (mant & I32(0x7FFFFF)), F32)
    inf = lax.bitcast_convert_type(sign | I32(0x7F800000), F32)
    out = jnp.where(E >= 255, inf, exact)
    return jnp.where(special | (E <= 0), approx, out)


def use_soft() -> bool:
    """Integer division? Forced by ``soft_division``, else off the CPU
    (``platform.soft_division_default``)."""
    return platform.soft_division_default() if _FORCE_SOFT is None else _FORCE_SOFT


def div(num, den):
    """IEEE float32 ``num / den`` with broadcasting (see module docstring).
    Results that are subnormal are only faithful (not needed by SPEC: they
    quantize to 0)."""
    num, den = jnp.broadcast_arrays(jnp.asarray(num, F32), jnp.asarray(den, F32))
    # one stacked array through the barrier: under vmap an unbatched operand is
    # broadcast by the stack, before the barrier, so XLA never sees a divisor
    # broadcast(B) it could turn into a reciprocal product
    both = lax.optimization_barrier(jnp.stack([num, den]))
    num, den = both[0], both[1]
    q = num / den
    if use_soft():
        q = div_exact_int(num, den, q)
    return separate(q)


def sqrt_exact_int(x, approx):
    """Correctly rounded ``sqrt(x)`` for positive finite x (subnormals too),
    by digit-by-digit integer square root; ``approx`` elsewhere (0, <0, inf, NaN)."""
    special = ~jnp.isfinite(x) | (x <= 0)
    m, e = _unpack(jnp.where(special, F32(1), x))      # x = m * 2**(e - 150)
    # radicand R = m * 2**t with (e - 150 - t) even, 49 or 50 bits
    t = jnp.where(((e - 150 - 26) & 1) == 0, I32(26), I32(25))
    rem = jnp.zeros_like(m)
    root = jnp.zeros_like(m)
    for i in range(25):                                 # 24 mantissa bits + round bit
        shift = I32(48 - 2 * i) - t                     # pair (49-2i, 48-2i) of R
        pair = jnp.where(shift >= 0, (m >> jnp.maximum(shift, 0)) & 3,
                         jnp.where(shift == -1, (m << 1) & 3, I32(0)))
        rem = (rem << 2) | pair
        trial = (root << 2) | 1
        take = rem >= trial
        rem = jnp.where(take, rem - trial, rem)
        root = (root << 1) | take.astype(I32)
    mant = (root >> 1) + (root & 1)                     # no exact ties for sqrt
    carry = mant == I32(1 << 24)
    mant = jnp.where(carry, mant >> 1, mant)
    E = I32(24 + 127) + ((e - 150 - t) >> 1) + carry.astype(I32)
    out = lax.bitcast_convert_type((E << 23) | (mant & I32(0x7FFFFF)), F32)
    return jnp.where(special, approx, out)


def sqrt(x):
    """IEEE float32 square root (integer digit-by-digit off CPU)."""
    x = jnp.asarray(x, F32)
    y = jnp.sqrt(x)
    if use_soft():
        y = sqrt_exact_int(x, y)
    return separate(y)
