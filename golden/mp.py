"""Mixed precision, golden form: row classifiers and the per-row / per-column
stream-length matmul (SPEC.md section 7, ``row_stoc_len`` / ``col_stoc_len``).

Written as plain loops over rows, in the reference package's order of float32
operations, as the independent check of ``scmp_jax.mp``. NumPy + stdlib only.

Rules (level 0 = longest stream; levels are indices into a descending tuple):
- quantile: rows ordered by metric descending, NaN first, ties (incl. -0.0 vs
  0.0) by ascending row index; level i takes the next ``round(frac_i * N)``
  rows (Python round), clamped to the rows left; the last level the rest.
- thresholds ``t`` (non-increasing): ``norm = (m - min) / (max - min)`` in
  float32; start at the last level; for i in order, level i where
  ``norm >= t[0]`` (i = 0) or ``t[i] <= norm < t[i-1]``. All level 0 if
  ``max - min < 1e-8`` (compared in float64).
- free boundaries ``b`` (sorted descending as float32): start at 0; for k in
  order, level k+1 where ``norm < b[k]``. Same degenerate rule.
- weight-group range: per group of rows ``r = max - min``; ``norm = (r - min r)
  / ((max r - min r) + float32(1e-8))``; ``t = min(threshold, 0.95)``;
  boundaries ``t * (n-1-k) / (n-1)`` (float64, then float32); as free boundaries.
- mixed matmul: element (n, m) uses ``L = min(row_L[n], col_L[m])`` (a side
  not given imposes no limit) and equals element (n, m) of the single-length
  ``sc_matmul(..., stoc_len=L)``; ``L = 0`` gives +0.0 (never computed, so no
  NaN either). ``rng_levels`` (and its halving default) does not depend on L.
"""
from __future__ import annotations

import inspect
import math

import numpy as np

from . import sc as _sc
from .errors import as_float32

__all__ = ["row_metric", "quantile_counts", "classify_quantile", "classify_thresholds",
           "classify_free_boundaries", "classify_groups_by_range", "effective_stoc_len",
           "sc_matmul_mixed", "cycle_budget"]

F32 = np.float32


def row_metric(x, kind: str = "x_row_max"):
    """Per-row importance over the last axis, float32: ``max |x|`` (``q_row_max``,
    ``x_row_max``) or ``max x`` (``attn_row_max``); NaN propagates."""
    x = np.asarray(x).astype(F32)
    return np.max(x if kind == "attn_row_max" else np.abs(x), axis=-1)


def quantile_counts(n_rows, fractions):
    counts, left = [], n_rows
    last = len(fractions) - 1
    for i, frac in enumerate(fractions):
        want = left if i == last else round(frac * n_rows)
        take = min(max(want, 0), left)
        counts.append(take)
        left -= take
    return counts


def _desc_order(m):
    def key(i):
        v = float(m[i])
        return (0, 0.0, i) if math.isnan(v) else (1, -v, i)
    return sorted(range(len(m)), key=key)


def classify_quantile(metric, fractions):
    """Level index per row, int32 ``(N,)``."""
    m = _metric(metric)
    out = np.empty(len(m), np.int32)
    order = _desc_order(m)
    pos = 0
    for level, c in enumerate(quantile_counts(len(m), fractions)):
        for i in order[pos:pos + c]:
            out[i] = level
        pos += c
    return out


def _metric(metric):
    """float32 metric of a ``FLOAT_DTYPES`` or integer dtype (InvalidDtypeError otherwise)."""
    m = np.asarray(metric)
    return m.astype(F32) if m.dtype.kind in "iu" else as_float32(m, "metric")


def _norm(metric):
    m = _metric(metric)
    with np.errstate(all="ignore"):
        lo, hi = F32(np.min(m)), F32(np.max(m))
        span = F32(hi - lo)
        norm = [F32(F32(v - lo) / span) for v in m]
    return norm, float(span) < 1e-8


def classify_thresholds(metric, thresholds):
    """Calibrated-threshold rule, int32 ``(N,)``; ``len(thresholds) = n_levels - 1``."""
    norm, degenerate = _norm(metric)
    t = [F32(x) for x in thresholds]
    out = np.zeros(len(norm), np.int32)
    if degenerate:
        return out
    for n, v in enumerate(norm):
        level = len(t)
        for i in range(len(t)):
            if v >= t[i] and (i == 0 or v < t[i - 1]):
                level = i
        out[n] = level
    return out


def _count_below(v, bounds):
    level = 0
    for k, b in enumerate(bounds):
        if v < b:
            level = k + 1
    return level


