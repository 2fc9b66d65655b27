"""Typed errors and the argument checks every public op shares."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["InvalidDtypeError", "is_int", "check_float", "with_dtype"]


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
    """``x`` when it is a float array, else ``InvalidDtypeError`` naming it."""
    x, dt = with_dtype(x)
    if not jnp.issubdtype(dt, jnp.floating):
        raise InvalidDtypeError(f"{name} must be a float array, got dtype {dt}")
    return x
