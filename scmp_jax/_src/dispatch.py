"""``implementation=None | "xla" | "pallas"``, resolved once at an op's API
boundary into a frozen ``Backend`` that is passed down (and is part of every
jit key). None picks Pallas on the GPU and XLA elsewhere; "pallas" off the GPU
runs the kernels in interpret mode; a named implementation that cannot run
raises."""
from __future__ import annotations

import dataclasses

from . import ieee, platform

__all__ = ["IMPLEMENTATIONS", "Backend", "resolve", "triton_params"]

IMPLEMENTATIONS = (None, "xla", "pallas")


@dataclasses.dataclass(frozen=True)
class Backend:
    """A resolved implementation: ``name`` "xla" or "pallas"; ``interpret``:
    Pallas kernels in interpret mode; ``gpu``: the GPU is the target (schedule
    and count-method heuristics); ``soft_div``: integer IEEE division."""
    name: str = "xla"
    interpret: bool = True
    gpu: bool = False
    soft_div: bool = False

    @property
    def pallas(self) -> bool:
        return self.name == "pallas"


def resolve(implementation, *, op: str, pallas_ready: bool = True) -> Backend:
    """The ``Backend`` of ``implementation`` for ``op`` on the current platform."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"{op}: implementation must be one of {IMPLEMENTATIONS}, "
                         f"got {implementation!r}")
    gpu = platform.on_gpu()
    if implementation is None:
        name = "pallas" if (pallas_ready and gpu) else "xla"
    elif implementation == "pallas" and not pallas_ready:
        raise ValueError(f"{op}: implementation='pallas' has no kernel for these arguments; "
                         "use implementation='xla'")
    else:
        name = implementation
    return Backend(name=name, interpret=not gpu, gpu=gpu, soft_div=ieee.use_soft())


def triton_params(interpret: bool, warps: int = 4, stages: int = 1) -> dict:
    """``pallas_call`` keyword arguments for a compiled Triton kernel (none in
    interpret mode)."""
    if interpret:
        return {}
    from jax.experimental.pallas import triton as pltriton   # GPU-only module
    return {"compiler_params": pltriton.CompilerParams(num_warps=warps, num_stages=stages)}

