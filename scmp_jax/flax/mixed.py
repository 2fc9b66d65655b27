"""Mixed precision inside models: the ``mp=`` option of ``SC`` and ``sc_dot_general``.

A contraction ``a (N, D) x b (M, D)`` (``_contract``'s layout; ``(H, N, D)``
with batch dims) under an MP config classifies the rows of one operand and
runs ONE ``sc_matmul`` with per-row stream lengths: ``row_stoc_len`` when the
classified operand is ``a`` (the lhs), ``col_stoc_len`` when it is ``b``.
With batch dims the rows of all ``H`` slices are classified together and the
2D call is vmapped over ``H``. SPEC.md section 7.9 states the rules:

* activation configs (``MPConfig``, ``AdaptiveMPConfig``,
  ``FreeBoundaryMPConfig``) classify the activation operand's rows (tokens) by
  the op's metric (``mp.row_metric``): ``mp_metric`` if given, else by the
  operator name, "qk" -> the config's ``qk_metric`` (``q_row_max``), "av" ->
  ``av_metric`` (``attn_row_max``), any other -> ``mlp_metric``
  (``x_row_max``);
* ``RangeMPConfig`` classifies the weight operand's rows in groups of
  ``mp_group_size``.

The block index (``FreeBoundaryMPConfig`` keys, ``AdaptiveMPConfig`` layer
buckets) comes from the module path and a ``block_path`` regex with one group
(``BlockPath``); the operator name from the rule (``Rule.operator``).
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any, Optional

import jax
import numpy as np

from .._src.errors import is_int
from .._src.sharding import sharded
from ..mp.classify import (adaptive_classify_rows, classify_groups_by_range,
                           classify_rows_by_boundaries, classify_rows_by_metric, row_metric)
from ..mp.config import (METRICS, AdaptiveMPConfig, FreeBoundaryMPConfig, FrozenMap, MPConfig,
                         RangeMPConfig, RowAssignment)
from ..mp.report import CycleBudget, cycle_budget
from ..sc.api import sc_matmul

__all__ = ["MP_TYPES", "SIDES", "MPSpec", "BlockPath", "MPRecord", "MPContext",
           "check_sc_for_mp", "metric_for", "assign", "mp_matmul"]

MP_TYPES = (MPConfig, AdaptiveMPConfig, RangeMPConfig)     # FreeBoundaryMPConfig: an Adaptive one
SIDES = ("lhs", "rhs")


@dataclasses.dataclass(frozen=True)
class MPSpec:
    """A validated ``mp=`` option: the config, an optional metric override, the
    classified operand (None: the activation one; "lhs" for act x act ops) and
    the weight group size (``RangeMPConfig`` only; ``<= 0`` or ``>= M``: one group)."""
    config: Any
    metric: Optional[str] = None
    side: Optional[str] = None
    group_size: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.config, MP_TYPES):
            raise TypeError("mp must be an MPConfig, AdaptiveMPConfig, FreeBoundaryMPConfig or "
                            f"RangeMPConfig, got {type(self.config).__name__}")
        if self.metric is not None and self.metric not in METRICS:
            raise ValueError(f"mp_metric must be None or one of {METRICS}, got {self.metric!r}")
        if self.side is not None and self.side not in SIDES:
            raise ValueError(f"mp_side must be None or one of {SIDES}, got {self.side!r}")
        ranged = isinstance(self.config, RangeMPConfig)
        if ranged:
            if self.group_size is None or not is_int(self.group_size):
                raise ValueError("mp_group_size (an int, weight rows per group) is required with "
                                 f"a RangeMPConfig, got {self.group_size!r}")
            object.__setattr__(self, "group_size", int(self.group_size))
            if self.metric is not None:
                raise ValueError("mp_metric does not apply to a RangeMPConfig (it classifies "
                                 "weight groups by range)")
        elif self.group_size is not None:
            raise ValueError("mp_group_size applies only to a RangeMPConfig")

    @property
    def levels(self) -> tuple:
        return self.config.stoc_len_levels

    @property
    def weights(self) -> bool:
        """Whether the classified rows are a weight's (``RangeMPConfig``)."""
        return isinstance(self.config, RangeMPConfig)


