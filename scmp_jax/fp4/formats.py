"""e2m1 / e8m0 / e4m3fn encode and decode, nibble packing: pure jnp bit ops (SPEC.md section 9).

Encoders take float32 arrays and read their int32 bit patterns (no float
arithmetic, so XLA's flushing of subnormals cannot change a result); they
return uint8 codes. Decoders build the float32 bit pattern of a code.
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from .softfloat import bits, from_bits

__all__ = ["ROUNDINGS", "SCALE_DTYPES", "NAN_CODE", "e2m1_encode", "e2m1_encode_even",
           "e2m1_decode", "e8m0_encode",
           "e8m0_decode", "e4m3_encode", "e4m3_decode", "encode_scale", "decode_scale", "pack",
           "unpack"]

I32 = jnp.int32
U8 = jnp.uint8
ROUNDINGS = ("even", "zero", "down", "up")
SCALE_DTYPES = ("e8m0", "e4m3")
NAN_CODE = {"e8m0": 0xFF, "e4m3": 0x7F}
_INF = 0x7F800000



def _rne_shift(sig, sh):
    """Round half to even of ``sig / 2^sh``, int32, ``1 <= sh <= 30``."""
    q = sig >> sh
    rem = sig & ((I32(1) << sh) - 1)
    half = I32(1) << (sh - 1)
    return q + ((rem > half) | ((rem == half) & ((q & 1) == 1))).astype(I32)


def e2m1_encode(x, rounding: str = "even"):
    """float32 (...) -> uint8 codes in [0, 16): nearest e2m1 value, saturating at
    +-6, ties by ``rounding`` (even | zero | down | up, or its index in
    ``ROUNDINGS``, possibly traced), signed zero, NaN -> 7.

    Integer rounding of the significand: the e2m1 step is 1/2 below 2 (so
    ``|x| < 1`` rounds ``2|x|`` to 0..2), 1 in [2, 4) and 2 in [4, 8): one
    shift by ``sh = clip(149 - E, 22, 25)`` of the 24-bit significand gives the
    step count ``n`` (ties exact in ``rem``), and ``code = n + 2*(E - 127)``
    for ``E >= 127``, clamped to 7 (saturation, Inf)."""
    b = bits(x)
    mag = b & I32(0x7FFFFFFF)
    neg = b < 0
    e = mag >> 23
    sig = (mag & I32(0x7FFFFF)) | jnp.where(e == 0, I32(0), I32(0x800000))
    sh = jnp.clip(I32(149) - e, 22, 25)
    n = sig >> sh
    rem = sig & ((I32(1) << sh) - 1)
    half = I32(1) << (sh - 1)
    if isinstance(rounding, str):
        rounding = ROUNDINGS.index(rounding)
    r = jnp.asarray(rounding, I32)                       # a traced index: one program, 4 modes
    up = jnp.where(r == 0, (n & 1) == 1, jnp.where(r == 1, False, jnp.where(r == 2, neg, ~neg)))
    n = n + ((rem > half) | ((rem == half) & up)).astype(I32)
    code = jnp.minimum(n + 2 * jnp.clip(e - I32(127), 0, 3), I32(7)) | (neg.astype(I32) << 3)
    return jnp.where(mag > _INF, I32(7), code).astype(U8)


def e2m1_encode_even(x):
    """float32 (...) -> int32 codes in [0, 16), ties to even: the same codes as
    ``e2m1_encode(x, "even")`` with half the integer work (for kernels).

    One float32 addition does the rounding: for ``a = |x|`` in the binade
    region ``r = clip(E - 127, 0, 2)`` (step 2^(r-1)), ``a + 2^(22+r)`` rounds
    ``a`` to a multiple of the step, half to even, and its bits minus those
    of ``2^(22+r)`` are the step count ``n`` (``code = n + 2r``, clamped to 7:
    saturation, Inf). A subnormal ``a`` (flushed or not) gives ``n = 0``; NaN
    -> 7."""
    b = bits(x)
    mag = b & I32(0x7FFFFFFF)
    r = jnp.clip((mag >> 23) - I32(127), 0, 2)
    mb = (r + I32(149)) << 23                            # bits of 2^(22 + r)
    n = bits(from_bits(mag) + from_bits(mb)) - mb
    code = jnp.minimum(n + 2 * r, I32(7)) | ((b >> 28) & I32(8))
    return jnp.where(mag > _INF, I32(7), code)


def e2m1_decode(codes):
    """uint8 codes (low 4 bits) -> float32 (code 8 is -0)."""
    c = codes.astype(I32) & 15
    t = c & 7                                            # e << 1 | m
    # t = 1 -> 0.5 (126 << 23); t >= 2 -> 2^(e-1) (1 + m/2) = (126 << 23) + (t << 22)
    mag = jnp.where(t == 0, I32(0), I32(126 << 23) + ((t - (t == 1).astype(I32)) << 22))
    return from_bits(mag | ((c & 8) << 28))


def e8m0_encode(x):
    """float32 -> uint8: clamp to [2^-127, 2^127], nearest power of two with
    ties away from zero; NaN -> 0xFF (negatives and zeros clamp to byte 0)."""
    b = bits(x)
    nan = (b & I32(0x7FFFFFFF)) > _INF
    b = jnp.clip(jnp.where(b < 0, I32(0), b), 0x00400000, 0x7F000000)
    e, f = b >> 23, b & I32(0x7FFFFF)
    code = jnp.where(e == 0, (f >= 0x600000).astype(I32), e + (f >= 0x400000).astype(I32))
    return jnp.where(nan, I32(0xFF), code).astype(U8)


def e8m0_decode(codes):
    """uint8 -> float32 ``2^(c - 127)`` (c = 0 is the subnormal 2^-127); 0xFF -> NaN."""
    c = codes.astype(I32)
    b = jnp.where(c == 0, I32(0x00400000), c << 23)
    return from_bits(jnp.where(c == 0xFF, I32(0x7FC00000), b))


def e4m3_encode(x):
    """float32 -> uint8 e4m3fn: clamp to [-448, 448], round half to even
    (subnormals ``m * 2^-9``); NaN -> 0x7F with the input's sign bit."""
    b = bits(x)
    sign = jnp.where(b < 0, I32(0x80), I32(0))
    mag = b & I32(0x7FFFFFFF)
    nan = mag > _INF
    mag = jnp.minimum(mag, I32(0x43E00000))              # 448
    e, f = mag >> 23, mag & I32(0x7FFFFF)
    normal = _rne_shift(jnp.maximum(mag - I32(120 << 23), 0), I32(20))
    sig = jnp.where(e == 0, f, f | I32(0x800000))
    sub = _rne_shift(sig, jnp.minimum(I32(141) - jnp.maximum(e, 1), 25))
    code = jnp.where(mag >= I32(121 << 23), normal, sub) | sign
    return jnp.where(nan, I32(0x7F) | sign, code).astype(U8)


