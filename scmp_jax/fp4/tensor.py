"""The ``FP4Tensor`` pytree (SPEC.md section 9) and its dequantization.

``dequantize`` is elementwise, so every implementation runs the XLA function
(``quantize.xla.dequantize``); ``implementation=`` is still validated.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp

from .._src import dispatch
from .quantize import xla

__all__ = ["FP4Tensor", "SCALE_TYPES", "dequantize", "scale_bytes", "check_tensor"]

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

    @property
    def scale_bytes(self):
        """The scales' bit patterns, uint8 (..., K/group_size)."""
        return scale_bytes(self.scales)

    def dequantize(self, *, implementation=None):
        return dequantize(self, implementation=implementation)


def scale_bytes(scales):
    """float8 scales -> their bit patterns, uint8 (a bitcast)."""
    return jax.lax.bitcast_convert_type(scales, jnp.uint8)


def check_tensor(t, name):
    """TypeError naming ``name`` unless ``t`` is an ``FP4Tensor``."""
    if not isinstance(t, FP4Tensor):
        raise TypeError(f"{name} must be an FP4Tensor, got {type(t).__name__}")


def dequantize(t: FP4Tensor, *, implementation=None):
    """``FP4Tensor`` -> float32 (..., K): ``code_value * (scale_deq * global_scale)``."""
    check_tensor(t, "t")
    dispatch.resolve(implementation, op="fp4.dequantize")
    return _dequantize(t.codes, t.scales, t.global_scale, t.scale_dtype)


@partial(jax.jit, static_argnums=(3,))
def _dequantize(codes, scales, global_scale, scale_dtype):
    return xla.dequantize(codes, scale_bytes(scales), global_scale, scale_dtype=scale_dtype)
