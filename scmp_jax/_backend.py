"""Choosing an implementation: ``None | "xla" | "pallas"``."""
from __future__ import annotations

import jax

__all__ = ["IMPLEMENTATIONS", "on_gpu", "resolve_implementation"]

IMPLEMENTATIONS = (None, "xla", "pallas")


def on_gpu() -> bool:
    return jax.default_backend() == "gpu"


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