def check_sc_for_mp(spec: Optional[MPSpec], granularity, sc_kwargs) -> None:
    """ValueError naming the argument when ``sc_matmul`` settings exclude MP."""
    if spec is None:
        return
    if granularity != "per_row":
        raise ValueError(f"mp needs granularity='per_row' (per-row stream lengths), got "
                         f"{granularity!r}")
    for name in ("stoc_len", "row_stoc_len", "col_stoc_len", "stoc_levels"):
        if sc_kwargs.get(name) is not None:
            raise ValueError(f"{name} must be None with mp (the config's stoc_len_levels "
                             "give the lengths)")
    if sc_kwargs.get("chunk_d", 0):
        raise ValueError("chunk_d must be 0 with mp")
    p = sc_kwargs.get("sc_prec", 8)
    if is_int(p) and max(spec.levels) > 2 ** p:
        raise ValueError(f"mp: stoc_len_levels {list(spec.levels)} exceed 2**sc_prec={2 ** p}")


def metric_for(spec: MPSpec, operator: Optional[str]) -> str:
    """The row metric of an op: ``mp_metric``, else by operator name (module docstring)."""
    if spec.metric is not None:
        return spec.metric
    cfg = spec.config
    if operator == "qk":
        return getattr(cfg, "qk_metric", "q_row_max")
    if operator == "av":
        return getattr(cfg, "av_metric", "attn_row_max")
    return getattr(cfg, "mlp_metric", "x_row_max")


class BlockPath:
    """A ``block_path`` regex with one group: a module path's block index is the
    group (an int) of the shortest '/'-prefix of the path it fullmatches."""

    def __init__(self, pattern: str):
        if not isinstance(pattern, str):
            raise TypeError(f"block_path must be a regex string, got {pattern!r}")
        try:
            self.regex = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"block_path is not a valid regex: {e}") from e
        if self.regex.groups != 1:
            raise ValueError(f"block_path must have exactly one group (the block index), got "
                             f"{pattern!r} with {self.regex.groups}")
        self.pattern = pattern

    def _index(self, prefix: str) -> Optional[int]:
        m = self.regex.fullmatch(prefix)
        if m is None:
            return None
        try:
            return int(m.group(1))
        except (TypeError, ValueError) as e:
            raise ValueError(f"block_path {self.pattern!r}: the group of module path "
                             f"{prefix!r} is {m.group(1)!r}, not an int") from e

    def module_index(self, path: str) -> Optional[int]:
        """The block index of a module whose whole path is a block, else None."""
        return self._index(path) if path else None

    def index(self, path: str) -> Optional[int]:
        """The block index of anything at or under a block's path, else None."""
        parts = path.split("/") if path else []
        for i in range(1, len(parts) + 1):
            idx = self._index("/".join(parts[:i]))
            if idx is not None:
                return idx
        return None

    def total(self, paths) -> Optional[int]:
        """1 + the largest block index among ``paths`` (None without blocks)."""
        found = [i for i in (self.module_index(p) for p in paths) if i is not None]
        return max(found) + 1 if found else None


@dataclasses.dataclass(eq=False)
class MPRecord:
    """One MP contraction: where it ran, its (block, operator), the classified
    rows (``rows``, each multiplied against ``cols`` rows of the other operand
    over ``depth`` = D) and the rows per level (``counts``, filled when the
    computation runs: under ``jit`` after it executes)."""
    path: str
    block: Optional[int]
    operator: str
    levels: tuple
    side: str
    rows: int
    cols: int
    depth: int
    counts: Optional[tuple] = None
    pending: bool = False

    def set_counts(self, counts) -> None:
        c = np.asarray(counts).reshape(-1, len(self.levels)).sum(0)
        self.counts = tuple(int(v) for v in c)

    def _known(self) -> bool:
        if self.counts is None and self.pending:
            jax.effects_barrier()              # a jitted call's callbacks have run
        return self.counts is not None

    @property
    def histogram(self) -> Optional[dict]:
        """``{stream length: rows}`` in level order (None before the counts are known)."""
        return dict(zip(self.levels, self.counts)) if self._known() else None

    @property
    def budget(self) -> Optional[CycleBudget]:
        """Cycles used against every row at the longest level (``mp.cycle_budget``)."""
        if not self._known():
            return None
        lengths = np.repeat(np.asarray(self.levels, np.int64), self.counts)
        return cycle_budget(row_stoc_len=lengths, M=self.cols, D=self.depth,
                            max_len=max(self.levels))


