"""FP4 quantize / dequantize / block transform in pure jnp (SPEC.md section 9).

The XLA implementation behind ``fp4.quantize.api`` and the reference the
quantize kernels are tested against (no Pallas here). SPEC's float32 products
and quotients go through ``softfloat.mul`` / ``softfloat.div`` (exact IEEE,
subnormals kept: XLA's CPU flush-to-zero and GPU division would change bits),
in SPEC order; ``amax`` is an integer max over magnitude bits. Every function
is jit-friendly (static: group size, scale format, rounding).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import formats as FM
from .. import softfloat as SF

__all__ = ["quantize", "dequantize", "block_transform"]

F32 = jnp.float32
I32 = jnp.int32


def quantize(x, scale_scale, global_scale, *, group_size: int, scale_dtype: str, rounding):
    """float32 (..., K), float32 scalars -> (codes uint8 (..., K/2), scale bytes uint8 (..., K/G)).

    ``rounding``: a name of ``formats.ROUNDINGS`` or its index (may be traced).
    ``scale = amax / (scale_scale * global_scale)``; a group with NaN/Inf gets
    the NaN scale byte (so all its codes are 7); ``x / (scale_deq * global_scale)``
    -> e2m1 codes."""
    K, G = x.shape[-1], group_size
    xg = x.reshape(x.shape[:-1] + (K // G, G))
    amax = jnp.max(SF.bits(xg) & I32(0x7FFFFFFF), axis=-1)
    nonfinite = amax >= I32(0x7F800000)
    scale = SF.div(SF.from_bits(amax), SF.mul(scale_scale, global_scale))
    scales = jnp.where(nonfinite, jnp.uint8(FM.NAN_CODE[scale_dtype]),
                       FM.encode_scale(scale, scale_dtype))
    p = SF.mul(FM.decode_scale(scales, scale_dtype), global_scale)
    codes = FM.e2m1_encode(SF.div(xg, p[..., None]), rounding).reshape(x.shape)
    return FM.pack(codes), scales


def dequantize(codes, scales, global_scale, *, scale_dtype: str):
    """codes uint8 (..., K/2), scale bytes uint8 (..., K/G) -> float32 (..., K):
    ``code_value * (scale_deq * global_scale)``."""
    vals = FM.e2m1_decode(FM.unpack(codes))
    K, n = vals.shape[-1], scales.shape[-1]
    p = SF.mul(FM.decode_scale(scales, scale_dtype), global_scale)
    out = SF.mul(vals.reshape(vals.shape[:-1] + (n, K // n)), p[..., None])
    return out.reshape(vals.shape)


def block_transform(x, transform):
    """float32 (..., K) with ``(g, g)`` or ``(K/g, g, g)`` -> float32 (..., K):
    block ``c`` becomes ``x_c @ T_c^T`` (one float32 dot, HIGHEST precision)."""
    K, g = x.shape[-1], transform.shape[-1]
    xb = x.reshape(x.shape[:-1] + (K // g, g))
    spec = "...cj,ij->...ci" if transform.ndim == 2 else "...cj,cij->...ci"
    y = jnp.einsum(spec, xb, transform, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=F32)
    return y.reshape(x.shape)
