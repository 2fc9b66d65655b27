"""The argument checks the golden entry points share (SPEC.md section 7.6).

``FLOAT_DTYPES`` is the float input policy; ``scmp_jax._src.errors`` holds the
same tuple (golden never imports scmp_jax; a test compares the two).
"""
from __future__ import annotations

import numpy as np

__all__ = ["InvalidDtypeError", "FLOAT_DTYPES", "is_int", "check_bool", "check_float",
           "as_float32"]

#: The float dtypes accepted as input, by NumPy name (bfloat16 is ml_dtypes').
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


class InvalidDtypeError(ValueError, TypeError):
    """A non-float operand (both a ValueError, as SPEC.md says, and a TypeError)."""


def is_int(v) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_bool(v, name: str) -> bool:
    """``v`` as a bool when it is one (Python or NumPy), else TypeError naming it."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return bool(v)


def check_float(x, name: str) -> np.ndarray:
    """``x`` as an array when its dtype is one of ``FLOAT_DTYPES``, else
    ``InvalidDtypeError`` naming it (float8 / float4, ints, bools, complex)."""
    x = np.asarray(x)
    if x.dtype.name not in FLOAT_DTYPES:
        raise InvalidDtypeError(f"{name} must be a float array ({', '.join(FLOAT_DTYPES)}), "
                                f"got dtype {x.dtype}")
    return x


def as_float32(x, name: str) -> np.ndarray:
    """``check_float(x, name)`` converted to float32."""
    return check_float(x, name).astype(np.float32)
