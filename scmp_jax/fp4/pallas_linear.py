"""FP4 Pallas schedules of ``matmul(quantize(x), w)`` in fewer passes (SPEC.md
section 9; same bits as the two steps): ``quantize_dequant`` (the activation
quantized straight to its bfloat16 ``v * s``), ``linear_dequant`` (that, then
the dense GEMM against the decoded weight), ``linear_gemv`` (the activation
quantized inside the decode-rows kernel: one launch, no activation codes) and
``linear_fused`` (the same inside the fused kernel's tiles; opt-in: slower than
quantize + matmul at N = 4..16 on the H200, session 12).
Kernels from ``pallas`` (quantize) and ``pallas_matmul`` (decode rows)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from . import formats as FM
from . import pallas_matmul as _mm
from . import pallas_params as PR
from . import softfloat as SF
from .pallas import (QuantTiling, _codes_of, _dequant_values, _group_view, _halves,
                     _interpret, _pair_call, _params_in_kernel, _prologue, _scalars,
                     unsupported, unsupported_matmul)
from .pallas_matmul import MatmulTiling, matmul_tiling

__all__ = ["quantize_dequant", "linear_dequant", "linear_gemv", "linear_fused"]

F32 = jnp.float32
I32 = jnp.int32


#: quantize_dequant's tiling: the one its prefill numbers were measured with (the
#: codes kernel's default until session 9; not re-swept for the bf16 output)
_DEQUANT_TILING = QuantTiling(4, 512, 2)


def quantize_dequant(x, scale_scale, global_scale, *, group_size: int, scale_dtype: str,
                     rounding, tiling: QuantTiling | None = None, interpret: bool | None = None):
    """float (..., K) (f32 / bf16 / f16), float32 scalars -> bfloat16 (..., K): each
    element's e2m1 value times its decoded group scale (no global scale), i.e.
    ``decode_bf16`` of ``quantize_fused``'s codes and scales, in one pass that
    writes no codes (the activation operand of the dequant matmul schedule).
    Needs a power-of-two ``group_size >= 2``."""
    why = unsupported(group_size)
    if why or group_size < 2:
        raise ValueError(why or f"group_size must be >= 2 here, got {group_size}")
    x, rounding, interpret = _prologue(x, rounding, interpret)
    K = x.shape[-1]
    tiling = tiling or _DEQUANT_TILING
    params = PR.params(scale_scale, global_scale, rounding, tiling.use_thresholds(scale_dtype),
                       tiling.use_sets(scale_dtype))
    y = _pair_call(x.reshape(-1, K), params, group_size, scale_dtype, tiling, interpret,
                   dequant=True)
    return y.reshape(x.shape)


def linear_dequant(x, scale_scale, global_scale, w, *, group_size: int, scale_dtype: str,
                   rounding, interpret: bool | None = None):
    """float activations (..., N, K) quantized with these settings (no transform)
    times fp4 weights ``w`` = (codes (M, K/2), scale bytes, global scale, scale
    dtype) -> float32 (..., N, M): the dequant schedule of ``matmul(quantize(x),
    w)`` with the activation decoded in its quantize pass; the same bits as
    ``matmul`` with ``MatmulTiling(dequant=True)`` on ``quantize_fused``'s output."""
    if interpret is None:
        interpret = _interpret()
    a = quantize_dequant(x, scale_scale, global_scale, group_size=group_size,
                         scale_dtype=scale_dtype, rounding=rounding, interpret=interpret)
    K = x.shape[-1]
    y = _mm.dense_times_codes(a.reshape(-1, K), w, SF.mul(global_scale, w[2]).reshape(1),
                              interpret)
    return y.reshape(x.shape[:-1] + (w[0].shape[0],))


