"""Row / weight-group classifiers: metric (N,) -> int32 level index (N,).

All are jit-, vmap- and grad-free friendly: the metric may be traced; the
config, level counts and (block, op, timestep) lookups are static Python.
Arithmetic is float32, one rounding per operation, in the reference's order.

Ordering rule (quantile paths): rows sorted by metric descending; NaN ranks
above every number; -0.0 ties with 0.0; ties keep ascending row index
(stable). The reference uses ``torch.argsort(descending=True)``, whose tie
order is unspecified, so rows with equal metrics may be assigned differently
there; with distinct metrics the assignments are identical.

Exactness (SPEC.md section 7.8): sorting, every comparison, max and min work on
integer images of the float32 bit patterns, and the subtractions and the
division are integer IEEE arithmetic (``_src.softfloat``), so subnormal
metrics, weights and thresholds give golden's levels on every backend (XLA's
CPU flushes subnormals; XLA's GPU division is approximate).
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._src import softfloat as SF
from .._src.errors import check_float, check_int, with_dtype
from .._src.ieee import max_exact, min_exact, use_soft
from .config import FreeBoundaryMPConfig, METRICS, MPConfig, RangeMPConfig, RowAssignment

__all__ = ["row_metric", "quantile_counts", "classify_rows_by_metric", "adaptive_classify_rows",
           "classify_rows_by_boundaries", "classify_groups_by_range", "group_ranges"]

F32 = jnp.float32
I32 = jnp.int32
# ``span < 1e-8`` evaluated in float64 as the reference does (``.item() < 1e-8``)
# equals ``span <= float32(1e-8)`` for a float32 span, since float32(1e-8) < 1e-8.
_TINY = np.float32(1e-8)
assert float(_TINY) < 1e-8


def _isnan(x):
    return (lax.bitcast_convert_type(x, I32) & I32(0x7FFFFFFF)) > I32(0x7F800000)


def _key(x):
    """float32 -> int32 in the same order (-0.0 and 0.0 equal); NaN -> int32 max."""
    b = lax.bitcast_convert_type(jnp.asarray(x, F32), I32)
    k = jnp.where(b < 0, -(b & I32(0x7FFFFFFF)), b)
    return jnp.where(_isnan(x), I32(np.iinfo(np.int32).max), k)


def _ge(x, y):
    """IEEE ``x >= y`` (False with a NaN), exact for subnormals."""
    return ~_isnan(x) & ~_isnan(y) & (_key(x) >= _key(y))


def _lt(x, y):
    return ~_isnan(x) & ~_isnan(y) & (_key(x) < _key(y))


def row_metric(x, kind: str = "x_row_max") -> jax.Array:
    """Per-row importance, float32 ``(...,)`` over the last axis of ``x``:
    ``q_row_max`` / ``x_row_max`` = max |x|, ``attn_row_max`` = max x."""
    if kind not in METRICS:
        raise ValueError(f"kind must be one of {METRICS}, got {kind!r}")
    x = jnp.asarray(check_float(x, "x")).astype(F32)
    return max_exact(x if kind == "attn_row_max" else jnp.abs(x), axis=-1)


def quantile_counts(n_rows: int, fractions: Sequence[float]) -> tuple:
    """Rows per level: ``round(frac * N)`` (Python round, half to even) for all
    but the last level, which takes the rest; each clamped to the rows left."""
    counts, offset = [], 0
    for i, frac in enumerate(fractions):
        c = round(frac * n_rows) if i < len(fractions) - 1 else n_rows - offset
        c = max(0, min(c, n_rows - offset))
        counts.append(c)
        offset += c
    return tuple(counts)


def _metric_1d(metric) -> jax.Array:
    """float32 (N,) of a metric of a ``FLOAT_DTYPES`` or integer dtype."""
    metric, dt = with_dtype(metric)
    m = jnp.asarray(metric if jnp.issubdtype(dt, jnp.integer) else check_float(metric, "metric"))
    if m.ndim != 1 or m.shape[0] < 1:
        raise ValueError(f"metric must have shape (N,) with N >= 1, got {m.shape}")
    return m.astype(F32)


@jax.jit
def _quantile_levels(m, ends):
    """Level = number of cumulative count ``ends`` at or below the row's rank."""
    order = jnp.argsort(_key(m), descending=True, stable=True)
    rank = jnp.zeros(m.shape, jnp.int32).at[order].set(jnp.arange(m.shape[0], dtype=jnp.int32))
    return jnp.sum(rank[:, None] >= ends[None, :], axis=1, dtype=jnp.int32)


