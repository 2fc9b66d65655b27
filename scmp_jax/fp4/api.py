"""Public FP4 API (SPEC.md section 9): ``quantize``, ``dequantize``, ``matmul``,
``block_transform`` and the ``FP4Tensor`` pytree.

Implementations are modules looked up by name in ``IMPLEMENTATIONS``:
``"xla"`` = ``scmp_jax.fp4.xla`` and ``"pallas"`` = ``scmp_jax.fp4.pallas``
(Triton kernels; interpret mode off GPU). ``None`` picks Pallas on GPU and
XLA elsewhere. A module may add ``quantize_fused`` (transform applied in the
kernel, input dtype read as is) and ``unsupported`` / ``unsupported_matmul``
(a reason string for configurations it cannot run: ``None`` then falls back
to XLA, an explicit name raises ValueError).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._src.platform import on_gpu
from .._src.errors import InvalidDtypeError
from .._src.sharding import sharded
from . import pallas as _pallas
from . import pallas_linear as _linear
from . import sharding as _sharding
from . import xla as _xla
from .config import PRESETS, FP4Config, check_positive, check_product
from .formats import ROUNDINGS

__all__ = ["FP4Tensor", "quantize", "dequantize", "matmul", "quantized_matmul", "block_transform",
           "IMPLEMENTATIONS", "register_implementation", "SCALE_TYPES"]

F32 = jnp.float32
#: scale format name -> the JAX dtype of ``FP4Tensor.scales``
SCALE_TYPES = {"e8m0": jnp.float8_e8m0fnu, "e4m3": jnp.float8_e4m3fn}
IMPLEMENTATIONS = {"xla": _xla, "pallas": _pallas}
_PLANNED = ()


def register_implementation(name: str, module) -> None:
    """Make ``module`` (with ``quantize``, ``dequantize``, ``matmul``,
    ``block_transform`` as in ``scmp_jax.fp4.xla``) available as ``implementation=name``."""
    IMPLEMENTATIONS[name] = module


def _resolve_impl(implementation) -> str:
    if implementation is None:
        return "pallas" if ("pallas" in IMPLEMENTATIONS and on_gpu()) else "xla"
    if isinstance(implementation, str) and implementation in IMPLEMENTATIONS:
        return implementation
    if implementation in _PLANNED:
        raise ValueError(f"implementation={implementation!r} is not yet available for fp4; "
                         "use implementation='xla' (or None)")
    raise ValueError(f"implementation must be None or one of "
                     f"{tuple(IMPLEMENTATIONS) + _PLANNED}, got {implementation!r}")


def _check_supported(impl, implementation, check, *args) -> str:
    """``impl``, or "xla" when the module cannot run this configuration and
    ``implementation`` is None (an explicit name raises ValueError)."""
    fn = getattr(IMPLEMENTATIONS[impl], check, None)
    why = fn(*args) if fn is not None else None
    if why is None:
        return impl
    if implementation is None:
        return "xla"
    raise ValueError(f"implementation={impl!r}: {why}")


@partial(jax.tree_util.register_dataclass,
         data_fields=["codes", "scales", "global_scale"],
         meta_fields=["group_size", "scale_dtype", "rounding", "shape"])
@dataclasses.dataclass(frozen=True)
class FP4Tensor:
    """FP4 tensor of logical shape ``shape = (..., K)``: ``codes`` uint8
    (..., K/2) packed e2m1 (element 2j low nibble of byte j); ``scales``
    (..., K/group_size) of dtype ``SCALE_TYPES[scale_dtype]``; ``global_scale``
    float32 scalar. ``group_size``, ``scale_dtype``, ``rounding``, ``shape`` are
    static pytree metadata."""
    codes: jax.Array
    scales: jax.Array
    global_scale: jax.Array
    group_size: int
    scale_dtype: str
    rounding: str
    shape: tuple

    @property
    def scale_bytes(self):
        """The scales' bit patterns, uint8 (..., K/group_size)."""
        return _u8(self.scales)

    def dequantize(self, *, implementation=None):
        return dequantize(self, implementation=implementation)


