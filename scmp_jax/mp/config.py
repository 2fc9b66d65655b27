"""Mixed-precision (MP) configs as frozen, hashable, validated values.

A config names a descending tuple of stream lengths (``stoc_len_levels``,
level 0 = longest; a trailing 0 = pruned rows) and the rule that maps each
row to a level. Configs are static under ``jax.jit``; dict-valued fields are
held as read-only mappings. Invalid values raise ValueError (a flag that is
not a bool: TypeError). The calibrated threshold table is the reference's
JSON (:meth:`AdaptiveMPConfig.from_json`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from .._src.errors import check_bool, is_int as _is_int

__all__ = ["MPConfig", "AdaptiveMPConfig", "FreeBoundaryMPConfig", "RangeMPConfig",
           "RowAssignment", "FrozenMap", "METRICS", "bucket_index", "parse_bucket_key"]

#: Row metrics the reference names: ||row||_inf for q / x, plain row max for attention.
METRICS = ("q_row_max", "attn_row_max", "x_row_max")


class FrozenMap(Mapping):
    """A read-only, hashable dict (so configs holding one stay jit-static)."""

    def __init__(self, data=()):
        self._d = dict(data)
        self._h = None

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def __hash__(self):
        if self._h is None:
            self._h = hash(frozenset(self._d.items()))
        return self._h

    def __repr__(self):
        return f"FrozenMap({self._d!r})"


def _levels(levels, name: str, min_len: int) -> tuple:
    """Validated tuple of ints >= 0, strictly descending, at least ``min_len``."""
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__"):
        raise ValueError(f"{name} must be a sequence of ints, got {levels!r}")
    levels = tuple(levels)
    if len(levels) < min_len:
        raise ValueError(f"{name} needs at least {min_len} level(s), got {list(levels)}")
    for v in levels:
        if not _is_int(v) or v < 0:
            raise ValueError(f"{name} must hold ints >= 0, got {list(levels)}")
    levels = tuple(int(v) for v in levels)
    if any(levels[i] <= levels[i + 1] for i in range(len(levels) - 1)):
        raise ValueError(f"{name} must be strictly descending, got {list(levels)}")
    return levels


def _fractions(fracs, n: int, name: str) -> tuple:
    """Validated fractions: ``n`` finite values >= 0 whose Python ``sum`` is 1 within 1e-6."""
    if isinstance(fracs, (str, bytes)) or not hasattr(fracs, "__len__"):
        raise ValueError(f"{name} must be a sequence of floats, got {fracs!r}")
    fracs = tuple(float(f) for f in fracs)
    if len(fracs) != n:
        raise ValueError(f"{name} length ({len(fracs)}) must match stoc_len_levels length ({n})")
    if any(not math.isfinite(f) or f < 0 for f in fracs):
        raise ValueError(f"{name} must be finite and >= 0, got {list(fracs)}")
    s = sum(fracs)
    if abs(s - 1.0) >= 1e-6:
        raise ValueError(f"{name} must sum to 1.0, got {s}")
    return fracs


def _thresholds(raw, n_levels: int, source: str) -> tuple:
    """``n_levels - 1`` thresholds in [0, 1], non-increasing within 1e-6 (reference rule).

    ``raw`` is a list or a dict with a ``"thresholds"`` list (both table forms)."""
    if isinstance(raw, Mapping):
        raw = raw.get("thresholds")
    if raw is None:
        raise ValueError(f"missing 'thresholds' in adaptive MP payload for {source}")
    try:
        th = tuple(float(x) for x in raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"adaptive MP thresholds for {source} must be numbers, got {raw!r}") from exc
    if len(th) != max(n_levels - 1, 0):
        raise ValueError(f"adaptive MP thresholds for {source} have length {len(th)}, expected "
                         f"{max(n_levels - 1, 0)} for {n_levels} stoc_len levels")
    for i, t in enumerate(th):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"adaptive MP threshold {t} for {source} is outside [0, 1]")
        if i > 0 and t > th[i - 1] + 1e-6:
            raise ValueError(f"adaptive MP thresholds for {source} must be non-increasing, got {list(th)}")
    return th


def bucket_index(value: int, total: int, num_buckets: int) -> int:
    """Timestep / block index -> calibration bucket (the reference's rule:
    ``min(nb - 1, int(value / max(total - 1, 1) * nb))``, 0 if ``nb <= 1`` or ``total <= 1``)."""
    if num_buckets <= 1 or total <= 1:
        return 0
    return min(num_buckets - 1, int(value / max(total - 1, 1) * num_buckets))


def parse_bucket_key(key: str) -> tuple:
    """``'<operator>:t<int>:l<int>'`` -> ``(operator, t, l)``; ValueError otherwise."""
    parts = key.split(":") if isinstance(key, str) else ()
    try:
        op, t, l_ = parts
        if not (t.startswith("t") and l_.startswith("l")):
            raise ValueError
        return op, int(t[1:]), int(l_[1:])
    except ValueError as exc:
        raise ValueError(f"invalid adaptive MP bucket key {key!r}; expected "
                         "'<operator>:t<int>:l<int>'") from exc


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- MPConfig
@dataclasses.dataclass(frozen=True)
class MPConfig:
    """Fixed-fraction (quantile) MP: the top ``level_fractions[0]`` of rows by
    metric get ``stoc_len_levels[0]``, and so on (``None`` = equal fractions)."""
    stoc_len_levels: tuple
    level_fractions: Optional[tuple] = None
    qk_metric: str = "q_row_max"
    av_metric: str = "attn_row_max"
    mlp_metric: str = "x_row_max"

    def __post_init__(self):
        levels = _levels(self.stoc_len_levels, "stoc_len_levels", 1)
        _set(self, "stoc_len_levels", levels)
        fr = self.level_fractions
        fr = (1.0 / len(levels),) * len(levels) if fr is None else fr
        _set(self, "level_fractions", _fractions(fr, len(levels), "level_fractions"))
        for name in ("qk_metric", "av_metric", "mlp_metric"):
            if getattr(self, name) not in METRICS:
                raise ValueError(f"{name} must be one of {METRICS}, got {getattr(self, name)!r}")


# ------------------------------------------------------------------- AdaptiveMPConfig
def _table_fields(payload, levels: tuple) -> dict:
    """Fields of AdaptiveMPConfig from a reference-format threshold table (dict)."""
    if not isinstance(payload, Mapping) or "stoc_len_levels" not in payload:
        raise ValueError("adaptive MP table must be a JSON object with 'stoc_len_levels'")
    table_levels = [int(x) for x in payload["stoc_len_levels"]]
    if table_levels != list(levels):
        raise ValueError(f"adaptive MP table levels {table_levels} do not match runtime "
                         f"levels {list(levels)}")
    n = len(levels)
    defaults = {op: _thresholds(v, n, f"operator_default:{op}")
                for op, v in payload.get("operator_defaults", {}).items()}
    buckets = {parse_bucket_key(k): _thresholds(v, n, k)
               for k, v in payload.get("buckets", {}).items()}
    return dict(timestep_buckets=int(payload.get("timestep_buckets", 1)),
                layer_buckets=int(payload.get("layer_buckets", 1)),
                operator_default_thresholds=defaults, bucket_thresholds=buckets)


@dataclasses.dataclass(frozen=True)
class AdaptiveMPConfig:
    """MP by one of two data-driven paths (the reference has no closed-form path):

    - quantile: ``target_fractions`` set (same rule as :class:`MPConfig`);
    - calibrated table: per-(operator, timestep bucket, layer bucket)
      thresholds on the min-max normalized metric, falling back to per-operator
      defaults. Load with :meth:`from_json` or ``threshold_table_path``.

    ``stoc_len_levels``: >= 2 ints, strictly descending; a last level of 0 prunes
    rows. ``enable_pruning=False`` drops that 0 level (as the reference does).
    """
    stoc_len_levels: tuple
    enable_pruning: bool = True
    threshold_table_path: Optional[str] = None
    timestep_buckets: int = 1
    layer_buckets: int = 1
    operator_default_thresholds: Mapping = FrozenMap()
    bucket_thresholds: Mapping = FrozenMap()
    target_fractions: Optional[tuple] = None

    def __post_init__(self):
        levels = _levels(self.stoc_len_levels, "stoc_len_levels", 2)
        if not check_bool(self.enable_pruning, "enable_pruning"):
            levels = tuple(v for v in levels if v > 0)
        _set(self, "stoc_len_levels", levels)
        if self.threshold_table_path:
            _set(self, "threshold_table_path", str(self.threshold_table_path))
            with open(self.threshold_table_path) as f:
                for k, v in _table_fields(json.load(f), levels).items():
                    _set(self, k, v)
        for name in ("timestep_buckets", "layer_buckets"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        n = len(levels)
        _set(self, "operator_default_thresholds", FrozenMap(
            (op, _thresholds(v, n, f"operator_default:{op}"))
            for op, v in dict(self.operator_default_thresholds).items()))
        buckets = {}
        for key, v in dict(self.bucket_thresholds).items():
            key = parse_bucket_key(key) if isinstance(key, str) else tuple(key)
            if len(key) != 3 or not isinstance(key[0], str) or not all(_is_int(x) for x in key[1:]):
                raise ValueError(f"bucket_thresholds keys must be (operator, t, l), got {key!r}")
            buckets[(key[0], int(key[1]), int(key[2]))] = _thresholds(v, n, repr(key))
        _set(self, "bucket_thresholds", FrozenMap(buckets))
        if self.target_fractions is not None:
            _set(self, "target_fractions", _fractions(self.target_fractions, n, "target_fractions"))

    # ---------------------------------------------------------------- table I/O
    @classmethod
    def from_json(cls, source, stoc_len_levels=None, **kwargs) -> "AdaptiveMPConfig":
        """Config from a reference-format table: a path, a JSON string or a dict.

        Format: ``{"stoc_len_levels": [...], "timestep_buckets": T,
        "layer_buckets": L, "operator_defaults": {op: {"thresholds": [...]}},
        "buckets": {"op:t<i>:l<j>": {"thresholds": [...]}}}`` (a payload may
        also be the bare list). ``stoc_len_levels`` defaults to the table's.
        """
        if isinstance(source, Mapping):
            payload = source
        elif isinstance(source, str) and source.lstrip().startswith("{"):
            payload = json.loads(source)
        else:
            with open(Path(source)) as f:
                payload = json.load(f)
        if stoc_len_levels is None:
            if not isinstance(payload, Mapping) or "stoc_len_levels" not in payload:
                raise ValueError("adaptive MP table must be a JSON object with 'stoc_len_levels'")
            stoc_len_levels = [int(x) for x in payload["stoc_len_levels"]]
        probe = cls(stoc_len_levels, enable_pruning=kwargs.get("enable_pruning", True))
        return cls(stoc_len_levels, **{**_table_fields(payload, probe.stoc_len_levels), **kwargs})

    def to_json(self, path=None) -> dict:
        """The table in the reference's format (written to ``path`` if given)."""
        out = {"stoc_len_levels": list(self.stoc_len_levels),
               "timestep_buckets": self.timestep_buckets, "layer_buckets": self.layer_buckets,
               "operator_defaults": {op: {"thresholds": list(t)}
                                     for op, t in sorted(self.operator_default_thresholds.items())},
               "buckets": {f"{op}:t{t}:l{l_}": {"thresholds": list(th)}
                           for (op, t, l_), th in sorted(self.bucket_thresholds.items())}}
        if path is not None:
            with open(path, "w") as f:
                json.dump(out, f, indent=2)
        return out

    def get_thresholds(self, timestep: int, total_timesteps: int, operator: Optional[str] = None,
                       block_idx: Optional[int] = None, total_blocks: Optional[int] = None):
        """Calibrated thresholds (tuple) for one bucket, else the operator's
        default, else None (the reference's lookup order)."""
        if self.bucket_thresholds and operator and block_idx is not None and total_blocks is not None:
            key = (operator, bucket_index(timestep, total_timesteps, self.timestep_buckets),
                   bucket_index(block_idx, total_blocks, self.layer_buckets))
            if key in self.bucket_thresholds:
                return self.bucket_thresholds[key]
        if operator and operator in self.operator_default_thresholds:
            return self.operator_default_thresholds[operator]
        return None


