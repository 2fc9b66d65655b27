"""Choosing an implementation: ``None | "xla" | "pallas"``."""
from __future__ import annotations

import jax

__all__ = ["IMPLEMENTATIONS", "on_gpu", "resolve_implementation", "triton_params"]

IMPLEMENTATIONS = (None, "xla", "pallas")


def on_gpu() -> bool:
    return jax.default_backend() == "gpu"


def triton_params(interpret: bool, warps: int = 4, stages: int = 1) -> dict:
    """``pallas_call`` keyword arguments for a compiled Triton kernel (none in
    interpret mode, or where jax has no Pallas Triton module)."""
    if interpret:
        return {}
    try:  # jax >= 0.10: Triton-specific pieces live under pallas.triton
        from jax.experimental.pallas import triton as pltriton
    except ImportError:  # pragma: no cover
        return {}
    return {"compiler_params": pltriton.CompilerParams(num_warps=warps, num_stages=stages)}


def resolve_implementation(implementation, *, pallas_ready: bool) -> str:
    """None picks Pallas on GPU (when the op has a kernel) and XLA elsewhere.
    A named implementation that cannot run raises."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation is None:
        return "pallas" if (pallas_ready and on_gpu()) else "xla"
    if implementation == "pallas" and not pallas_ready:
        raise NotImplementedError("implementation='pallas' has no kernel for this op yet; "
                                  "use implementation='xla'")
    return implementation
