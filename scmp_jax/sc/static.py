"""The frozen static configuration of one SC matmul call, resolved and
validated once at the API (``api.sc_matmul``) and passed down to every stage;
it is part of every jit key."""
from __future__ import annotations

import dataclasses

import numpy as np

from .._src import granularity as GR
from .._src.dispatch import Backend
from .._src.granularity import Granularity
from ..quant import xla as QX

__all__ = ["Static"]


@dataclasses.dataclass(frozen=True)
class Static:
    """Resolved, validated static arguments of one call."""
    granularity: Granularity    # the strategy (``_src.granularity``), or its name
    mode: str
    p: int
    L: int
    G: int
    chunk_d: int = 0
    group_a: int = 1
    group_b: int = 1
    backend: Backend = Backend()    # resolved once by the API (``_src.dispatch.resolve``)
    counts: str = "gather"      # "dense": counts as an int8 matmul (``dense``)
    cap: int = 256 << 20        # table bytes; beyond it the chunked path builds tables per d-chunk
    axes_a: tuple = ()          # mesh axes a / b are sharded over (inside shard_map)
    axes_b: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "granularity", GR.get(self.granularity))

    @property
    def V(self) -> int:
        return self.G + 1

    @property
    def f(self) -> np.float32:
        q = QX.qmax(self.mode, self.p)
        return np.float32(q * q) / np.float32(self.L)

    def schemes(self) -> tuple[QX.Scheme, QX.Scheme]:
        """Quantization of a and b (chunk_d: per-row reciprocal form per chunk)."""
        chunk = self.chunk_d > 0
        return (QX.Scheme(self.granularity, self.mode, self.p, self.G, self.group_a, chunk,
                          self.axes_a),
                QX.Scheme(self.granularity, self.mode, self.p, self.G, self.group_b, chunk,
                          self.axes_b))
