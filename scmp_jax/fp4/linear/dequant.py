"""``matmul(quantize(x), w)`` for prefill-sized N in fewer passes (Pallas;
SPEC.md section 9; same bits as the two steps with the ``"dequant"``
schedule): ``quantize_dequant`` quantizes the activation straight to its
bfloat16 ``v * s`` (no codes, no second decode pass), ``linear_dequant`` then
runs the dense GEMM against the decoded weight."""
from __future__ import annotations

from ..._src.dispatch import Backend
from .. import softfloat as SF
from ..matmul.schedules.dequant import dense_times_codes
from ..quantize import params as PR
from ..quantize.pallas import QuantTiling, pair_call, prologue, unsupported

__all__ = ["quantize_dequant", "linear_dequant"]

#: quantize_dequant's tiling: the blocks its prefill numbers were measured with
DEQUANT_TILING = QuantTiling(4, 512, 2)


def quantize_dequant(x, scale_scale, global_scale, *, group_size: int, scale_dtype: str,
                     rounding, backend: Backend, tiling: QuantTiling | None = None):
    """float (..., K) (f32 / bf16 / f16), float32 scalars -> bfloat16 (..., K): each
    element's e2m1 value times its decoded group scale (no global scale), i.e.
    ``decode_bf16`` of ``quantize_fused``'s codes and scales, in one pass that
    writes no codes (the activation operand of the dequant matmul schedule).
    Needs a power-of-two ``group_size >= 2``."""
    why = unsupported(group_size)
    if why or group_size < 2:
        raise ValueError(why or f"group_size must be >= 2 here, got {group_size}")
    x, rounding = prologue(x, rounding)
    K = x.shape[-1]
    tiling = tiling or DEQUANT_TILING
    params = PR.params(scale_scale, global_scale, rounding, tiling.use_thresholds(scale_dtype))
    y = pair_call(x.reshape(-1, K), params, group_size, scale_dtype, tiling, backend.interpret,
                  dequant=True)
    return y.reshape(x.shape)


def linear_dequant(x, scale_scale, global_scale, w, *, group_size: int, scale_dtype: str,
                   rounding, backend: Backend):
    """float activations (..., N, K) quantized with these settings (no transform)
    times fp4 weights ``w`` = (codes (M, K/2), scale bytes, global scale, scale
    dtype) -> float32 (..., N, M): the dequant schedule of ``matmul(quantize(x),
    w)`` with the activation decoded in its quantize pass; the same bits as
    ``matmul`` with ``DequantTiling()`` on ``quantize_fused``'s output."""
    a = quantize_dequant(x, scale_scale, global_scale, group_size=group_size,
                         scale_dtype=scale_dtype, rounding=rounding, backend=backend)
    K = x.shape[-1]
    y = dense_times_codes(a.reshape(-1, K), w, SF.mul(global_scale, w[2]).reshape(1),
                          interpret=backend.interpret)
    return y.reshape(x.shape[:-1] + (w[0].shape[0],))
