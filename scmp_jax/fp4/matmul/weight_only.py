"""``fp4.weight_only_matmul`` (SPEC.md section 9.9): float activations times fp4
weights; the activation is never quantized (W4A16, as MXFP4 checkpoints are
served on GPUs without fp4 tensor cores).

``implementation=`` is resolved once here (``fp4.backend.resolve``): ``"xla"``
decodes the weight in jnp, ``"pallas"`` with the ``"dequant"`` schedule's decode
kernel (``matmul.schedules.dequant.decode_bf16``; interpret mode off the GPU).
Both decode exactly (``v * s`` has <= 6 significant bits and fits bfloat16),
then run XLA's dot with float32 accumulation and multiply by the weight's
global scale last. Sharded operands run per shard (``fp4.sharding``).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._src import grad as GD
from ..._src.errors import check_float
from .. import formats as FM
from .. import sharding as SH
from .. import softfloat as SF
from ..backend import Backend, resolve
from ..tensor import FP4Tensor, check_tensor, positive_or_nan, scale_bytes
from . import pallas
from .api import float_dequantize
from .schedules.dequant import decode_bf16

__all__ = ["weight_only_matmul", "weight_only_on", "weight_only_backend", "exact_weight_only",
           "WHY"]

F32, BF16 = jnp.float32, jnp.bfloat16
_OP = "fp4.weight_only_matmul"
WHY = ("the weight's scales are decoded from their bit patterns with integer operations, which "
       "autodiff cannot follow (the gradient w.r.t. the float activation is exact and needs no "
       "estimator)")


def weight_only_backend(implementation, group_w: int, op: str = _OP) -> Backend:
    """The ``Backend`` of ``implementation`` for a weight with groups of ``group_w``."""
    return resolve(implementation, op=op, why_not=pallas.unsupported(None, group_w))


def weight_only_matmul(x, w: FP4Tensor, *, implementation=None, grad=None):
    """Weight-only fp4 linear without bias: float activations ``x`` (..., N, K)
    (bfloat16, float16, float32; float64 is rounded to float32) times fp4 weights
    ``w`` (M, K) -> float32 (..., N, M) = ``x @ dequant(w).T``.

    ``x`` is converted to float32 (exact for the 16-bit types) and never
    quantized; the weight is decoded exactly (``e2m1 value * decoded scale``),
    the products summed in float32 and multiplied by ``w.global_scale`` last.
    Like ``fp4.matmul`` the result is close to (not bit-equal with) a float64
    product of the same decoded weight (SPEC 9.8's tolerance).

    A function of its own rather than a float ``a`` in ``fp4.matmul``: the
    mode is explicit where it is called (``fp4.matmul`` refuses an activation
    left unquantized by mistake instead of silently computing something else),
    and it differentiates differently. Gradient: w.r.t. ``x`` the exact one,
    ``g @ dequant(w)`` (nothing rounds ``x``), with either ``grad``; w.r.t. the
    weight's scales or global scale ``grad=None`` raises ``NotDifferentiableError``
    and ``grad="ste"`` gives the tangent of the float ``x @ dequantize(w).T``."""
    GD.check_grad(grad, _OP)
    check_tensor(w, "w")
    if len(w.shape) != 2:
        raise ValueError(f"w must be 2D (M, K), got shape {w.shape}")
    if isinstance(x, FP4Tensor):
        raise TypeError("x must be a float array (a weight-only matmul does not quantize its "
                        "activation; fp4.matmul takes an fp4 activation), got an FP4Tensor")
    x = check_float(x, "x")
    if len(np.shape(x)) < 2 or np.shape(x)[-1] != w.shape[-1]:
        raise ValueError(f"x must be (..., N, K) with w's K={w.shape[-1]}, got shape "
                         f"{tuple(np.shape(x))}")
    backend = weight_only_backend(implementation, w.group_size)
    return GD.call(lambda x, w: weight_only_on(x, w, backend), (x, w), op=_OP, grad=grad,
                   exact=exact_weight_only, why=WHY, exact_in=(0,))


def exact_weight_only(x, w: FP4Tensor):
    """The float ``x @ dequantize(w).T`` (float32, HIGHEST) whose tangent
    differentiates ``weight_only_matmul``: exact in ``x``, in plain float
    arithmetic in the weight's scales and global scale."""
    return GD.exact_matmul(x, float_dequantize(w))


def weight_only_on(x, w: FP4Tensor, backend: Backend):
    """``weight_only_matmul`` of checked operands on ``backend``."""
    ops = (w.codes, w.scales, w.global_scale)
    shard = SH.plan_matmul(x, w.codes, names=("x", "w"))
    if shard is None:
        return _weight_only(x, ops, w.scale_dtype, backend)
    return SH.weight_only(_weight_only, x, ops, (w.scale_dtype, backend), shard)


@partial(jax.jit, static_argnums=(2, 3))
def _weight_only(x, w, scale_dtype, backend):
    codes, sbytes, gs = w[0], scale_bytes(w[1]), positive_or_nan(w[2])
    M, K = codes.shape[0], x.shape[-1]
    if backend.pallas:
        wd = decode_bf16(codes, sbytes, scale_dtype, interpret=backend.interpret)
    else:
        v = FM.e2m1_decode(FM.unpack(codes))                         # (M, K) float32
        s = FM.decode_scale(sbytes, scale_dtype)                     # (M, K/G)
        wd = (v.reshape(M, s.shape[1], -1) * s[..., None]).reshape(M, K)
    y = _dot(x.reshape(-1, K), wd)
    return SF.mul(y, gs).reshape(x.shape[:-1] + (M,))


def _dot(x2, wd):
    """(N, K) x (M, K) -> float32 (N, M) summed in float32: bfloat16 activations
    against the bfloat16 weight (its values are bfloat16-exact; exact products),
    others in float32 at HIGHEST precision (no TF32 on the GPU)."""
    dims = (((1,), (1,)), ((), ()))
    if x2.dtype == BF16:
        return lax.dot_general(x2, wd.astype(BF16), dims, preferred_element_type=F32)
    return lax.dot_general(x2.astype(F32), wd.astype(F32), dims,
                           precision=lax.Precision.HIGHEST, preferred_element_type=F32)