def _normalized(m):
    """(metric - min) / (max - min) and whether max - min < 1e-8 (degenerate)."""
    lo, hi = min_exact(m), max_exact(m)
    span = SF.sub(hi, lo)
    return SF.div(SF.sub(m, lo), span), ~_lt(F32(_TINY), span) & ~_isnan(span)


# ``soft`` (= ``use_soft()`` at the call) keys the trace cache per division mode;
# the arithmetic itself is integer (``_src.softfloat``), the same in both.
@partial(jax.jit, static_argnames="soft")
def _threshold_levels(m, th, soft):
    """Reference rule: start at the last level; level i where
    ``th[i] <= norm < th[i-1]`` (level 0: ``norm >= th[0]``), later levels win."""
    norm, degenerate = _normalized(m)
    lev = jnp.full(m.shape, th.shape[0], jnp.int32)
    for i in range(th.shape[0]):
        mask = _ge(norm, th[i]) if i == 0 else _ge(norm, th[i]) & _lt(norm, th[i - 1])
        lev = jnp.where(mask, i, lev)
    return jnp.where(degenerate, 0, lev)


def _below_levels(norm, bounds):
    """Start at 0; level k+1 wherever ``norm < bounds[k]``, later k win."""
    lev = jnp.zeros(norm.shape, jnp.int32)
    for k in range(bounds.shape[0]):
        lev = jnp.where(_lt(norm, bounds[k]), k + 1, lev)
    return lev


@partial(jax.jit, static_argnames="soft")
def _boundary_levels(m, bounds, soft):
    norm, degenerate = _normalized(m)
    return jnp.where(degenerate, 0, _below_levels(norm, bounds))


def _quantile(m, levels, fractions) -> RowAssignment:
    ends = np.cumsum(quantile_counts(m.shape[0], fractions))[:-1].astype(np.int32)
    return RowAssignment(_quantile_levels(m, jnp.asarray(ends)), levels)


def classify_rows_by_metric(metric, stoc_len_levels, level_fractions=None) -> RowAssignment:
    """Quantile rule: the top ``round(frac[0] * N)`` rows by metric -> level 0,
    the next ``round(frac[1] * N)`` -> level 1, ..., the last level the rest.
    ``metric``: ``(N,)`` real (cast to float32). ValueError on invalid levels
    or fractions (validated as :class:`MPConfig`)."""
    cfg = MPConfig(stoc_len_levels, level_fractions)
    return _quantile(_metric_1d(metric), cfg.stoc_len_levels, cfg.level_fractions)


def adaptive_classify_rows(metric, config, operator: Optional[str] = None,
                           block_idx: Optional[int] = None, total_blocks: Optional[int] = None,
                           timestep: int = 0, total_timesteps: int = 1) -> RowAssignment:
    """Rows -> levels by the first path that applies (the reference's order):

    1. :class:`FreeBoundaryMPConfig`: the (``block_idx``, ``operator``) fixed
       level, else its boundaries (level = count of boundaries above the
       normalized metric; all rows level 0 if max - min < 1e-8);
    2. ``target_fractions`` set: quantile rule;
    3. calibrated thresholds for (operator, timestep bucket, layer bucket) or
       the operator default (all rows level 0 if max - min < 1e-8).

    ``operator``, ``block_idx``, ``timestep`` etc. are static Python values.
    ValueError if no path applies (also for a degenerate metric, where the
    reference would return level 0) or if a FreeBoundaryMPConfig gets no
    ``block_idx`` (the reference reads a process-wide current block instead).
    """
    if not hasattr(config, "stoc_len_levels") or not hasattr(config, "get_thresholds"):
        raise ValueError(f"config must be an AdaptiveMPConfig, got {type(config).__name__}")
    m = _metric_1d(metric)
    for name, v in (("block_idx", block_idx), ("total_blocks", total_blocks),
                    ("timestep", timestep), ("total_timesteps", total_timesteps)):
        if v is not None:
            check_int(v, name)
    levels = config.stoc_len_levels
    if isinstance(config, FreeBoundaryMPConfig):
        if block_idx is None:
            raise ValueError("FreeBoundaryMPConfig needs an explicit block_idx")
        fixed = config.get_fixed_level(operator or "", block_idx)
        if fixed is not None:
            return RowAssignment(jnp.full(m.shape, fixed, jnp.int32), levels)
        b = np.sort(np.asarray(config.get_boundaries(operator or "", block_idx), np.float32))[::-1]
        return RowAssignment(_boundary_levels(m, jnp.asarray(b.copy()), soft=use_soft()), levels)
    if config.target_fractions is not None:
        return _quantile(m, levels, config.target_fractions)
    th = config.get_thresholds(timestep=timestep, total_timesteps=total_timesteps,
                               operator=operator, block_idx=block_idx, total_blocks=total_blocks)
    if th is None:
        raise ValueError(f"AdaptiveMPConfig: no classification path for operator={operator!r} "
                         f"block_idx={block_idx} (no target_fractions and no calibrated "
                         "thresholds for this bucket, nor an operator default)")
    return RowAssignment(_threshold_levels(m, jnp.asarray(np.asarray(th, np.float32)),
                                                soft=use_soft()), levels)