def _check_float(x, name):
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise InvalidDtypeError(f"{name} must be a float array, got dtype {x.dtype}")
    return x


def _config(config, group_size, scale_dtype, scale_scale, rounding) -> FP4Config:
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
    computed at trace time (``pallas_params.params``)."""
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


def _check_transform(transform, K):
    if transform is None:
        return None
    transform = _check_float(transform, "transform")
    s = tuple(np.shape(transform))
    g = s[-1] if s else 0
    if len(s) not in (2, 3) or s[-2] != g or g == 0 or K % g:
        raise ValueError(f"transform must be (g, g) or (K/g, g, g) with g dividing K={K}, "
                         f"got shape {s}")
    if len(s) == 3 and s[0] != K // g:
        raise ValueError(f"transform's leading axis must be K/g = {K // g}, got shape {s}")
    return transform


def _quantize_args(x, config, group_size, scale_dtype, scale_scale, global_scale, rounding,
                   transform, implementation):
    """Validated (x, config, transform, global scale, implementation) for ``quantize``."""
    impl = _resolve_impl(implementation)
    cfg = _config(config, group_size, scale_dtype, scale_scale, rounding)
    x = _check_float(x, "x")
    shape = tuple(np.shape(x))
    if len(shape) < 1:
        raise ValueError("x must have at least one dimension (groups run along the last axis)")
    K = shape[-1]
    if K == 0 or K % 2:
        raise ValueError(f"x's last axis must have even, non-zero length K, got K={K}")
    if K % cfg.group_size:
        raise ValueError(f"group_size must divide K={K}, got {cfg.group_size}")
    transform = _check_transform(transform, K)
    impl = _check_supported(impl, implementation, "unsupported", cfg.group_size,
                            None if transform is None else np.shape(transform))
    return x, cfg, transform, _global_scale(global_scale, cfg), impl


def quantize(x, config=None, *, group_size=None, scale_dtype=None, scale_scale=None,
             global_scale=None, rounding=None, transform=None, implementation=None) -> FP4Tensor:
    """Quantize float ``x`` (..., K) along its last axis to an ``FP4Tensor``.

    Settings come from ``config`` (``FP4Config``, ``MXFP4``, ``NVFP4``, or
    "mxfp4" / "nvfp4"), overridden by any keyword given; without a config,
    ``group_size``, ``scale_dtype`` and ``scale_scale`` are required
    (``global_scale`` defaults to 1, ``rounding`` to "even"). ``global_scale``
    may be a traced float32 scalar. ``transform`` (``(g, g)`` or
    ``(K/g, g, g)``) is applied first: block ``c`` becomes ``x_c @ T_c^T``."""
    x, cfg, transform, gs, impl = _quantize_args(x, config, group_size, scale_dtype, scale_scale,
                                                 global_scale, rounding, transform, implementation)
    shape = tuple(np.shape(x))
    args = (x, np.float32(cfg.scale_scale), gs, transform,
            np.int32(ROUNDINGS.index(cfg.rounding)))
    static = (cfg.group_size, cfg.scale_dtype, impl)
    shard = _sharding.plan_quantize(x, cfg.group_size, None if transform is None
                                    else tuple(np.shape(transform)))
    if shard is not None:
        codes, scales = _sharding.quantize(_quantize, *args, static, shard)
    else:
        codes, scales = _quantize(*args, *static)
    scales = jax.lax.bitcast_convert_type(scales, SCALE_TYPES[cfg.scale_dtype])
    return FP4Tensor(codes, scales, jnp.asarray(gs, F32), cfg.group_size, cfg.scale_dtype,
                     cfg.rounding, shape)


def quantized_matmul(x, w: "FP4Tensor", config=None, *, global_scale=None, transform=None,
                     quant_implementation=None, matmul_implementation=None):
    """``matmul(quantize(x, config, global_scale=, transform=), w)``: float
    activations (..., N, K) times fp4 weights (M, K) -> float32 (..., N, M).

    When both implementations are Pallas on the GPU, without a transform or
    sharded operands, the activation is quantized inside ``matmul``'s schedule
    with the same bits as the two calls: for the dequant schedule (prefill sized
    N) one kernel quantizes ``x`` and writes its bfloat16 values for the dense
    dot (``pallas_linear.linear_dequant``: no activation codes, no second decode pass);
    for the gemv schedule (N <= 2) the gemv kernel quantizes its slice of ``x``
    itself (``pallas_linear.linear_gemv``: one launch). Other N: two launches
    (``pallas_linear.linear_fused``, the activation quantized in each fused
    program, measured slower at N = 4..16: session 12)."""
    _check_tensor(w, "w")
    x, cfg, transform, gs, qi = _quantize_args(x, config, None, None, None, global_scale, None,
                                               transform, quant_implementation)
    mi = _resolve_impl(matmul_implementation)
    if len(np.shape(x)) < 2 or np.shape(x)[-1] != w.shape[-1]:
        raise ValueError(f"x must be (..., N, K) with w's K={w.shape[-1]}, got shape "
                         f"{tuple(np.shape(x))}")
    one = _one_pass(x, w, cfg, transform, qi, mi)
    if one is not None:
        return _linear_one_pass(x, np.float32(cfg.scale_scale), gs,
                                (w.codes, w.scales, w.global_scale), cfg.group_size,
                                cfg.scale_dtype, ROUNDINGS.index(cfg.rounding), w.scale_dtype, one)
    a = quantize(x, cfg, global_scale=gs, transform=transform, implementation=quant_implementation)
    return matmul(a, w, implementation=matmul_implementation)


def _one_pass(x, w, cfg, transform, qi, mi):
    """The fused schedule of ``quantized_matmul`` ("dequant" | "gemv"), or None
    (``x``'s shape against ``w`` is checked by the caller)."""
    shape = tuple(np.shape(x))
    if not (qi == mi == "pallas" and on_gpu() and transform is None
            and len(w.shape) == 2 and cfg.group_size >= 2
            and _pallas.unsupported_matmul(cfg.group_size, w.group_size) is None):
        return None
    if (_sharding.plan_quantize(x, cfg.group_size) is not None
            or sharded(w.codes, 2)[0] is not None):
        return None
    N = int(np.prod(shape[:-1]))
    t = _pallas.matmul_tiling(N, w.shape[0], shape[-1], cfg.group_size, w.group_size)
    return "dequant" if t.dequant else "gemv" if (t.gemv or t.mma) else None


def _linear_one_pass(x, scale_scale, global_scale, w, group_size, scale_dtype, rounding,
                     dtype_w, schedule):
    """Not jitted on purpose (as ``_quantize``): a concrete global scale and the
    config's scale scale and rounding index (a Python int) reach the kernel
    builders as host values, so ``linear_gemv`` bakes the rounding in and, for
    e8m0 scales, quantizes by thresholds (session 11: jitted here, every
    scalar was traced, and the kernel carried a branch on the rounding and
    divided per element)."""
    fn = _linear.linear_dequant if schedule == "dequant" else _linear.linear_gemv
    return fn(x, scale_scale, global_scale, (w[0], _u8(w[1]), w[2], dtype_w),
              group_size=group_size, scale_dtype=scale_dtype, rounding=rounding)


def _quantize(x, scale_scale, global_scale, transform, rounding, group_size, scale_dtype, impl):
    """Not jitted on purpose: concrete ``scale_scale`` / ``global_scale`` / rounding
    reach the kernels as NumPy values (``pallas_params.params`` turns them into kernel
    parameters at trace time); traced ones stay traced. Group size, scale format
    and implementation are static."""
    mod = IMPLEMENTATIONS[impl]
    if hasattr(mod, "quantize_fused"):
        t = None if transform is None else transform.astype(F32)
        return mod.quantize_fused(x, scale_scale, global_scale, t, group_size=group_size,
                                  scale_dtype=scale_dtype, rounding=rounding)
    x = x.astype(F32)
    if transform is not None:
        x = mod.block_transform(x, transform.astype(F32))
    return mod.quantize(x, scale_scale, global_scale, group_size=group_size,
                        scale_dtype=scale_dtype, rounding=rounding)


def _check_tensor(t, name):
    if not isinstance(t, FP4Tensor):
        raise TypeError(f"{name} must be an FP4Tensor, got {type(t).__name__}")


def dequantize(t: FP4Tensor, *, implementation=None):
    """``FP4Tensor`` -> float32 (..., K): ``code_value * (scale_deq * global_scale)``."""
    _check_tensor(t, "t")
    return _dequantize(t.codes, t.scales, t.global_scale, t.scale_dtype,
                       _resolve_impl(implementation))


def _u8(scales):
    return jax.lax.bitcast_convert_type(scales, jnp.uint8)


@partial(jax.jit, static_argnums=(3, 4))
def _dequantize(codes, scales, global_scale, scale_dtype, impl):
    return IMPLEMENTATIONS[impl].dequantize(codes, _u8(scales), global_scale,
                                            scale_dtype=scale_dtype)


def matmul(a: FP4Tensor, w: FP4Tensor, *, implementation=None):
    """Quantized linear without bias: activations ``a`` (..., N, K) times weights
    ``w`` (M, K) -> float32 (..., N, M) = ``dequant(a) @ dequant(w)^T``: group-scaled
    products summed in float32, then times ``alpha = gs_a * gs_w``; close to (not
    bit-equal with) a float64 reference."""
    _check_tensor(a, "a")
    _check_tensor(w, "w")
    if len(w.shape) != 2:
        raise ValueError(f"w must be 2D (M, K), got shape {w.shape}")
    if len(a.shape) < 2 or a.shape[-1] != w.shape[-1]:
        raise ValueError(f"a must be (..., N, K) with w's K={w.shape[-1]}, got shape {a.shape}")
    impl = _check_supported(_resolve_impl(implementation), implementation, "unsupported_matmul",
                            a.group_size, w.group_size)
    ops = (a.codes, a.scales, a.global_scale), (w.codes, w.scales, w.global_scale)
    shard = _sharding.plan_matmul(a.codes, w.codes)
    if shard is None:
        return _matmul(*ops, a.scale_dtype, w.scale_dtype, impl)
    tiling = None
    if hasattr(IMPLEMENTATIONS[impl], "matmul_tiling"):   # the global shape's tiling per shard
        K, N = a.shape[-1], int(np.prod(a.shape[:-1]))
        tiling = IMPLEMENTATIONS[impl].matmul_tiling(N, w.shape[0], K, a.group_size,
                                                     w.group_size, interpret=not on_gpu())
    return _sharding.matmul(_matmul, *ops, (a.scale_dtype, w.scale_dtype, impl, tiling), shard)


@partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _matmul(a, w, dtype_a, dtype_w, impl, tiling=None):
    kw = {} if tiling is None else {"tiling": tiling}
    return IMPLEMENTATIONS[impl].matmul((a[0], _u8(a[1]), a[2], dtype_a),
                                        (w[0], _u8(w[1]), w[2], dtype_w), **kw)


def block_transform(x, transform, *, implementation=None):
    """float (..., K) -> float32 (..., K), block ``c`` -> ``x_c @ T_c^T`` (float32
    dot, not bit-exact across backends); ``transform=None`` returns ``x``."""
    impl = _resolve_impl(implementation)
    x = _check_float(x, "x")
    if np.ndim(x) < 1:
        raise ValueError("x must have at least one dimension")
    transform = _check_transform(transform, np.shape(x)[-1])
    if transform is None:
        return jnp.asarray(x, F32)
    return _block_transform(x, transform, impl)


@partial(jax.jit, static_argnums=(2,))
def _block_transform(x, transform, impl):
    return IMPLEMENTATIONS[impl].block_transform(x.astype(F32), transform.astype(F32))