def linear_gemv(x, scale_scale, global_scale, w, *, group_size: int, scale_dtype: str,
                rounding, tiling: MatmulTiling | None = None, interpret: bool | None = None):
    """float activations (..., N, K) (few rows) quantized with these settings (no
    transform) times fp4 weights ``w`` = (codes (M, K/2), scale bytes, global scale,
    scale dtype) with the same group size -> float32 (..., N, M): the gemv
    schedule of ``matmul(quantize(x), w)`` with the activation quantized inside
    the matmul kernel (one launch, no activation codes); the same bits as
    ``matmul`` with the same ``tiling`` on ``quantize_fused``'s output."""
    x, rounding, interpret = _prologue(x, rounding, interpret)
    K, M = x.shape[-1], w[0].shape[0]
    G = group_size
    why = unsupported_matmul(G, K // w[1].shape[-1])
    if why or K // w[1].shape[-1] != G:
        raise ValueError(why or f"linear_gemv needs the weight's group size {G}, got "
                         f"{K // w[1].shape[-1]}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    N, H = x2.shape[0], G // 2
    t = tiling or matmul_tiling(N, M, K, G, G, interpret)
    if not (t.gemv or t.mma):
        raise ValueError(f"linear_gemv needs a gemv or mma tiling, got {t}")
    Kp = _mm.gemv_padding(K, t)
    x3, kind = _group_view(_mm._pad2(x2, N, Kp), G)
    inner, ng = x3.shape[-1], t.bk // G

    known = _known(scale_scale, global_scale, rounding, scale_dtype)
    thresholds = known is not None and bool(known.c)

    def act(refs, n, s):                # e2m1 values and decoded scales of row n, step s
        lo, hi = _halves(refs[0], kind, H, (pl.ds(n, 1), pl.ds(s * ng, ng)))
        scales, run = _codes_of(lo, hi, _params_in_kernel(refs[1:], interpret), scale_dtype,
                                interpret, thresholds, known)
        v_lo, v_hi = run(lambda c_lo, c_hi: (_mm._value(c_lo, False, interpret),
                                             _mm._value(c_hi, False, interpret)))
        sa = FM.decode_scale(scales, scale_dtype).reshape(ng)
        return v_lo.reshape(ng, H), v_hi.reshape(ng, H), sa

    one = pl.BlockSpec((1,), lambda j, s: (0,))
    specs = lambda ng_s: [pl.BlockSpec((N, ng_s, inner), lambda j, s: (0, s, 0)), one, one, one]
    y = _mm.gemv_call((x3,) + _scalars(scale_scale, global_scale, rounding), specs, act, w[0],
                      w[1], _mm.scalar_operands(global_scale, w[2]), N, K, G, w[3], t, interpret)
    return y.reshape(lead + (M,))


def linear_fused(x, scale_scale, global_scale, w, *, group_size: int, scale_dtype: str,
                 rounding, tiling: MatmulTiling | None = None, interpret: bool | None = None):
    """float activations (..., N, K) quantized with these settings (no transform)
    times fp4 weights ``w`` = (codes (M, K/2), scale bytes, global scale, scale
    dtype) -> float32 (..., N, M): the fused schedule of ``matmul(quantize(x),
    w)``, each program quantizing its (bn, bk) activation tile straight to
    bfloat16 ``v * s`` (one launch, no activation codes); the same bits as
    ``matmul`` with the same ``tiling`` on ``quantize_fused``'s output.

    Not used by ``fp4.quantized_matmul``: every program quantizes its tile again
    (M / bm times in all), which costs more than the launch it saves. H200,
    session 12 (``bench.fp4_probe --cases fused``, N = 8 cold, traced global
    scale): 0.0268-0.0407 ms against 0.0223 for quantize + matmul."""
    x, rounding, interpret = _prologue(x, rounding, interpret)
    K, M = x.shape[-1], w[0].shape[0]
    G, Gw = group_size, K // w[1].shape[-1]
    why = unsupported_matmul(G, Gw)
    if why or G < 2:
        raise ValueError(why or f"linear_fused needs group_size >= 2, got {G}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, K)
    N, H = x2.shape[0], G // 2
    t = tiling or matmul_tiling(N, M, K, G, Gw, interpret)
    if t.dequant or t.gemv or t.mma or t.group_mma:
        raise ValueError(f"linear_fused needs a fused tiling, got {t}")
    Np, _, Kp = _mm.fused_padding(N, M, K, t)
    x3, kind = _group_view(_mm._pad2(x2, Np, Kp), G)
    inner, ng = x3.shape[-1], t.bk // G
    known = _known(scale_scale, global_scale, rounding, scale_dtype)
    thresholds = known is not None and bool(known.c)

    def act(refs, k, i):         # bfloat16 v * s (low, high halves) of step k (rows padded)
        lo, hi = _halves(refs[0], kind, H, (slice(None), pl.ds(k * ng, ng)))
        v = _dequant_values(lo, hi, _params_in_kernel(refs[1:], interpret), scale_dtype,
                            interpret, thresholds, known)
        return [u.astype(jnp.bfloat16).reshape(t.bn, t.bk // 2) for u in v]   # exact

    one = pl.BlockSpec((1,), lambda i, j, s: (0,))
    specs = lambda Kc: [pl.BlockSpec((t.bn, Kc // G, inner), lambda i, j, s: (i, s, 0)),
                        one, one, one]
    y = _mm.fused_call((x3,) + _scalars(scale_scale, global_scale, rounding), specs, act,
                       w[0], w[1], _mm.scalar_operands(global_scale, w[2]), N, K, Gw, w[3], t,
                       interpret)
    return y.reshape(lead + (M,))


def _known(scale_scale, global_scale, rounding, scale_dtype):
    """``pallas_params.Known`` for ``linear_gemv``'s in-kernel quantization: a
    concrete rounding index is static (no branch on it); with concrete scalars and
    e8m0 scales also the thresholds (``c_i`` as constants: codes by a multiply and
    comparisons where a block allows, as in the quantize kernel; the kernel's
    ``p`` tuple holds the bits of ``gs`` they need). Traced scalars: None."""
    if not isinstance(rounding, (int, np.integer)):
        return None
    rounding = int(rounding)
    if scale_dtype != "e8m0" or any(isinstance(v, jax.core.Tracer)
                                    for v in (scale_scale, global_scale)):
        return PR.Known(rounding, ())
    return PR.known(PR.params(scale_scale, global_scale, rounding, True))
