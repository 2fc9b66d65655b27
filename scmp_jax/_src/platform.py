"""Which lowering the ops target: the GPU (compiled Triton kernels, integer IEEE
division, GPU heuristics) or the host. The one place that asks JAX's backend.

``gpu_lowering()`` makes every op behave as on a GPU while tracing (tests lower
the kernels for CUDA on a CPU-only machine through it)."""
from __future__ import annotations

import contextlib

import jax

__all__ = ["on_gpu", "soft_division_default", "gpu_lowering"]

_FORCED: bool | None = None      # None: ask jax.default_backend()


def on_gpu() -> bool:
    """True when ops target the GPU (the default backend, or forced)."""
    return jax.default_backend() == "gpu" if _FORCED is None else _FORCED


def soft_division_default() -> bool:
    """Integer IEEE division is needed on every backend but the CPU, whose
    native float32 division is correctly rounded."""
    return jax.default_backend() != "cpu" if _FORCED is None else _FORCED


@contextlib.contextmanager
def gpu_lowering(enabled: bool = True):
    """Within the block, ops resolve as on a GPU (``enabled``) or as on the host."""
    global _FORCED
    prev, _FORCED = _FORCED, bool(enabled)
    try:
        yield
    finally:
        _FORCED = prev
