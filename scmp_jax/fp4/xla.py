"""FP4 quantize / dequantize / matmul / block transform in pure jnp (SPEC.md section 9).

The XLA implementation behind ``scmp_jax.fp4.api``. SPEC's float32 products
and quotients go through ``softfloat.mul`` / ``softfloat.div`` (exact IEEE,
subnormals kept: XLA's CPU flush-to-zero and GPU division would change bits),
in SPEC order; ``amax`` is an integer max over magnitude bits. Every function
is jit-friendly (static: group size, scale format, rounding).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import formats as FM
from . import softfloat as SF

__all__ = ["quantize", "dequantize", "matmul", "block_transform"]

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


def matmul(a, w):
    """``alpha * (A @ W^T)`` with ``A = v_a * s_a``, ``W = v_w * s_w`` (group scales),
    ``alpha = gs_a * gs_w``; float32, in an order that does not depend on N or M.

    ``a``, ``w``: (codes, scale bytes, global scale, scale_dtype) of activations
    (..., N, K) and weights (M, K) -> float32 (..., N, M). K runs in chunks of
    ``c = min(G_a, G_w)`` elements (one scale per row and chunk): each chunk's dot
    of raw e2m1 values is exact in float32 (multiples of 1/4 below 36 c), so
    XLA's choice of dot algorithm cannot change it; chunk sums are scaled
    ``(S * s_a) * s_w`` (exact) and added in chunk order, then ``* alpha``. So
    the bits are the same for any row subset (sharded calls equal unsharded
    ones). On CPU, XLA flushes subnormal scales (e8m0 byte 0) in the products."""
    (ac, sab, gsa, dta), (wc, swb, gsw, dtw) = a, w
    lead, M = ac.shape[:-1], wc.shape[0]
    K = 2 * ac.shape[-1]
    c = min(K // sab.shape[-1], K // swb.shape[-1])

    def chunks(codes, sbytes, dtype):
        v = FM.e2m1_decode(FM.unpack(codes.reshape(-1, K // 2)))        # (R, K)
        s = FM.decode_scale(sbytes.reshape(v.shape[0], -1), dtype)      # (R, K/G)
        s = jnp.repeat(s, (K // s.shape[-1]) // c, axis=-1)            # (R, K/c)
        return v.reshape(v.shape[0], K // c, c).transpose(1, 0, 2), s.T

    va, sa = chunks(ac, sab, dta)
    vw, sw = chunks(wc, swb, dtw)

    def step(acc, x):
        xa, xw, ta, tw = x
        S = jnp.einsum("nk,mk->nm", xa, xw, preferred_element_type=F32)
        return acc + (S * ta[:, None]) * tw[None, :], None

    acc = jax.lax.scan(step, jnp.zeros((va.shape[1], M), F32), (va, vw, sa, sw))[0]
    return SF.mul(acc, SF.mul(gsa, gsw)).reshape(lead + (M,))


def block_transform(x, transform):
    """float32 (..., K) with ``(g, g)`` or ``(K/g, g, g)`` -> float32 (..., K):
    block ``c`` becomes ``x_c @ T_c^T`` (one float32 dot, HIGHEST precision)."""
    K, g = x.shape[-1], transform.shape[-1]
    xb = x.reshape(x.shape[:-1] + (K // g, g))
    spec = "...cj,ij->...ci" if transform.ndim == 2 else "...cj,cij->...ci"
    y = jnp.einsum(spec, xb, transform, precision=jax.lax.Precision.HIGHEST,
                   preferred_element_type=F32)
    return y.reshape(x.shape)
