"""The fp4 Pallas matmul schedules by name, one frozen tiling per schedule
(SPEC.md section 9). Passing one to ``matmul.pallas.matmul(tiling=...)``
forces its schedule; ``matmul.heuristic.choose`` picks one by shape.

* ``"gemv"`` (``GemvTiling``): few activation rows, no dot: each program
  decodes a weight tile per K step and multiplies it by every activation row
  (``schedules.gemv``).
* ``"dp4a"`` (``Dp4aTiling``): the gemv grid with integer group dots
  (``schedules.dp4a``; PTX ``dp4a`` on the GPU).
* ``"fused"`` (``FusedTiling``): one kernel decodes code tiles and dots them on
  the tensor cores, K split in ranges (``schedules.fused``).
* ``"dequant"`` (``DequantTiling``): a decode kernel writes each operand once
  as bfloat16, then XLA's dense dot (``schedules.dequant``).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Union

from ..config import check_fields

__all__ = ["SCHEDULES", "GemvTiling", "Dp4aTiling", "FusedTiling", "DequantTiling", "Tiling",
           "ROW_SCHEDULES"]

SCHEDULES = ("gemv", "dp4a", "fused", "dequant")
#: schedules whose grid runs over weight rows only (every activation row per program)
ROW_SCHEDULES = ("gemv", "dp4a")


@dataclasses.dataclass(frozen=True)
class GemvTiling:
    """``bm`` weight rows per program, ``bk`` K elements per step (a multiple of
    the group size), ``split`` K ranges (partials added by XLA)."""
    schedule: ClassVar[str] = "gemv"
    bm: int
    bk: int
    warps: int = 4
    stages: int = 3
    split: int = 1

    def __post_init__(self):
        check_fields(self, pow2=("bm", "bk", "warps"), positive=("stages", "split"))


@dataclasses.dataclass(frozen=True)
class Dp4aTiling:
    """As ``GemvTiling``, the group sums by integer dot products."""
    schedule: ClassVar[str] = "dp4a"
    bm: int
    bk: int
    warps: int = 4
    stages: int = 3
    split: int = 1

    def __post_init__(self):
        check_fields(self, pow2=("bm", "bk", "warps"), positive=("stages", "split"))


@dataclasses.dataclass(frozen=True)
class FusedTiling:
    """``bn`` x ``bm`` output tiles (>= 16 each on the GPU), ``bk`` K elements per
    step (>= 32, a multiple of both group sizes), ``split`` K ranges (partials
    added by XLA); ``grouped``: code tiles as (rows, groups, G/2), scales
    broadcast per group."""
    schedule: ClassVar[str] = "fused"
    bn: int
    bm: int
    bk: int
    warps: int = 4
    stages: int = 3
    split: int = 1
    grouped: bool = False

    def __post_init__(self):
        check_fields(self, pow2=("bn", "bm", "bk", "warps"), positive=("stages", "split"))


@dataclasses.dataclass(frozen=True)
class DequantTiling:
    """Blocks of the decode kernel: ``rows`` x ``cols`` elements, ``warps``."""
    schedule: ClassVar[str] = "dequant"
    rows: int = 16
    cols: int = 1024
    warps: int = 4

    def __post_init__(self):
        check_fields(self, pow2=("rows", "cols", "warps"))


Tiling = Union[GemvTiling, Dp4aTiling, FusedTiling, DequantTiling]
