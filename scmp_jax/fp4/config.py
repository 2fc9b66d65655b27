"""FP4 quantizer settings: ``FP4Config`` and the MXFP4 / NVFP4 presets (SPEC.md section 9).

A config is a frozen, hashable value (usable as a static jit argument),
validated once when built; every error is a ValueError naming the argument.
``check_fields`` validates the kernels' frozen tiling dataclasses the same way.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .._src.errors import check_bool, is_int
from .formats import ROUNDINGS, SCALE_DTYPES

__all__ = ["FP4Config", "MXFP4", "NVFP4", "PRESETS", "check_positive", "check_product",
           "check_fields", "pow2", "check_weight_only"]


def pow2(n: int) -> bool:
    """``n`` is a power of two (>= 1)."""
    return n >= 1 and n & (n - 1) == 0


def check_fields(tiling, pow2=(), positive=()):
    """ValueError / TypeError naming a tiling field that is not an int (powers of
    two for block dims and warps, >= 1 for the rest; NumPy ints stored as int) or
    a bool field that is not a bool."""
    name = type(tiling).__name__
    for f in pow2 + positive:
        v = getattr(tiling, f)
        if not is_int(v):
            raise TypeError(f"{name}.{f} must be an int, got {v!r}")
        if v < 1 or (f in pow2 and v & (v - 1)):
            raise ValueError(f"{name}.{f} must be {'a power of two' if f in pow2 else '>= 1'}"
                             f", got {v}")
        object.__setattr__(tiling, f, int(v))
    for x in dataclasses.fields(tiling):
        if x.type in ("bool", bool) and not isinstance(getattr(tiling, x.name), bool):
            raise TypeError(f"{name}.{x.name} must be a bool, got {getattr(tiling, x.name)!r}")


def check_weight_only(weight_only, unused: dict) -> bool:
    """The ``weight_only`` flag of the fp4 layers and rules as a bool (TypeError
    unless one); with it, each argument of ``unused`` (name -> value: settings of
    the activation's quantization, which weight-only mode does not do) must be
    None, else ValueError naming it."""
    wo = check_bool(weight_only, "weight_only")
    given = [k for k, v in unused.items() if v is not None] if wo else []
    if given:
        raise ValueError(f"{given[0]} must be None with weight_only=True (the activation is not "
                         f"quantized; the weight's format is fmt), got {unused[given[0]]!r}")
    return wo


def check_positive(v, name: str) -> float:
    """A positive finite real scalar (as a float32 value) -> Python float."""
    bad = ValueError(f"{name} must be a positive finite scalar, got {v!r}")
    if isinstance(v, (bool, np.bool_)) or np.ndim(v) != 0:
        raise bad
    try:
        with np.errstate(all="ignore"):
            f = np.float32(v)
    except (TypeError, ValueError):
        raise bad from None
    if not (math.isfinite(f) and f > 0):
        raise bad
    return float(f)


def check_product(scale_scale: float, global_scale: float) -> None:
    """``float32(scale_scale) * float32(global_scale)`` must be positive and finite
    (it is the divisor of every ``amax``)."""
    with np.errstate(all="ignore"):
        prod = np.float32(scale_scale) * np.float32(global_scale)
    if not (math.isfinite(prod) and prod > 0):
        raise ValueError(f"scale_scale * global_scale must be a positive finite float32, got "
                         f"{scale_scale} * {global_scale} = {prod}")


@dataclasses.dataclass(frozen=True)
class FP4Config:
    """``group_size`` elements of the last axis share one scale of format
    ``scale_dtype`` ("e8m0" | "e4m3"); ``scale = amax / (scale_scale *
    global_scale)``; e2m1 ties by ``rounding`` ("even" | "zero" | "down" | "up")."""
    group_size: int
    scale_dtype: str
    scale_scale: float
    global_scale: float = 1.0
    rounding: str = "even"

    def __post_init__(self):
        if not is_int(self.group_size) or self.group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {self.group_size!r}")
        if self.scale_dtype not in SCALE_DTYPES:
            raise ValueError(f"scale_dtype must be one of {SCALE_DTYPES}, got {self.scale_dtype!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        ss = check_positive(self.scale_scale, "scale_scale")
        gs = check_positive(self.global_scale, "global_scale")
        check_product(ss, gs)
        object.__setattr__(self, "group_size", int(self.group_size))
        object.__setattr__(self, "scale_scale", ss)
        object.__setattr__(self, "global_scale", gs)


#: e8m0 scales, groups of 32 (SPEC's typical scale_scale=4, global_scale=1/3).
MXFP4 = FP4Config(group_size=32, scale_dtype="e8m0", scale_scale=4.0, global_scale=1 / 3)
#: e4m3fn scales, groups of 16 (SPEC's typical scale_scale=6); global scale 1.
NVFP4 = FP4Config(group_size=16, scale_dtype="e4m3", scale_scale=6.0, global_scale=1.0)
PRESETS = {"mxfp4": MXFP4, "nvfp4": NVFP4}