def classify_free_boundaries(metric, boundaries):
    """Free-boundary rule, int32 ``(N,)``; boundaries are sorted descending first."""
    norm, degenerate = _norm(metric)
    bounds = sorted((F32(x) for x in boundaries), reverse=True)
    if degenerate:
        return np.zeros(len(norm), np.int32)
    return np.asarray([_count_below(v, bounds) for v in norm], np.int32)


def classify_groups_by_range(weight, group_size, n_levels, threshold):
    """Range rule on weight ``(M, K)`` rows grouped by ``group_size``, int32 ``(groups,)``."""
    w = as_float32(weight, "weight")
    M = w.shape[0]
    g = M if group_size <= 0 or group_size >= M else group_size
    t = min(threshold, 0.95)
    bounds = [F32(t * (n_levels - 1 - k) / (n_levels - 1)) for k in range(n_levels - 1)]
    with np.errstate(all="ignore"):
        ranges = [F32(np.max(w[s:s + g]) - np.min(w[s:s + g])) for s in range(0, M, g)]
        lo, hi = min(ranges, key=float), max(ranges, key=float)
        if any(math.isnan(float(r)) for r in ranges):
            lo = hi = F32(np.nan)
        den = F32(F32(hi - lo) + F32(1e-8))
        return np.asarray([_count_below(F32(F32(r - lo) / den), bounds) for r in ranges], np.int32)


def _lengths(x, size, name, B):
    if x is None:
        return None
    v = np.asarray(x)
    if v.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an int array, got dtype {v.dtype}")
    if v.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {v.shape}")
    if v.size and (v.min() < 0 or v.max() > B):
        raise ValueError(f"{name} values must be in [0, 2**sc_prec={B}]")
    return v.astype(np.int64)


def effective_stoc_len(row_stoc_len, col_stoc_len, N, M, B):
    """int64 ``(N, M)``: min of the row and column lengths (missing side = ``B``)."""
    r = np.full(N, B, np.int64) if row_stoc_len is None else np.asarray(row_stoc_len, np.int64)
    c = np.full(M, B, np.int64) if col_stoc_len is None else np.asarray(col_stoc_len, np.int64)
    return np.minimum(r[:, None], c[None, :])


_SIG = inspect.signature(_sc.sc_matmul)


def sc_matmul_mixed(a, b, row_stoc_len=None, col_stoc_len=None, **sc_kwargs):
    """``sc_matmul`` with a stream length per row of ``a`` (``(N,)`` int) and/or
    per row of ``b`` (``(M,)`` int); 2D, ``granularity='per_row'`` only.
    Other keywords as ``golden.sc.sc_matmul`` (``stoc_len`` must stay None
    when a length array is given). float32 ``(N, M)``."""
    if row_stoc_len is None and col_stoc_len is None:
        return _sc.sc_matmul(a, b, **sc_kwargs)
    args = _SIG.bind(a, b, **sc_kwargs)
    args.apply_defaults()
    kw = dict(args.arguments)
    if kw["stoc_len"] is not None:
        raise ValueError("stoc_len must be None when row_stoc_len or col_stoc_len is given")
    if kw["granularity"] != "per_row":
        raise ValueError("row_stoc_len / col_stoc_len require granularity='per_row'")
    if np.ndim(a) != 2 or np.ndim(b) != 2:
        raise ValueError("row_stoc_len / col_stoc_len require 2D a and b")
    names = ("a", "b", "granularity", "mode", "sc_prec", "stoc_len", "chunk_d", "group_a",
             "group_b", "rng_levels", "halve_bipolar_stoc_len", "smooth_scales", "scramble")
    _sc.resolve(*(kw[k] for k in names))           # validates everything else
    N, M, B = np.shape(a)[0], np.shape(b)[0], 2 ** kw["sc_prec"]
    L = effective_stoc_len(_lengths(row_stoc_len, N, "row_stoc_len", B),
                           _lengths(col_stoc_len, M, "col_stoc_len", B), N, M, B)
    out = np.zeros((N, M), np.float32)
    a_, b_ = kw.pop("a"), kw.pop("b")
    for length in sorted(set(L[L > 0].tolist())):
        kw["stoc_len"] = int(length)
        out = np.where(L == length, _sc.sc_matmul(a_, b_, **kw), out)
    return out.astype(np.float32)


def cycle_budget(row_stoc_len, col_stoc_len, N, M, D, max_len):
    """``(used, baseline)``: sum over every product (n, m, d) of its length, and all at max."""
    L = effective_stoc_len(row_stoc_len, col_stoc_len, N, M, max_len)
    used = sum(int(v) for v in L.reshape(-1)) * D
    return used, N * M * D * max_len
