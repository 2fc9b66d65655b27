"""Typed errors and the argument checks every public op shares."""
from __future__ import annotations

import numpy as np

__all__ = ["InvalidDtypeError", "FLOAT_DTYPES", "is_int", "check_float", "check_bool",
           "check_int", "with_dtype"]

#: The float dtypes a public op accepts as input (SPEC.md section 7.6); the
#: golden model's ``golden.errors.FLOAT_DTYPES`` is the same tuple.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


class InvalidDtypeError(ValueError, TypeError):
    """An operand of the wrong dtype: both a ValueError (the spec's contract)
    and a TypeError."""


def is_int(v) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def with_dtype(x):
    """``(x, dtype)``; array-likes without a dtype become NumPy arrays."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        x = np.asarray(x)
        dt = x.dtype
    return x, dt


def check_float(x, name: str):
    """``x`` when its dtype is one of ``FLOAT_DTYPES``, else ``InvalidDtypeError``
    naming it (float8 / float4, integers, bools and complex are rejected)."""
    x, dt = with_dtype(x)
    if np.dtype(dt).name not in FLOAT_DTYPES:
        raise InvalidDtypeError(f"{name} must be a float array ({', '.join(FLOAT_DTYPES)}), "
                                f"got dtype {dt}")
    return x


def check_bool(v, name: str) -> bool:
    """``v`` as a bool when it is one (Python or NumPy), else TypeError naming it:
    a string such as "no" or an int is not a flag."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {v!r}")
    return bool(v)


def check_int(v, name: str, lo: int | None = None) -> int:
    """``v`` as an int: TypeError naming it unless an int (bools are not), ValueError
    below ``lo``."""
    if not is_int(v):
        raise TypeError(f"{name} must be an int, got {v!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)
