"""``fp4.quantized_matmul`` (SPEC.md section 9): ``matmul(quantize(x), w)`` with
the activation quantized on the way, as ``QuantLinear`` runs it.

Both ``implementation=`` arguments are resolved once here. When both are
Pallas on the GPU, without a transform or sharded operands, the activation is
quantized inside the matmul's schedule with the same bits as the two calls:
for the ``"dequant"`` schedule (prefill-sized N) one kernel quantizes ``x`` and
writes its bfloat16 values for the dense dot (``linear.dequant``); for the
``"gemv"`` / ``"dp4a"`` schedules (N <= 2) the matmul kernel quantizes its
slice of ``x`` itself (``linear.gemv``: one launch). Other N: quantize, then
matmul (two launches; quantizing inside the fused kernel measured slower:
docs/decisions.md).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..._src import grad as GD
from ..._src.sharding import sharded
from .. import sharding as SH
from ..backend import Backend
from ..config import FP4Config
from ..formats import ROUNDINGS
from ..matmul import heuristic
from ..matmul.api import float_dequantize, matmul_backend, matmul_on
from ..matmul.tilings import ROW_SCHEDULES
from ..quantize import xla as QX
from ..quantize.api import ROUNDS_FP4, quantize_args, quantize_backend, quantize_on
from ..tensor import FP4Tensor, check_tensor, positive_or_nan, scale_bytes
from . import dequant, gemv

__all__ = ["quantized_matmul", "quantized_matmul_on", "one_pass", "exact_linear"]


def quantized_matmul(x, w: FP4Tensor, config=None, *, global_scale=None, transform=None,
                     quant_implementation=None, matmul_implementation=None, grad=None):
    """``matmul(quantize(x, config, global_scale=, transform=), w)``: float
    activations (..., N, K) times fp4 weights (M, K) -> float32 (..., N, M).
    ``grad``: None (differentiating raises ``NotDifferentiableError``) | "ste"
    (same value, the tangent of the float ``T(x) @ dequantize(w).T``, ``T``
    the transform if any)."""
    GD.check_grad(grad, "fp4.quantized_matmul")
    check_tensor(w, "w")
    x, cfg, transform, gs = quantize_args(x, config, global_scale=global_scale,
                                          transform=transform)
    qb = quantize_backend(quant_implementation, cfg, transform, op="fp4.quantized_matmul")
    mb = matmul_backend(matmul_implementation, cfg.group_size, w.group_size,
                        op="fp4.quantized_matmul")
    if len(np.shape(x)) < 2 or np.shape(x)[-1] != w.shape[-1]:
        raise ValueError(f"x must be (..., N, K) with w's K={w.shape[-1]}, got shape "
                         f"{tuple(np.shape(x))}")
    return GD.call(lambda x, w, t, gs: quantized_matmul_on(x, w, cfg, t, gs, qb, mb),
                   (x, w, transform, gs), op="fp4.quantized_matmul", grad=grad, why=ROUNDS_FP4,
                   exact=lambda x, w, t, _: exact_linear(x, float_dequantize(w), t))


def exact_linear(x, w, transform=None):
    """The float product ``T(x) @ w.T`` (float32, HIGHEST) behind the fp4
    straight-through estimators; ``w`` (M, K) float, already transformed."""
    x = jnp.asarray(x).astype(jnp.float32)
    if transform is not None:
        x = QX.block_transform(x, jnp.asarray(transform).astype(jnp.float32))
    return GD.exact_matmul(x, w)


def quantized_matmul_on(x, w: FP4Tensor, cfg: FP4Config, transform, gs, quant_backend: Backend,
                        matmul_backend: Backend):
    """``quantized_matmul`` of validated arguments on the resolved backends."""
    schedule = one_pass(x, w, cfg, transform, quant_backend, matmul_backend)
    if schedule is None:
        a = quantize_on(x, cfg, transform, gs, quant_backend)
        return matmul_on(a, w, matmul_backend)
    # not jitted on purpose (as ``quantize``): a concrete global scale and the
    # config's scale scale and rounding index (a Python int) reach the kernel
    # builders as host values, so ``linear_gemv`` bakes the rounding in and, for
    # e8m0 scales, quantizes by thresholds (traced, the kernel would branch on
    # the rounding and divide per element)
    fn = dequant.linear_dequant if schedule == "dequant" else gemv.linear_gemv
    # traced global scales that are not positive and finite: NaN alpha (concrete
    # ones were checked); the kernels multiply by both scales last
    w_gs = w.global_scale
    if isinstance(w_gs, jax.core.Tracer) or isinstance(gs, jax.core.Tracer):
        bad = jnp.isnan(positive_or_nan(w_gs)) | jnp.isnan(positive_or_nan(gs))
        w_gs = jnp.where(bad, jnp.float32(jnp.nan), w_gs)
    return fn(x, np.float32(cfg.scale_scale), gs,
              (w.codes, scale_bytes(w.scales), w_gs, w.scale_dtype),
              group_size=cfg.group_size, scale_dtype=cfg.scale_dtype,
              rounding=ROUNDINGS.index(cfg.rounding), backend=matmul_backend)


def one_pass(x, w: FP4Tensor, cfg: FP4Config, transform, quant_backend: Backend,
             matmul_backend: Backend):
    """The one-pass form of ``quantized_matmul`` ("dequant" | "gemv"), or None:
    both backends Pallas on the GPU, no transform, unsharded operands, and a
    dequant or decode-rows schedule for this shape (``x``'s shape against
    ``w`` is checked by the caller)."""
    if not (quant_backend.pallas and matmul_backend.pallas and matmul_backend.gpu
            and transform is None and len(w.shape) == 2 and cfg.group_size >= 2):
        return None
    if SH.plan_quantize(x, cfg.group_size) is not None or sharded(w.codes, 2)[0] is not None:
        return None
    shape = tuple(np.shape(x))
    N = int(np.prod(shape[:-1]))
    schedule, _ = heuristic.choose(N, w.shape[0], shape[-1], cfg.group_size, w.group_size,
                                   gpu=True)
    return "dequant" if schedule == "dequant" else "gemv" if schedule in ROW_SCHEDULES else None