def classify_rows_by_boundaries(metric, boundaries, stoc_len_levels) -> RowAssignment:
    """The free-boundary rule with the ``k - 1`` boundaries as an array, which
    may be traced (a search can vary them inside one compiled program): same
    levels as :func:`adaptive_classify_rows` with a :class:`FreeBoundaryMPConfig`
    holding these boundaries. ``boundaries`` are cast to float32 and sorted
    descending; ``stoc_len_levels`` is static."""
    levels = FreeBoundaryMPConfig(stoc_len_levels).stoc_len_levels
    b = jnp.asarray(check_float(boundaries, "boundaries")).astype(F32)
    if b.shape != (len(levels) - 1,):
        raise ValueError(f"boundaries must have shape ({len(levels) - 1},) for "
                         f"{len(levels)} levels, got {b.shape}")
    b = jnp.flip(jnp.sort(b))
    return RowAssignment(_boundary_levels(_metric_1d(metric), b, soft=use_soft()), levels)


@partial(jax.jit, static_argnums=1)
def group_ranges(weight, num_groups: int) -> jax.Array:
    """float32 ``(num_groups,)``: max - min of each block of consecutive rows."""
    w = weight.astype(F32).reshape(num_groups, -1)
    return SF.sub(max_exact(w, axis=1), min_exact(w, axis=1))


@partial(jax.jit, static_argnums=1, static_argnames="soft")
def _range_levels(weight, num_groups, bounds, soft):
    r = group_ranges(weight, num_groups)
    lo, hi = min_exact(r), max_exact(r)
    norm = SF.div(SF.sub(r, lo), SF.add(SF.sub(hi, lo), F32(1e-8)))
    return _below_levels(norm, bounds)


def classify_groups_by_range(weight, group_size: int, config: RangeMPConfig,
                             operator: Optional[str] = None) -> RowAssignment:
    """Weight ``(M, K)`` -> one level per group of ``group_size`` consecutive
    rows, int32 ``(M // group_size,)``. ``group_size <= 0`` or ``>= M``: one
    group. Normalized range ``(r - min r) / (max r - min r + 1e-8)``; with
    ``t = min(threshold, 0.95)``, boundaries ``t * (n-1-k) / (n-1)``; level
    k+1 where range < boundary k. Use ``.repeat(group_size).stoc_len`` for a
    per-weight-row ``col_stoc_len``. ValueError if ``M % group_size != 0``."""
    if not isinstance(config, RangeMPConfig):
        raise ValueError(f"config must be a RangeMPConfig, got {type(config).__name__}")
    w = jnp.asarray(check_float(weight, "weight"))
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"weight must be a non-empty 2D array, got shape {w.shape}")
    out_features = w.shape[0]
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise ValueError(f"group_size must be an int, got {group_size!r}")
    if group_size <= 0 or group_size >= out_features:
        group_size = out_features
    if out_features % group_size:
        raise ValueError(f"weight rows ({out_features}) must be a multiple of group_size ({group_size})")
    levels = config.stoc_len_levels
    n = len(levels)
    t = min(config.get_threshold(operator), 0.95)
    bounds = np.asarray([t * (n - 1 - k) / (n - 1) for k in range(n - 1)], np.float32)
    return RowAssignment(_range_levels(w, out_features // int(group_size), jnp.asarray(bounds),
                                        soft=use_soft()), levels)