@dataclasses.dataclass(frozen=True, eq=False)
class MPContext:
    """What an interpreted call knows about MP beyond the rules: the block regex,
    the number of blocks, a plan's boundaries ((block, op) -> tuple, static)
    and boundaries to try ((block, op) -> array, may be traced)."""
    blocks: Optional[BlockPath] = None
    total_blocks: Optional[int] = None
    boundaries: Mapping = FrozenMap()
    trial: Mapping = FrozenMap()

    def block_of(self, path: str) -> Optional[int]:
        return None if self.blocks is None else self.blocks.index(path)

    def spec_for(self, spec: MPSpec, block: Optional[int], operator: str) -> MPSpec:
        """``spec`` with the plan's boundaries of (block, operator) in its config."""
        key = (block, operator)
        if isinstance(spec.config, FreeBoundaryMPConfig) and key in self.boundaries:
            cfg = spec.config.with_boundaries(operator, block, self.boundaries[key])
            return dataclasses.replace(spec, config=cfg)
        return spec


def _effective_group(group_size: int, rows: int) -> int:
    return rows if group_size <= 0 or group_size >= rows else group_size


def assign(spec: MPSpec, x, *, operator: str, block: Optional[int] = None,
           total_blocks: Optional[int] = None, boundaries=None) -> RowAssignment:
    """Levels of the rows of ``x`` (``(R, D)``; a weight's for ``RangeMPConfig``).
    ``boundaries``: a (possibly traced) array replacing a ``FreeBoundaryMPConfig``'s
    boundaries of (block, operator)."""
    cfg = spec.config
    if spec.weights:
        g = _effective_group(spec.group_size, x.shape[0])
        return classify_groups_by_range(x, g, cfg, operator=operator).repeat(g)
    metric = row_metric(x, metric_for(spec, operator))
    if isinstance(cfg, MPConfig):
        return classify_rows_by_metric(metric, cfg.stoc_len_levels, cfg.level_fractions)
    if isinstance(cfg, FreeBoundaryMPConfig):
        if block is None:
            raise ValueError(f"FreeBoundaryMPConfig needs a block index for operator "
                             f"{operator!r}: give simulate(..., block_path=...) a regex whose "
                             "group matches this module path (sc_dot_general: mp_block=)")
        if boundaries is not None and cfg.get_fixed_level(operator, block) is None:
            return classify_rows_by_boundaries(metric, boundaries, cfg.stoc_len_levels)
    return adaptive_classify_rows(metric, cfg, operator=operator, block_idx=block,
                                  total_blocks=total_blocks)


def _classified(spec: MPSpec, side: Optional[str], lhs_act: bool, rhs_act: bool) -> str:
    """Which operand's rows get levels."""
    if spec.weights:
        if lhs_act and rhs_act:
            raise ValueError("a RangeMPConfig classifies weight groups; this op multiplies two "
                             "activations")
        return side or ("rhs" if lhs_act or not rhs_act else "lhs")
    if side is not None:
        return side
    return "rhs" if rhs_act and not lhs_act else "lhs"


def mp_matmul(spec: MPSpec, granularity: str, sc_kwargs: dict, a, b, *, operator: str,
              block: Optional[int] = None, total_blocks: Optional[int] = None,
              lhs_act: bool = True, rhs_act: bool = False, boundaries=None, path: str = ""):
    """``sc_matmul(a, b, granularity, **sc_kwargs)`` with the rows of one operand
    classified (``a``, ``b``: 2D, or 3D with a leading batch dim). Returns
    ``(out, record, counts)``: counts an int32 ``(n_levels,)`` array (maybe traced)."""
    side = _classified(spec, spec.side, lhs_act, rhs_act)
    x, other = (a, b) if side == "lhs" else (b, a)
    D = x.shape[-1]
    asg = assign(spec, x.reshape(-1, D), operator=operator, block=block,
                 total_blocks=total_blocks, boundaries=boundaries)
    key = "row_stoc_len" if side == "lhs" else "col_stoc_len"
    levels = spec.levels

    def one(a2, b2, lens):
        return sc_matmul(a2, b2, granularity, stoc_levels=levels, **{key: lens}, **sc_kwargs)

    def run(a, b, lens):
        return jax.vmap(one)(a, b, lens) if a.ndim == 3 else one(a, b, lens)

    lens = asg.stoc_len.reshape(x.shape[:-1])
    # sc_matmul's mixed path takes no sharded operands: XLA partitions it under jit
    if any(sharded(v, v.ndim)[0] is not None for v in (a, b) if isinstance(v, jax.Array)):
        run = jax.jit(run)
    out = run(a, b, lens)
    rec = MPRecord(path=path, block=block, operator=operator, levels=levels, side=side,
                   rows=math.prod(x.shape[:-1]), cols=other.shape[-2], depth=D)
    return out, rec, asg.counts()
