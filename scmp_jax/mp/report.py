"""MP cost reports and loggers, as explicit objects (host side, not jit-able).

``cycle_budget`` gives the SC cycle budget actually used: the sum over every
product ``a[n, d] * b[m, d]`` of its stream length ``min(row_L[n], col_L[m])``,
against all products at ``max_len``. The loggers reproduce the reference's
``MPDistributionLogger`` / ``AutoMPBudgetLogger`` / ``MetricProfiler`` records
and sums, but each is an instance you create and pass around.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
from collections import Counter
from typing import Optional

import numpy as np

from .._src.errors import check_bool, check_int
from .config import RowAssignment

__all__ = ["CycleBudget", "cycle_budget", "MPDistributionLogger", "AutoMPBudgetLogger",
           "MetricProfiler"]


@dataclasses.dataclass(frozen=True)
class CycleBudget:
    """``used`` / ``baseline`` SC cycles (exact ints); add budgets to total them."""
    used: int
    baseline: int

    @property
    def ratio(self) -> float:
        """Fraction of the all-max budget used (0.0 for an empty baseline)."""
        return self.used / self.baseline if self.baseline else 0.0

    @property
    def savings(self) -> float:
        return 1.0 - self.ratio

    def __add__(self, other: "CycleBudget") -> "CycleBudget":
        return CycleBudget(self.used + other.used, self.baseline + other.baseline)


def _length_counts(x, name: str) -> Counter:
    if isinstance(x, RowAssignment):
        x = x.stoc_len
    v = np.asarray(x)
    if v.ndim != 1 or v.dtype.kind not in "iu":
        raise ValueError(f"{name} must be a 1D int array, got shape {v.shape} dtype {v.dtype}")
    if v.size and v.min() < 0:
        raise ValueError(f"{name} must be >= 0")
    return Counter(int(k) for k in v.tolist())


def cycle_budget(row_stoc_len=None, col_stoc_len=None, *, N: Optional[int] = None,
                 M: Optional[int] = None, D: int = 1, max_len: Optional[int] = None) -> CycleBudget:
    """Cycle budget of one ``(N, D) x (M, D)`` SC matmul.

    ``row_stoc_len`` ``(N,)`` / ``col_stoc_len`` ``(M,)`` int (or a
    :class:`RowAssignment`); a side left None has no limit of its own (give
    its size as ``N`` / ``M``). ``used = D * sum_{n,m} min(L_n, L_m)``,
    ``baseline = N * M * D * max_len``; ``max_len`` defaults to the largest
    length present (pass the config's top level to be safe).
    """
    if row_stoc_len is None and col_stoc_len is None:
        raise ValueError("give row_stoc_len and/or col_stoc_len")
    for name, v in (("N", N), ("M", M), ("D", D), ("max_len", max_len)):
        if v is not None:
            check_int(v, name, 0)
    rows = _length_counts(row_stoc_len, "row_stoc_len") if row_stoc_len is not None else None
    cols = _length_counts(col_stoc_len, "col_stoc_len") if col_stoc_len is not None else None
    if rows is None:
        if N is None:
            raise ValueError("N is needed when row_stoc_len is None")
        rows = Counter({None: int(N)})
    if cols is None:
        if M is None:
            raise ValueError("M is needed when col_stoc_len is None")
        cols = Counter({None: int(M)})
    n, m = sum(rows.values()), sum(cols.values())
    present = [k for k in (*rows, *cols) if k is not None]
    top = (max(present) if present else 0) if max_len is None else int(max_len)
    if present and max(present) > top:
        raise ValueError(f"a stream length ({max(present)}) exceeds max_len ({top})")
    used = 0
    for lr, cr in rows.items():
        for lc, cc in cols.items():
            used += cr * cc * min(x for x in (lr, lc) if x is not None)
    return CycleBudget(used=int(D) * used, baseline=n * m * int(D) * top)


class MPDistributionLogger:
    """Per-(timestep, block, operator) rows per level, plus exact compute
    records; ``summary`` gives the savings table (the reference's numbers)."""

    def __init__(self):
        self.entries: list = []
        self.compute_entries: list = []

    def log(self, timestep: int, block_idx: int, operator: str, assignment: RowAssignment,
            total_rows: Optional[int] = None) -> dict:
        """Record ``sl_<L>_count`` / ``sl_<L>_frac`` (4 decimals) per level, L descending."""
        counts = np.asarray(assignment.counts()).reshape(-1, len(assignment.stoc_len_levels)).sum(0)
        total = int(np.asarray(assignment.row_levels).size) if total_rows is None else int(total_rows)
        entry = {"timestep": timestep, "block": block_idx, "operator": operator, "total_rows": total}
        for sl, c in sorted(zip(assignment.stoc_len_levels, counts.tolist()), reverse=True):
            entry[f"sl_{sl}_count"] = int(c)
            entry[f"sl_{sl}_frac"] = round(int(c) / max(total, 1), 4)
        self.entries.append(entry)
        return entry

    def log_compute(self, timestep: int, block_idx: int, operator: str, baseline, actual) -> None:
        """Exact cost of one op (e.g. from :func:`cycle_budget`'s ``baseline`` / ``used``)."""
        self.compute_entries.append({"timestep": timestep, "block": block_idx,
                                     "operator": operator, "baseline": baseline, "actual": actual})

    def log_budget(self, timestep: int, block_idx: int, operator: str, budget: CycleBudget) -> None:
        self.log_compute(timestep, block_idx, operator, budget.baseline, budget.used)

    def dump_csv(self, path: str) -> int:
        """Write the distribution entries (fixed columns, then ``sl_*`` by L
        descending), clear them, return the number of rows written."""
        if not self.entries:
            return 0
        keys = dict.fromkeys(k for e in self.entries for k in e)
        sl = sorted((k for k in keys if k.startswith("sl_")),
                    key=lambda k: (-int(k.split("_")[1]), k.split("_")[2]))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["timestep", "block", "operator", "total_rows", *sl],
                               extrasaction="ignore")
            w.writeheader()
            w.writerows(self.entries)
        n = len(self.entries)
        self.entries.clear()
        return n

    @staticmethod
    def _entry_cost(entry: dict, max_stoc_len: int):
        actual = sum(int(k.split("_")[1]) * v for k, v in entry.items()
                     if k.startswith("sl_") and k.endswith("_count"))
        return entry["total_rows"] * max_stoc_len, actual

    def totals(self, max_stoc_len: int = 256) -> dict:
        """``{"baseline", "actual", "savings", "per_operator": {op: (b, a)}}``.

        Compute records win; distribution entries count (rows * L) only for
        operators with no compute record, each row at ``max_stoc_len`` in the baseline."""
        per_op: dict = {}
        ops_with_compute = {e["operator"] for e in self.compute_entries}
        items = [(e["operator"], e["baseline"], e["actual"]) for e in self.compute_entries]
        items += [(e["operator"], *self._entry_cost(e, max_stoc_len)) for e in self.entries
                  if e["operator"] not in ops_with_compute]
        for op, b, a in items:
            pb, pa = per_op.get(op, (0, 0.0))
            per_op[op] = (pb + b, pa + a)
        base = sum(b for b, _ in per_op.values())
        act = sum(a for _, a in per_op.values())
        return {"baseline": base, "actual": act, "savings": 1.0 - act / max(base, 1),
                "per_operator": per_op}

    def summary(self, max_stoc_len: int = 256, save_path: Optional[str] = None) -> str:
        """The savings table as text (also written to ``save_path``); '' if nothing logged."""
        if not self.entries and not self.compute_entries:
            return ""
        t = self.totals(max_stoc_len)
        lines = ["MP compute savings", f"  baseline (all sl={max_stoc_len}): {t['baseline']:,.0f}",
                 f"  actual weighted stoc_len: {t['actual']:,.0f}",
                 f"  total savings: {t['savings']:.1%}",
                 f"  {'operator':<15s} {'baseline':>14s} {'actual':>14s} {'savings':>8s}"]
        for op in sorted(t["per_operator"]):
            b, a = t["per_operator"][op]
            lines.append(f"  {op:<15s} {b:>14,.0f} {a:>14,.0f} {1.0 - a / max(b, 1):>8.1%}")
        text = "\n".join(lines)
        if save_path:
            with open(save_path, "w") as f:
                f.write(text + "\n")
        return text

    def clear(self) -> None:
        self.entries.clear()
        self.compute_entries.clear()


class AutoMPBudgetLogger:
    """Per-forward (block, operator, baseline, actual) records, kept only while enabled."""

    def __init__(self, enabled: bool = False):
        self.enabled = check_bool(enabled, "enabled")
        self.entries: list = []

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    @contextlib.contextmanager
    def recording(self):
        """``with logger.recording(): ...`` enables, then restores the previous state."""
        prev, self.enabled = self.enabled, True
        try:
            yield self
        finally:
            self.enabled = prev

    def record(self, block_idx: int, operator: str, baseline, actual) -> None:
        if self.enabled:
            self.entries.append({"block": int(block_idx), "operator": operator,
                                 "baseline": float(baseline), "actual": float(actual)})

    def record_budget(self, block_idx: int, operator: str, budget: CycleBudget) -> None:
        self.record(block_idx, operator, budget.baseline, budget.used)

    def snapshot(self, clear: bool = False) -> list:
        out = list(self.entries)
        if check_bool(clear, "clear"):
            self.clear()
        return out

    def totals(self, clear: bool = False) -> dict:
        out = {"baseline": 0.0, "actual": 0.0}
        for e in self.entries:
            out["baseline"] += e["baseline"]
            out["actual"] += e["actual"]
        if check_bool(clear, "clear"):
            self.clear()
        return out

    def clear(self) -> None:
        self.entries.clear()


class MetricProfiler:
    """Per-(timestep, block, operator) statistics of a metric vector: N, mean,
    std (n-1), min, max and linear-interpolated quantiles q25/q75/q95/q99."""

    FIELDS = ("timestep", "block", "operator", "N", "mean", "std", "min", "max",
              "q25", "q75", "q95", "q99")

    def __init__(self, enabled: bool = True):
        self.enabled = check_bool(enabled, "enabled")
        self.entries: list = []

    def record(self, metric, timestep: int, block_idx: int, operator: str) -> None:
        if not self.enabled:
            return
        m = np.asarray(metric, np.float32).reshape(-1)
        q = np.quantile(m, [0.25, 0.75, 0.95, 0.99]) if m.size else [np.nan] * 4
        std = float(np.std(m, ddof=1)) if m.size > 1 else float("nan")
        stats = [float(m.mean()) if m.size else float("nan"), std,
                 float(m.min()) if m.size else float("nan"), float(m.max()) if m.size else float("nan")]
        self.entries.append(dict(zip(self.FIELDS, [timestep, block_idx, operator, int(m.size),
                                                   *stats, *(float(v) for v in q)])))

    def dump_csv(self, path: str) -> int:
        n = len(self.entries)
        if n:
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(self.FIELDS))
                w.writeheader()
                w.writerows(self.entries)
            self.entries.clear()
        return n

    def clear(self) -> None:
        self.entries.clear()
