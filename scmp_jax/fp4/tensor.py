"""The ``FP4Tensor`` pytree (SPEC.md section 9), its checks and its dequantization.

``dequantize`` is elementwise, so every implementation runs the XLA function
(``quantize.xla.dequantize``); ``implementation=`` is still validated.

Checks: the static fields always and every leaf that is an array when the
tensor is built (tree transformations rebuild it with placeholder leaves:
those are skipped); all leaves again when an op uses it (``check_tensor``).
Leaves may carry extra leading axes (stacked layers, vmap outputs), and traced
leaves may lack leading ones (inside vmap / scan); the trailing axes must fit
``shape``. A concrete global scale that is not positive and finite is an
error; a traced one makes the op's results NaN (``positive_or_nan``).
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._src import dispatch
from .._src.errors import is_int
from .formats import ROUNDINGS
from .quantize import xla
from .softfloat import bits

__all__ = ["FP4Tensor", "SCALE_TYPES", "dequantize", "scale_bytes", "check_tensor",
           "positive_or_nan"]

#: scale format name -> the JAX dtype of ``FP4Tensor.scales``
SCALE_TYPES = {"e8m0": jnp.float8_e8m0fnu, "e4m3": jnp.float8_e4m3fn}


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

    def __post_init__(self):
        _check_static(self)
        _check_leaves(self, "FP4Tensor", at_use=False)

    @property
    def scale_bytes(self):
        """The scales' bit patterns, uint8 (..., K/group_size)."""
        return scale_bytes(self.scales)

    def dequantize(self, *, implementation=None):
        return dequantize(self, implementation=implementation)


def scale_bytes(scales):
    """float8 scales -> their bit patterns, uint8 (a bitcast)."""
    return jax.lax.bitcast_convert_type(scales, jnp.uint8)


def _is_array(x) -> bool:
    """An array, tracer or shape-dtype struct; anything else is a placeholder."""
    return isinstance(x, (np.ndarray, np.generic, jax.ShapeDtypeStruct, jax.Array))


def _check_static(t) -> None:
    """group_size, scale_dtype, rounding and shape (stored as Python ints)."""
    if not is_int(t.group_size):
        raise TypeError(f"FP4Tensor.group_size must be an int, got {t.group_size!r}")
    if t.scale_dtype not in SCALE_TYPES:
        raise ValueError(f"FP4Tensor.scale_dtype must be one of {tuple(SCALE_TYPES)}, "
                         f"got {t.scale_dtype!r}")
    if t.rounding not in ROUNDINGS:
        raise ValueError(f"FP4Tensor.rounding must be one of {ROUNDINGS}, got {t.rounding!r}")
    shape = tuple(t.shape) if isinstance(t.shape, (tuple, list)) else ()
    if not shape or not all(is_int(d) and d >= 0 for d in shape) or shape[-1] % 2 \
            or shape[-1] == 0:
        raise ValueError(f"FP4Tensor.shape must be a tuple of ints (..., K) with K even and "
                         f"non-zero, got {t.shape!r}")
    if t.group_size < 1 or shape[-1] % t.group_size:
        raise ValueError(f"FP4Tensor.group_size must be a positive int dividing K={shape[-1]}, "
                         f"got {t.group_size}")
    object.__setattr__(t, "shape", tuple(int(d) for d in shape))
    object.__setattr__(t, "group_size", int(t.group_size))


def _check_leaves(t, name: str, at_use: bool) -> None:
    """dtype and shape of each leaf against the static fields (module doc)."""
    K, lead = t.shape[-1], t.shape[:-1]
    want = {"codes": (jnp.uint8, lead + (K // 2,)),
            "scales": (SCALE_TYPES[t.scale_dtype], lead + (K // t.group_size,)),
            "global_scale": (jnp.float32, None)}
    extra = None              # (axes beyond ``shape``, their sizes) of codes and scales
    for field, (dtype, shape) in want.items():
        x = getattr(t, field)
        traced = isinstance(x, jax.core.Tracer)
        if not _is_array(x) or (traced and not at_use):
            if at_use:
                raise TypeError(f"{name}.{field} must be an array, got {type(x).__name__}")
            continue
        if x.dtype != dtype:
            raise TypeError(f"{name}.{field} must be {np.dtype(dtype).name}, got {x.dtype}")
        got = tuple(x.shape)
        if shape is None:                 # global_scale: one per slice of stacked leaves
            ok = got == (() if at_use or extra is None else extra[1])
        else:
            d = len(got) - len(shape)     # > 0: stacked (built only); < 0: inside vmap
            fit = got[max(d, 0):] == shape[max(-d, 0):]
            ok = fit and (d == 0 or (d > 0 and not at_use) or (d < 0 and traced))
            ok = ok and extra in (None, (d, got[:max(d, 0)]))
            extra = (d, got[:max(d, 0)])
        if not ok:
            desc = "a float32 scalar" if shape is None else f"of shape {shape}"
            raise ValueError(f"{name}.{field} must be {desc} for shape={t.shape}, "
                             f"group_size={t.group_size}, got shape {got}")
        concrete = isinstance(x, (np.ndarray, np.generic)) or (
            at_use and not traced and isinstance(x, jax.Array) and x.is_fully_addressable)
        if shape is None and concrete:
            v = np.asarray(x, np.float32)
            if not (np.isfinite(v).all() and (v > 0).all()):
                raise ValueError(f"{name}.global_scale must be positive and finite, got {v}")


def check_tensor(t, name):
    """TypeError naming ``name`` unless ``t`` is an ``FP4Tensor``; then every
    field checked (ValueError / TypeError naming ``name.field``)."""
    if not isinstance(t, FP4Tensor):
        raise TypeError(f"{name} must be an FP4Tensor, got {type(t).__name__}")
    _check_leaves(t, name, at_use=True)


def positive_or_nan(gs):
    """``gs``, or NaN where it is not positive and finite (for a traced global
    scale, which cannot raise); compares bit patterns, so subnormals count."""
    b = bits(gs)
    return jnp.where((b > 0) & (b < 0x7F800000), jnp.asarray(gs, jnp.float32), jnp.nan)


def dequantize(t: FP4Tensor, *, implementation=None):
    """``FP4Tensor`` -> float32 (..., K): ``code_value * (scale_deq * global_scale)``."""
    check_tensor(t, "t")
    dispatch.resolve(implementation, op="fp4.dequantize")
    return _dequantize(t.codes, t.scales, t.global_scale, t.scale_dtype)


@partial(jax.jit, static_argnums=(3,))
def _dequantize(codes, scales, global_scale, scale_dtype):
    gs = positive_or_nan(global_scale)
    if codes.ndim > gs.ndim > 0:                  # stacked tensors: one scale per slice
        gs = gs.reshape(gs.shape + (1,) * (codes.ndim - gs.ndim))
    return xla.dequantize(codes, scale_bytes(scales), gs, scale_dtype=scale_dtype)
