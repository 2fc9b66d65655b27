"""One compiled program per call signature for functions that want their
concrete scalars as host values.

Some kernel builders read scalars (scales, the rounding index) at trace time
when they are concrete, to bake them into the kernel, and stage them when they
are traced. Called op by op, such a function re-traces and re-lowers its
kernels on every call. ``call_with_host_scalars`` jits it instead: concrete
scalars become part of the cache key (by type and exact bits, so ``-0.0`` and
``0.0`` or two NaN payloads never share a program) and reach ``fn`` as the same
host values; traced scalars stay arguments.
"""
from __future__ import annotations

from functools import partial

import jax
import numpy as np

__all__ = ["call_with_host_scalars"]


def _key(v):
    if isinstance(v, (bool, int)):
        return ("py", type(v).__name__, v)
    a = np.asarray(v)
    return ("np", a.dtype.str, a.shape, a.tobytes(), isinstance(v, np.ndarray))


def _value(key):
    if key[0] == "py":
        return key[2]
    _, dtype, shape, raw, is_array = key
    a = np.frombuffer(raw, dtype).reshape(shape)
    return a.copy() if is_array else a[()]


@partial(jax.jit, static_argnums=(0, 3, 4))
def _run(fn, arrays, traced, host, static):
    scalars = tuple(t if h is None else _value(h) for t, h in zip(traced, host))
    return fn(*arrays, *scalars, *static)


def call_with_host_scalars(fn, arrays: tuple, scalars: tuple, static: tuple):
    """``fn(*arrays, *scalars, *static)`` compiled once per shapes, ``static``
    (hashable) and concrete scalar values. ``fn`` must be a module-level function
    (it keys the cache); ``arrays`` may hold None."""
    is_traced = [isinstance(s, jax.core.Tracer) for s in scalars]
    traced = tuple(s if t else None for s, t in zip(scalars, is_traced))
    host = tuple(None if t else _key(s) for s, t in zip(scalars, is_traced))
    return _run(fn, tuple(arrays), traced, host, tuple(static))
