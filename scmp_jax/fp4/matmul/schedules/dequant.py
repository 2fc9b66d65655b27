"""The ``"dequant"`` schedule (``DequantTiling``; SPEC.md section 9): a decode
kernel writes each operand once as bfloat16 ``v * s`` (``decode_bf16``; exact:
every product has <= 6 significant bits), then XLA's dot (cuBLAS on the GPU)
with float32 accumulation, times ``alpha``. For prefill-sized N the
tensor-core GEMM then dominates."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ...._src.dispatch import triton_params
from ... import formats as FM
from ... import kernel as K
from ... import softfloat as SF
from ..tilings import DequantTiling

__all__ = ["decode_bf16", "dense_times_codes", "matmul"]

F32 = jnp.float32
I32 = jnp.int32
BF16 = jnp.bfloat16


def _decode_kernel(c_ref, s_ref, o_ref, *, scale_dtype, interpret):
    c = c_ref[...].astype(I32)                                   # (BR, NG, H) bytes
    s = FM.decode_scale(s_ref[...].astype(I32), scale_dtype)[:, :, None]
    lo = SF.bits(K.scaled(c, False, s, interpret))
    hi = SF.bits(K.scaled(c, True, s, interpret))
    # each product is exact in bfloat16: its float32 bits end in 16 zeros
    o_ref[...] = lax.shift_right_logical(lo, I32(16)) | (hi & I32(-65536))


def decode_bf16(codes, scale_bytes, scale_dtype: str, *, interpret: bool,
                tiling: DequantTiling = DequantTiling()):
    """codes uint8 (R, K/2), scale bytes uint8 (R, K/G) -> bfloat16 (R, K) ``v * s``
    (no global scale), exact. Blocks of ``tiling.rows`` x ``tiling.cols`` elements."""
    rows, cols = tiling.rows, tiling.cols
    R, Kx = codes.shape[0], 2 * codes.shape[1]
    ng = scale_bytes.shape[1]
    G = Kx // ng
    H = G // 2
    NG = max(1, min(cols // G, pl.next_power_of_2(ng)))
    Rp, NGp = pl.cdiv(R, rows) * rows, pl.cdiv(ng, NG) * NG
    c3 = jnp.pad(codes.reshape(R, ng, H), ((0, Rp - R), (0, NGp - ng), (0, 0)))
    s2 = K.pad2(scale_bytes, Rp, NGp)
    kernel = functools.partial(_decode_kernel, scale_dtype=scale_dtype, interpret=interpret)
    out = pl.pallas_call(
        kernel, grid=(Rp // rows, NGp // NG),
        in_specs=[pl.BlockSpec((rows, NG, H), lambda i, j: (i, j, 0)),
                  pl.BlockSpec((rows, NG), lambda i, j: (i, j))],
        out_specs=pl.BlockSpec((rows, NG, H), lambda i, j: (i, j, 0)),
        out_shape=jax.ShapeDtypeStruct((Rp, NGp, H), I32),
        interpret=interpret, name=f"fp4_decode_bf16_{scale_dtype}",
        **triton_params(interpret, tiling.warps),
    )(c3, s2)
    words = out[:R, :ng].reshape(R, Kx // 2)
    return lax.bitcast_convert_type(words, BF16).reshape(R, Kx)


def dense_times_codes(a, w, alpha, *, interpret: bool, tiling: DequantTiling = DequantTiling()):
    """bfloat16 activations (N, K) (``v * s`` values) x weights ``w`` = (codes,
    scale bytes, global scale, scale dtype) -> float32 (N, M): the weight decoded
    once (``decode_bf16``), XLA's dot with float32 accumulation, times ``alpha`` (1,)."""
    wd = decode_bf16(w[0], w[1], w[3], interpret=interpret, tiling=tiling)
    y = lax.dot_general(a, wd, (((1,), (1,)), ((), ())), preferred_element_type=F32)
    return y * alpha[0]


def matmul(ac2, as2, wc, ws, alpha, dta, dtw, t: DequantTiling, interpret):
    """Activation codes (N, K/2) / scale bytes x weights (M, K/2) / scale bytes,
    ``alpha = gs_a * gs_w`` (1,) -> float32 (N, M)."""
    a = decode_bf16(ac2, as2, dta, interpret=interpret, tiling=t)
    return dense_times_codes(a, (wc, ws, None, dtw), alpha, interpret=interpret, tiling=t)
