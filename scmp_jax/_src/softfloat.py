"""Exact IEEE binary32 multiply, divide, add and subtract on int32 bit patterns
(SPEC.md sections 7.8 and 9).

XLA on CPU runs with denormals flushed (inputs and results: ``1e-40 > 0`` is
False under jit) and XLA on GPU divides approximately, but the contract keeps
float32 subnormals (the fp4 e8m0 scale ``2^-127`` is one; SmoothQuant and the
classifiers meet them in user data). ``mul``, ``div``, ``add`` and ``sub``
take float32 arrays (broadcasting) and return the correctly rounded (round
half to even) float32 result, subnormals, zeros, Inf and NaN included, using
only integer ops, so CPU and GPU give NumPy's bits. NaN results are the
canonical quiet NaN ``0x7FC00000``.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

__all__ = ["mul", "div", "add", "sub", "bits", "from_bits"]

F32 = jnp.float32
I32 = jnp.int32
_INF = 0x7F800000
_QNAN = 0x7FC00000


def bits(x):
    """float32 -> int32 bit pattern."""
    return lax.bitcast_convert_type(jnp.asarray(x, F32), I32)


def from_bits(b):
    """int32 bit pattern -> float32."""
    return lax.bitcast_convert_type(b, F32)


def _unpack(b):
    """|x| of finite ``x`` as ``m * 2^e``, ``m`` in [2^23, 2^24) (0 for zero)."""
    mag = b & I32(0x7FFFFFFF)
    ef = mag >> 23
    f = mag & I32(0x7FFFFF)
    m = jnp.where(ef == 0, f, f | I32(0x800000))
    sh = jnp.where(m == 0, I32(0), lax.clz(m) - I32(8))
    return m << sh, jnp.maximum(ef, 1) - I32(150) - sh


def _class(b):
    mag = b & I32(0x7FFFFFFF)
    return mag > _INF, mag == _INF, mag == 0           # nan, inf, zero


def _round_pack(m, e, sticky):
    """Bits of ``(m + d) * 2^e`` rounded half to even, ``0 <= m < 2^30``, ``d``
    in [0, 1) non-zero iff ``sticky``; subnormal results and overflow to Inf."""
    n = I32(32) - lax.clz(m)                            # bit length of m
    s = jnp.maximum(n - 24, -149 - e)                   # bits to drop (< 0: exact shift left)
    sr = jnp.clip(s, 0, 31)
    q = m >> sr
    rem = m & ((I32(1) << sr) - 1)
    half = jnp.where(sr > 0, I32(1) << jnp.maximum(sr - 1, 0), I32(0))
    up = (sr > 0) & ((rem > half) | ((rem == half) & (sticky | ((q & 1) == 1))))
    q = jnp.where(s > 0, q + up.astype(I32), m << jnp.clip(-s, 0, 31))
    E = e + s + 149                                     # biased exponent - 1 (0: subnormal)
    out = (jnp.clip(E, 0, 253) << 23) + q               # q carries the hidden bit
    out = jnp.where((E > 253) | (out >= _INF), I32(_INF), out)
    return jnp.where(m == 0, I32(0), out)


def _finish(res, sign, nan, inf, zero):
    res = jnp.where(zero, I32(0), res)
    res = jnp.where(inf, I32(_INF), res) | sign
    return jnp.where(nan, I32(_QNAN), res)


def _operands(a, b):
    """Bit patterns, classes (NaN, Inf, zero) and unpacked (mantissa, exponent)
    of both operands, broadcast."""
    a, b = jnp.broadcast_arrays(bits(a), bits(b))
    return a, b, _class(a), _class(b), _unpack(a), _unpack(b)


def mul(a, b):
    """float32 ``a * b``, correctly rounded, subnormals kept (broadcasting)."""
    a, b, (na, ia, za), (nb, ib, zb), (ma, ea), (mb, eb) = _operands(a, b)
    ah, al, bh, bl = ma >> 12, ma & 0xFFF, mb >> 12, mb & 0xFFF
    mid = ah * bl + al * bh                             # ma*mb = hi*2^24 + mid*2^12 + lo
    lo = al * bl + ((mid & 0xFFF) << 12)
    hi = ah * bh + (mid >> 12) + (lo >> 24)             # product = hi * 2^24 + lo, hi < 2^24
    lo = lo & I32(0xFFFFFF)
    m = (hi << 6) | (lo >> 18)
    res = _round_pack(m, ea + eb + 18, (lo & 0x3FFFF) != 0)
    sign = (a ^ b) & I32(-2147483648)
    return from_bits(_finish(res, sign, na | nb | (ia & zb) | (za & ib), ia | ib, za | zb))


def div(a, b):
    """float32 ``a / b``, correctly rounded, subnormals kept (broadcasting)."""
    a, b, (na, ia, za), (nb, ib, zb), (ma, ea), (mb, eb) = _operands(a, b)
    mb = jnp.where(mb == 0, I32(1 << 23), mb)          # keep the loop finite for x / 0
    lt = ma < mb
    r = jnp.where(lt, ma << 1, ma)                      # r / mb in [1, 2)
    q = jnp.zeros_like(r)
    for _ in range(26):                                 # 24 bits + guard + round
        bit = r >= mb
        r = jnp.where(bit, r - mb, r) << 1
        q = (q << 1) | bit.astype(I32)
    res = _round_pack(q, ea - eb - lt.astype(I32) - 25, r != 0)
    sign = (a ^ b) & I32(-2147483648)
    return from_bits(_finish(res, sign, na | nb | (za & zb) | (ia & ib), ia | zb, za | ib))


def add(a, b):
    """float32 ``a + b``, correctly rounded, subnormals kept (broadcasting).
    An exact zero sum is +0 unless both operands are -0."""
    a, b, (na, ia, za), (nb, ib, zb), (ma, ea), (mb, eb) = _operands(a, b)
    swap = (eb > ea) | ((eb == ea) & (mb > ma))         # x: the larger magnitude
    mx, ex = jnp.where(swap, mb, ma), jnp.where(swap, eb, ea)
    my, ey = jnp.where(swap, ma, mb), jnp.where(swap, ea, eb)
    sx = jnp.where(swap, b, a) & I32(-2147483648)
    X, Y = mx << 3, my << 3                             # three guard bits
    sh = jnp.minimum(ex - ey, 31)
    sticky = (Y & ((I32(1) << sh) - 1)) != 0
    Ys = (Y >> sh) | sticky.astype(I32)                 # the dropped bits jammed into bit 0
    m = jnp.where(((a ^ b) < 0), X - Ys, X + Ys)        # < 2^28; X >= Ys
    res = _round_pack(m, ex - 3, jnp.zeros_like(sticky)) | jnp.where(m == 0, I32(0), sx)
    zero = za & zb
    res = jnp.where(zero, a & b & I32(-2147483648), res)     # -0 + -0 = -0, else +0
    res = jnp.where(za & ~zb, b, jnp.where(zb & ~za, a, res))
    inf_sign = jnp.where(ia, a, b) & I32(-2147483648)
    res = jnp.where(ia | ib, I32(_INF) | inf_sign, res)
    nan = na | nb | (ia & ib & ((a ^ b) < 0))
    return from_bits(jnp.where(nan, I32(_QNAN), res))


def sub(a, b):
    """float32 ``a - b``, correctly rounded, subnormals kept (``a + (-b)``)."""
    a, b = jnp.broadcast_arrays(bits(a), bits(b))
    return add(from_bits(a), from_bits(b ^ I32(-2147483648)))
