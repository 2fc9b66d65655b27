"""``fp4.quantize`` and ``fp4.block_transform`` (SPEC.md section 9).

``implementation=`` is resolved once here (``fp4.backend.resolve``) into a
``Backend`` that is passed down: ``"xla"`` runs ``quantize.xla``,
``"pallas"`` the kernels of ``quantize.pallas`` (the transform applied in the
kernel, the input dtype read as is; interpret mode off the GPU). None picks
Pallas on the GPU and XLA elsewhere; a configuration the kernels cannot run
(``quantize.pallas.unsupported``) falls back to XLA with None and raises
ValueError with ``"pallas"``.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..._src import grad as GD
from ..._src.errors import check_float
from ..._src.hostjit import call_with_host_scalars
from .. import sharding as SH
from ..backend import Backend, resolve
from ..config import PRESETS, FP4Config, check_positive, check_product
from ..formats import ROUNDINGS
from ..tensor import SCALE_TYPES, FP4Tensor
from . import pallas, xla

__all__ = ["quantize", "block_transform", "quantize_args", "quantize_backend", "quantize_on",
           "config_of", "check_transform", "ROUNDS_FP4", "QUANTIZE_HINT"]

F32 = jnp.float32

ROUNDS_FP4 = "it rounds to fp4 codes, so the true gradient is zero almost everywhere"
QUANTIZE_HINT = ("for a straight-through estimator use fp4.quantized_matmul(x, w, "
                 "grad='ste') (or a QuantLinear with grad='ste')")


def config_of(config, group_size=None, scale_dtype=None, scale_scale=None,
              rounding=None) -> FP4Config:
    """``config`` (FP4Config, preset name or None) with the keywords given applied."""
    if isinstance(config, str):
        if config.lower() not in PRESETS:
            raise ValueError(f"config must be an FP4Config or one of {tuple(PRESETS)}, "
                             f"got {config!r}")
        config = PRESETS[config.lower()]
    over = {k: v for k, v in dict(group_size=group_size, scale_dtype=scale_dtype,
                                   scale_scale=scale_scale, rounding=rounding).items()
            if v is not None}
    if config is None:
        missing = [k for k in ("group_size", "scale_dtype", "scale_scale") if k not in over]
        if missing:
            raise ValueError(f"quantize needs a config or {', '.join(missing)}")
        return FP4Config(**over)
    if not isinstance(config, FP4Config):
        raise ValueError(f"config must be an FP4Config or one of {tuple(PRESETS)}, got {config!r}")
    return dataclasses.replace(config, **over) if over else config


def _global_scale(global_scale, cfg: FP4Config):
    """float32 scalar, validated unless traced; concrete values stay NumPy (not a
    traced constant under a caller's jit) so the Pallas kernels' parameters are
    computed at trace time (``quantize.params.params``)."""
    if global_scale is None:
        return np.float32(cfg.global_scale)
    if isinstance(global_scale, jax.core.Tracer):
        if global_scale.shape != ():
            raise ValueError(f"global_scale must be a scalar, got shape {global_scale.shape}")
        return global_scale.astype(F32)
    gs = check_positive(np.asarray(global_scale) if hasattr(global_scale, "dtype")
                        else global_scale, "global_scale")
    check_product(cfg.scale_scale, gs)
    return np.float32(gs)


def check_transform(transform, K):
    """None, or a float ``(g, g)`` / ``(K/g, g, g)`` transform (ValueError otherwise)."""
    if transform is None:
        return None
    transform = check_float(transform, "transform")
    s = tuple(np.shape(transform))
    g = s[-1] if s else 0
    if len(s) not in (2, 3) or s[-2] != g or g == 0 or K % g:
        raise ValueError(f"transform must be (g, g) or (K/g, g, g) with g dividing K={K}, "
                         f"got shape {s}")
    if len(s) == 3 and s[0] != K // g:
        raise ValueError(f"transform's leading axis must be K/g = {K // g}, got shape {s}")
    return transform


def quantize_args(x, config=None, group_size=None, scale_dtype=None, scale_scale=None,
                  global_scale=None, rounding=None, transform=None):
    """Validated (x, config, transform, global scale) of a ``quantize`` call."""
    cfg = config_of(config, group_size, scale_dtype, scale_scale, rounding)
    x = check_float(x, "x")
    shape = tuple(np.shape(x))
    if len(shape) < 1:
        raise ValueError("x must have at least one dimension (groups run along the last axis)")
    K = shape[-1]
    if K == 0 or K % 2:
        raise ValueError(f"x's last axis must have even, non-zero length K, got K={K}")
    if K % cfg.group_size:
        raise ValueError(f"group_size must divide K={K}, got {cfg.group_size}")
    transform = check_transform(transform, K)
    return x, cfg, transform, _global_scale(global_scale, cfg)


def quantize_backend(implementation, cfg: FP4Config, transform, op="fp4.quantize") -> Backend:
    """The ``Backend`` of ``implementation`` for quantizing with ``cfg`` / ``transform``."""
    why = pallas.unsupported(cfg.group_size, None if transform is None else np.shape(transform))
    return resolve(implementation, op=op, why_not=why)


def quantize(x, config=None, *, group_size=None, scale_dtype=None, scale_scale=None,
             global_scale=None, rounding=None, transform=None, implementation=None) -> FP4Tensor:
    """Quantize float ``x`` (..., K) along its last axis to an ``FP4Tensor``.

    Settings come from ``config`` (``FP4Config``, ``MXFP4``, ``NVFP4``, or
    "mxfp4" / "nvfp4"), overridden by any keyword given; without a config,
    ``group_size``, ``scale_dtype`` and ``scale_scale`` are required
    (``global_scale`` defaults to 1, ``rounding`` to "even"). ``global_scale``
    may be a traced float32 scalar. ``transform`` (``(g, g)`` or
    ``(K/g, g, g)``) is applied first: block ``c`` becomes ``x_c @ T_c^T``.
    Not differentiable (``NotDifferentiableError``); ``quantized_matmul(x, w,
    grad="ste")`` is the straight-through estimator of quantize-then-matmul."""
    x, cfg, transform, gs = quantize_args(x, config, group_size, scale_dtype, scale_scale,
                                          global_scale, rounding, transform)
    backend = quantize_backend(implementation, cfg, transform)
    return GD.call(lambda x, t, gs: quantize_on(x, cfg, t, gs, backend), (x, transform, gs),
                   op="fp4.quantize", why=ROUNDS_FP4, hint=QUANTIZE_HINT)


def quantize_on(x, cfg: FP4Config, transform, gs, backend: Backend) -> FP4Tensor:
    """``quantize`` of validated arguments (``quantize_args``) on ``backend``;
    sharded ``x`` runs per shard (``fp4.sharding``)."""
    shape = tuple(np.shape(x))
    args = (x, np.float32(cfg.scale_scale), gs, transform,
            np.int32(ROUNDINGS.index(cfg.rounding)))
    static = (cfg.group_size, cfg.scale_dtype, backend)
    shard = SH.plan_quantize(x, cfg.group_size, None if transform is None
                             else tuple(np.shape(transform)))
    if shard is not None:
        codes, scales = SH.quantize(_quantize, *args, static, shard)
    else:
        codes, scales = _quantize(*args, *static)
    scales = jax.lax.bitcast_convert_type(scales, SCALE_TYPES[cfg.scale_dtype])
    return FP4Tensor(codes, scales, jnp.asarray(gs, F32), cfg.group_size, cfg.scale_dtype,
                     cfg.rounding, shape)


def _quantize(x, scale_scale, global_scale, transform, rounding, group_size, scale_dtype,
              backend):
    """Group size, scale format and backend are static. For the kernels,
    concrete ``scale_scale`` / ``global_scale`` / rounding reach the builders as
    host values (``quantize.params.params`` turns them into kernel parameters at
    trace time) and traced ones stay traced, one program per signature."""
    if backend.pallas:
        return call_with_host_scalars(_quantize_pallas, (x, transform),
                                      (scale_scale, global_scale, rounding),
                                      (group_size, scale_dtype, backend))
    return _quantize_xla(x, scale_scale, global_scale, transform, rounding, group_size,
                         scale_dtype)


def _quantize_pallas(x, transform, scale_scale, global_scale, rounding, group_size,
                     scale_dtype, backend):
    t = None if transform is None else transform.astype(F32)
    return pallas.quantize_fused(x, scale_scale, global_scale, t, group_size=group_size,
                                 scale_dtype=scale_dtype, rounding=rounding, backend=backend)


@partial(jax.jit, static_argnums=(5, 6))
def _quantize_xla(x, scale_scale, global_scale, transform, rounding, group_size, scale_dtype):
    """One compiled program per shape and format: run op by op, the integer
    arithmetic of the XLA quantizer compiles each primitive separately (seconds
    per call); the scalars are traced arguments, so the arithmetic is the same."""
    x = x.astype(F32)
    if transform is not None:
        x = xla.block_transform(x, transform.astype(F32))
    return xla.quantize(x, scale_scale, global_scale, group_size=group_size,
                        scale_dtype=scale_dtype, rounding=rounding)


def block_transform(x, transform, *, implementation=None):
    """float (..., K) -> float32 (..., K), block ``c`` -> ``x_c @ T_c^T`` (float32
    dot, not bit-exact across backends); ``transform=None`` returns ``x``. Every
    implementation runs the XLA einsum (no kernel needed)."""
    resolve(implementation, op="fp4.block_transform")
    x = check_float(x, "x")
    if np.ndim(x) < 1:
        raise ValueError("x must have at least one dimension")
    transform = check_transform(transform, np.shape(x)[-1])
    if transform is None:
        return jnp.asarray(x, F32)
    return _block_transform(x, transform)


@jax.jit
def _block_transform(x, transform):
    return xla.block_transform(x.astype(F32), transform.astype(F32))
