"""fp4 quantization inside a kernel (SPEC.md section 9): a block's group scales
and e2m1 codes from its float32 halves, shared by the quantize kernels
(``quantize.pallas``) and the kernels that quantize their activation
themselves (``linear.gemv``, ``linear.dequant``).

Encoders are the integer formulas of ``formats``; SPEC's two float32 roundings
(``amax / (ss*gs)``, ``x / (scale_deq*gs)``) and the product ``scale_deq *
gs`` are ``kernel.div`` / ``kernel.mul`` (PTX on the GPU, softfloat in
interpret mode); a block whose divisors are all powers of two multiplies by
the exact reciprocal instead (same bits). e8m0 blocks whose ``scale_deq *
gs`` are all ``2^d * gs`` compare ``|x|`` with 7 thresholds per group
(``thresholds``).
"""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .. import formats as FM
from .. import kernel as K
from .. import softfloat as SF
from . import thresholds as TH

__all__ = ["group_scales", "halves", "quotients", "encode", "codes_of", "dequant_values",
           "scalars", "params_in_kernel", "group_view"]

F32 = jnp.float32
I32 = jnp.int32
BF16 = jnp.bfloat16
_INF = 0x7F800000


def group_scales(amax, p_ref, scale_dtype, interpret):
    """amax bits (BR, n) int32 -> (scale bytes int32, ``scale_deq * gs`` float32):
    ``scale = amax / (scale_scale * gs)`` encoded (NaN byte for non-finite groups)."""
    prod, gs = SF.from_bits(p_ref[0]), SF.from_bits(p_ref[1])
    scale = K.div(SF.from_bits(amax), prod, interpret)
    scales = jnp.where(amax >= I32(_INF), I32(FM.NAN_CODE[scale_dtype]),
                       FM.encode_scale(scale, scale_dtype).astype(I32))
    return scales, K.mul(FM.decode_scale(scales, scale_dtype), gs, interpret)


def halves(x_ref, kind, H, lead=None):
    """Even and odd elements of each group as float32 (BR, NG, H): 16-bit inputs
    arrive as int32 words holding a pair (low half = the even element), float32
    by two stride-2 loads. ``lead`` indexes the ref's first two axes (None: the
    whole block, loaded as ``x_ref[...]``)."""
    if kind == "f32":
        lead = (slice(None), slice(None)) if lead is None else lead
        return x_ref[lead + (pl.ds(0, H, stride=2),)], x_ref[lead + (pl.ds(1, H, stride=2),)]
    w = x_ref[...] if lead is None else x_ref[lead + (slice(None),)]
    if kind == "bf16":
        return SF.from_bits(w << 16), SF.from_bits(w & I32(-65536))
    f16 = lambda v: lax.bitcast_convert_type(v.astype(jnp.uint16), jnp.float16).astype(F32)
    return f16(w & I32(0xFFFF)), f16(lax.shift_right_logical(w, I32(16)))


def quotients(lo, hi, p, interpret):
    """``lo / p``, ``hi / p`` (p (BR, NG) broadcast over groups), IEEE-rounded.

    When every ``p`` of the block is a power of two ``2^k`` with ``2^-k`` normal,
    ``x * 2^-k`` is the same real number as ``x / 2^k``, so its rounded product
    is the rounded quotient: one multiply per element instead of an IEEE
    division (a scalar branch, so only one side runs)."""
    pb_ = SF.bits(p)
    e = pb_ >> 23
    pow2 = ((pb_ & I32(0x7FFFFF)) == 0) & (e >= 1) & (e <= 253)
    shape = lo.shape
    recip = jnp.broadcast_to(SF.from_bits((I32(254) - e) << 23)[:, :, None], shape)
    pb = jnp.broadcast_to(p[:, :, None], shape)
    return lax.cond(jnp.min(pow2.astype(I32)) == 1,
                    lambda: (K.mul(lo, recip, interpret), K.mul(hi, recip, interpret)),
                    lambda: (K.div(lo, pb, interpret), K.div(hi, pb, interpret)))