def e4m3_decode(codes):
    """uint8 -> float32 (bias 7; e = 0: ``m * 2^-9``); 0x7F / 0xFF -> NaN."""
    c = codes.astype(I32)
    e, m = (c >> 3) & 15, c & 7
    # subnormal m * 2^-9: normalize the 3-bit m (m = 0 stays 0)
    lz = lax.clz(m) - I32(29)                            # 0..2 for m = 4..1
    sub = jnp.where(m == 0, I32(0), ((I32(120) - lz) << 23) | (((m << lz) & 3) << 21))
    b = jnp.where(e == 0, sub, ((e + 120) << 23) | (m << 20)) | ((c >> 7) << 31)
    return from_bits(jnp.where((c & 0x7F) == 0x7F, I32(0x7FC00000), b))


def encode_scale(x, scale_dtype: str):
    return e8m0_encode(x) if scale_dtype == "e8m0" else e4m3_encode(x)


def decode_scale(codes, scale_dtype: str):
    return e8m0_decode(codes) if scale_dtype == "e8m0" else e4m3_decode(codes)


def pack(codes):
    """uint8 (..., K) -> (..., K/2): element 2j low nibble, 2j+1 high nibble of byte j."""
    c = codes.reshape(codes.shape[:-1] + (codes.shape[-1] // 2, 2)).astype(U8) & U8(15)
    return c[..., 0] | (c[..., 1] << U8(4))


def unpack(packed):
    """uint8 (..., K/2) -> codes (..., K)."""
    c = jnp.stack([packed & U8(15), packed >> U8(4)], axis=-1)
    return c.reshape(packed.shape[:-1] + (2 * packed.shape[-1],))
