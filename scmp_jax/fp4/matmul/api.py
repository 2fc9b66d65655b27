"""``fp4.matmul`` (SPEC.md section 9): quantized linear without bias.

``implementation=`` is resolved once here into a ``Backend`` that is passed
down: ``"xla"`` runs ``matmul.xla``, ``"pallas"`` the schedules of
``matmul.pallas`` (interpret mode off the GPU). None picks Pallas on the GPU
and XLA elsewhere; group sizes the kernels cannot take fall back to XLA with
None and raise ValueError with ``"pallas"``. Sharded operands run per shard
(``fp4.sharding``), the Pallas kernels with the tiling of the global shape.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..._src import grad as GD
from .. import formats as FM
from .. import sharding as SH
from ..backend import Backend, resolve
from ..tensor import FP4Tensor, check_tensor, positive_or_nan, scale_bytes
from . import heuristic, pallas, xla

__all__ = ["matmul", "matmul_on", "matmul_backend", "float_dequantize"]

_WHY = ("its float32 arithmetic is simulated with integer operations, which autodiff cannot "
        "follow")


def matmul_backend(implementation, group_a: int, group_w: int, op="fp4.matmul") -> Backend:
    """The ``Backend`` of ``implementation`` for operands with these group sizes."""
    return resolve(implementation, op=op, why_not=pallas.unsupported(group_a, group_w))


def matmul(a: FP4Tensor, w: FP4Tensor, *, implementation=None, grad=None):
    """Quantized linear without bias: activations ``a`` (..., N, K) times weights
    ``w`` (M, K) -> float32 (..., N, M) = ``dequant(a) @ dequant(w)^T``: group-scaled
    products summed in float32, then times ``alpha = gs_a * gs_w``; close to (not
    bit-equal with) a float64 reference. A traced global scale that is not
    positive and finite makes every element NaN. ``grad``: None (differentiating
    w.r.t. the scales or global scales raises ``NotDifferentiableError``) | "ste"
    (same value, the tangent of the float ``dequantize(a) @ dequantize(w).T``)."""
    GD.check_grad(grad, "fp4.matmul")
    if not isinstance(a, FP4Tensor) and hasattr(a, "dtype"):
        raise TypeError(f"a must be an FP4Tensor, got {type(a).__name__} (for float activations "
                        "times fp4 weights use fp4.weight_only_matmul)")
    check_tensor(a, "a")
    check_tensor(w, "w")
    if len(w.shape) != 2:
        raise ValueError(f"w must be 2D (M, K), got shape {w.shape}")
    if len(a.shape) < 2 or a.shape[-1] != w.shape[-1]:
        raise ValueError(f"a must be (..., N, K) with w's K={w.shape[-1]}, got shape {a.shape}")
    backend = matmul_backend(implementation, a.group_size, w.group_size)
    return GD.call(lambda a, w: matmul_on(a, w, backend), (a, w), op="fp4.matmul", grad=grad,
                   exact=lambda a, w: GD.exact_matmul(float_dequantize(a), float_dequantize(w)),
                   why=_WHY)


def float_dequantize(t: FP4Tensor):
    """``t``'s values in plain float32 arithmetic, differentiable in its scales
    and global scale (the straight-through estimators' exact operand; the
    bit-exact ``fp4.dequantize`` is integer arithmetic)."""
    vals = FM.e2m1_decode(FM.unpack(t.codes))
    K, n = vals.shape[-1], t.scales.shape[-1]
    p = t.scales.astype(jnp.float32) * jnp.asarray(t.global_scale, jnp.float32)
    return (vals.reshape(vals.shape[:-1] + (n, K // n)) * p[..., None]).reshape(vals.shape)


def matmul_on(a: FP4Tensor, w: FP4Tensor, backend: Backend):
    """``matmul`` of checked operands on ``backend``."""
    ops = (a.codes, a.scales, a.global_scale), (w.codes, w.scales, w.global_scale)
    shard = SH.plan_matmul(a.codes, w.codes)
    if shard is None:
        return _matmul(*ops, a.scale_dtype, w.scale_dtype, backend)
    tiling = None
    if backend.pallas:                  # the global shape's tiling in every shard
        K, N = a.shape[-1], int(np.prod(a.shape[:-1]))
        tiling = heuristic.choose(N, w.shape[0], K, a.group_size, w.group_size,
                                  gpu=backend.gpu)[1]
    return SH.matmul(_matmul, *ops, (a.scale_dtype, w.scale_dtype, backend, tiling), shard)


@partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _matmul(a, w, dtype_a, dtype_w, backend, tiling=None):
    a = (a[0], scale_bytes(a[1]), positive_or_nan(a[2]), dtype_a)
    w = (w[0], scale_bytes(w[1]), positive_or_nan(w[2]), dtype_w)
    if backend.pallas:
        return pallas.matmul(a, w, backend=backend, tiling=tiling)
    return xla.matmul(a, w)