# --------------------------------------------------------------- FreeBoundaryMPConfig
def _block_op_key(key, name: str) -> tuple:
    if not (isinstance(key, tuple) and len(key) == 2 and _is_int(key[0]) and isinstance(key[1], str)):
        raise ValueError(f"{name} keys must be (block_idx: int, op_name: str), got {key!r}")
    return int(key[0]), key[1]


@dataclasses.dataclass(frozen=True)
class FreeBoundaryMPConfig(AdaptiveMPConfig):
    """Per-(block, op) ``k - 1`` free boundaries on the normalized metric
    (level = number of boundaries above it), or a fixed level per (block, op).
    Missing entries use :meth:`default_boundaries`. Frozen: use
    :meth:`with_boundaries` / :meth:`with_fixed_level` to derive new configs.
    The block index is always explicit (no process-wide current block)."""
    boundaries: Mapping = FrozenMap()
    fixed_levels: Mapping = FrozenMap()

    def __post_init__(self):
        super().__post_init__()
        k = len(self.stoc_len_levels)
        bounds = {}
        for key, b in dict(self.boundaries).items():
            b = tuple(float(x) for x in np.asarray(b, dtype=np.float64).reshape(-1))
            if len(b) != k - 1 or not all(math.isfinite(x) for x in b):
                raise ValueError(f"boundaries[{key!r}] must be {k - 1} finite floats, got {list(b)}")
            bounds[_block_op_key(key, "boundaries")] = b
        fixed = {}
        for key, li in dict(self.fixed_levels).items():
            if not _is_int(li) or not 0 <= li < k:
                raise ValueError(f"fixed_levels[{key!r}] must be an int in [0, {k}), got {li!r}")
            fixed[_block_op_key(key, "fixed_levels")] = int(li)
        _set(self, "boundaries", FrozenMap(bounds))
        _set(self, "fixed_levels", FrozenMap(fixed))

    def default_boundaries(self) -> tuple:
        """Equal spacing ``((k-1-i)/k for i < k-1)``, descending in (0, 1)."""
        k = len(self.stoc_len_levels)
        return tuple((k - 1 - i) / k for i in range(k - 1))

    def get_boundaries(self, operator: str, block_idx: int) -> tuple:
        return self.boundaries.get((int(block_idx), operator), self.default_boundaries())

    def get_fixed_level(self, operator: str, block_idx: int) -> Optional[int]:
        return self.fixed_levels.get((int(block_idx), operator))

    def with_boundaries(self, operator: str, block_idx: int, boundaries) -> "FreeBoundaryMPConfig":
        """New config with these boundaries for (block, op); clears its fixed level."""
        key = (int(block_idx), operator)
        fixed = {k: v for k, v in self.fixed_levels.items() if k != key}
        return dataclasses.replace(self, boundaries={**self.boundaries, key: boundaries},
                                   fixed_levels=fixed)

    def with_fixed_level(self, operator: str, block_idx: int, level_idx: int) -> "FreeBoundaryMPConfig":
        """New config pinning (block, op) to one level; clears its boundaries."""
        key = (int(block_idx), operator)
        bounds = {k: v for k, v in self.boundaries.items() if k != key}
        return dataclasses.replace(self, boundaries=bounds,
                                   fixed_levels={**self.fixed_levels, key: level_idx})

    def without_fixed_level(self, operator: str, block_idx: int) -> "FreeBoundaryMPConfig":
        key = (int(block_idx), operator)
        return dataclasses.replace(self, fixed_levels={k: v for k, v in self.fixed_levels.items()
                                                       if k != key})