def encode(body, rounding):
    """``body(enc)`` with ``enc`` float32 -> int32 e2m1 codes for the rounding index:
    ties to even (the default) by ``formats.e2m1_encode_even`` (one float add), the
    other modes by the integer encoder. A traced index is a scalar branch (only
    one side runs); a Python int picks the encoder at trace time."""
    general = lambda q: FM.e2m1_encode(q, rounding).astype(I32)
    if isinstance(rounding, int):
        return body(FM.e2m1_encode_even if rounding == 0 else general)
    return lax.cond(rounding == 0, lambda: body(FM.e2m1_encode_even), lambda: body(general))


def codes_of(lo, hi, p_ref, scale_dtype, interpret, thresholds, known=None):
    """Float32 halves (BR, NG, H) of each group -> (scale bytes int32 (BR, NG),
    ``run``): ``run(body)`` is ``body(codes lo, codes hi)`` (int32 e2m1 codes), the
    codes by thresholds where ``thresholds.use_thresholds`` holds, else by
    quotients (a scalar branch per block, so only one side runs). ``known``:
    ``params.Known`` (static) or None (all read from ``p_ref``)."""
    mag = lambda v: jnp.max(SF.bits(v) & I32(0x7FFFFFFF), axis=2)
    amax = jnp.maximum(mag(lo), mag(hi))                               # (BR, NG) int32
    scales, p = group_scales(amax, p_ref, scale_dtype, interpret)
    rounding = p_ref[2] if known is None else known.rounding

    def general(body):
        q_lo, q_hi = quotients(lo, hi, p, interpret)
        return encode(lambda enc: body(enc(q_lo), enc(q_hi)), rounding)

    def run(body):
        if not thresholds or (known is not None and not known.c):
            return general(body)
        return lax.cond(TH.use_thresholds(p, amax, p_ref, known_ok=known is not None),
                        lambda: body(*TH.threshold_codes(
                            lo, hi, p, p_ref, lambda a, b: K.mul(a, b, interpret),
                            c=None if known is None else known.c)),
                        lambda: general(body))
    return scales, run


def dequant_values(lo, hi, p_ref, scale_dtype, interpret, thresholds, known=None):
    """Float32 halves (BR, NG, H) -> float32 ``v * scale`` of each (e2m1 value times
    its decoded group scale, no global scale; exact but for the e8m0 scale
    ``2^127`` times ``|v| >= 2``, which overflows to Inf)."""
    scales, run = codes_of(lo, hi, p_ref, scale_dtype, interpret, thresholds, known)
    sd = FM.decode_scale(scales, scale_dtype)[:, :, None]
    value = lambda c: K.scaled(c, False, sd, interpret)
    return run(lambda c_lo, c_hi: (value(c_lo), value(c_hi)))


def scalars(scale_scale, global_scale, rounding):
    """The in-kernel quantization's scalar operands: (1,) scale scale, global scale
    (float32) and rounding index (int32)."""
    return K.scalar_operands(scale_scale, global_scale) + (
        jnp.asarray(rounding, I32).reshape(1),)


def params_in_kernel(refs, interpret):
    """The quantize kernels' params tuple formed inside a kernel from the
    ``scalars`` refs (no XLA computation before the launch): bits of ``ss * gs`` as
    a (1, 1) tensor, bits of ``gs``, the rounding index."""
    ss_ref, gs_ref, r_ref = refs
    prod = K.mul(jnp.full((1, 1), ss_ref[0], F32), gs_ref[0], interpret)
    return SF.bits(prod), SF.bits(gs_ref[0]), r_ref[0]


def group_view(x2, G):
    """float (R, K) -> ((R, K/G, G) float32 or (R, K/G, G/2) int32 words holding
    pairs of 16-bit elements, kind "f32" | "bf16" | "f16")."""
    R, Kx = x2.shape
    kind = {F32: "f32", BF16: "bf16", jnp.float16: "f16"}[x2.dtype.type]
    if kind == "f32":
        return x2.reshape(R, Kx // G, G), kind
    words = lax.bitcast_convert_type(x2.reshape(R, Kx // 2, 2), I32)
    return words.reshape(R, Kx // G, G // 2), kind