# --------------------------------------------------------------------- RangeMPConfig
@dataclasses.dataclass(frozen=True)
class RangeMPConfig:
    """Weight-group MP: groups whose normalized (max - min) range is >= the
    threshold (capped at 0.95) get level 0; lower ranges split evenly among
    the other levels. ``operator_thresholds`` overrides ``base_threshold``."""
    stoc_len_levels: tuple
    base_threshold: float = 0.3
    operator_thresholds: Mapping = FrozenMap()

    def __post_init__(self):
        _set(self, "stoc_len_levels", _levels(self.stoc_len_levels, "stoc_len_levels", 2))
        vals = {"base_threshold": self.base_threshold, **{
            f"operator_thresholds[{k!r}]": v for k, v in dict(self.operator_thresholds).items()}}
        for name, v in vals.items():
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)) \
                    or not math.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        _set(self, "base_threshold", float(self.base_threshold))
        _set(self, "operator_thresholds", FrozenMap(
            (str(k), float(v)) for k, v in dict(self.operator_thresholds).items()))

    def get_threshold(self, operator: Optional[str] = None) -> float:
        if operator and operator in self.operator_thresholds:
            return self.operator_thresholds[operator]
        return self.base_threshold


# --------------------------------------------------------------------- RowAssignment
@dataclasses.dataclass(frozen=True, eq=False)
class RowAssignment:
    """Classifier output, a pytree: ``row_levels`` int32 ``(N,)`` (index into
    the static ``stoc_len_levels``)."""
    row_levels: jax.Array
    stoc_len_levels: tuple

    @property
    def stoc_len(self) -> jax.Array:
        """Per-row stream length, int32 ``(N,)`` (0 = pruned); the
        ``row_stoc_len`` / ``col_stoc_len`` argument of ``sc_matmul``."""
        return jnp.asarray(self.stoc_len_levels, jnp.int32)[self.row_levels]

    def counts(self) -> jax.Array:
        """Rows per level, int32 ``(n_levels,)``."""
        n = len(self.stoc_len_levels)
        return jnp.sum(self.row_levels[..., None] == jnp.arange(n), axis=-2, dtype=jnp.int32)

    def level_row_indices(self) -> dict:
        """Host dict ``stoc_len -> ascending row indices`` (not jit-able)."""
        lv = np.asarray(self.row_levels)
        return {sl: np.flatnonzero(lv == i) for i, sl in enumerate(self.stoc_len_levels)}

    def repeat(self, group_size: int) -> "RowAssignment":
        """Each entry repeated ``group_size`` times (weight groups -> weight rows)."""
        return RowAssignment(jnp.repeat(self.row_levels, group_size, axis=-1), self.stoc_len_levels)


jax.tree_util.register_dataclass(RowAssignment, data_fields=["row_levels"],
                                 meta_fields=["stoc_len_levels"])
