"""The result of MP calibration (``mp.calibrate``): a frozen ``MPPlan``.

A plan holds free boundaries per (block, operator), the QwT compensation of
each block whose fit helped (``y = block(x) + x @ kernel + bias``, a variable
collection) and one ``BlockReport`` per block. ``simulate(model, rules,
plan=plan)`` applies both: a ``FreeBoundaryMPConfig`` rule uses the plan's
boundaries for its (block, op) and each compensated block's output gets its
correction (``apply_compensation``, the same arithmetic calibration used).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from .config import FrozenMap

__all__ = ["MPPlan", "BlockReport", "COLLECTION", "apply_compensation", "block_key"]

#: name of the compensation collection (``MPPlan.variables``)
COLLECTION = "qwt"


def block_key(block: int) -> str:
    """Key of a block's entry in the compensation collection."""
    return f"block_{int(block)}"


def apply_compensation(y, x, kernel, bias):
    """``y + (x @ kernel + bias)`` over the last axis (float32, highest
    precision, so every backend computes the same product), in ``y``'s dtype."""
    c = jnp.matmul(jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32),
                   precision=jax.lax.Precision.HIGHEST) + jnp.asarray(bias, jnp.float32)
    return (jnp.asarray(y, jnp.float32) + c).astype(jnp.result_type(y))


@dataclasses.dataclass(frozen=True)
class BlockReport:
    """One block of a calibration: the searched operators and their boundaries,
    the objective before / after the search, the rmse of ``Y_fp - Y_sc`` with
    the initial boundaries (``rmse_before``), after the search
    (``rmse_search``) and after compensation (``rmse_after``; = ``rmse_search``
    when not compensated), the compensation's r2 and whether it is applied,
    the cycle budget of the block's MP ops (``budget_target`` None without a
    ``budget_ratio``) and the wall time."""
    block: int
    operators: tuple
    boundaries: FrozenMap
    score_before: float
    score_after: float
    rmse_before: float
    rmse_search: float
    rmse_after: float
    r2: float
    compensated: bool
    budget_target: Optional[float]
    budget_actual: int
    budget_baseline: int
    seconds: float

    @property
    def budget_ratio(self) -> float:
        """Cycles used / cycles at full length (0.0 for an empty baseline)."""
        return self.budget_actual / self.budget_baseline if self.budget_baseline else 0.0


def _frozen_array(x) -> np.ndarray:
    a = np.array(x, np.float32)
    a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class MPPlan:
    """``boundaries``: (block, operator) -> descending float tuple;
    ``compensation``: ``block_key(i)`` -> ``{"kernel": (D_in, D_out), "bias":
    (D_out,)}`` float32 (read-only) for the compensated blocks; ``report``:
    a ``BlockReport`` per block; ``block_path``: the regex that found the blocks."""
    block_path: str
    boundaries: FrozenMap
    compensation: FrozenMap
    report: tuple
    objective: str = "qwt"
    budget_ratio: Optional[float] = None

    def __post_init__(self):
        if not isinstance(self.block_path, str):
            raise TypeError(f"block_path must be a str, got {self.block_path!r}")
        bounds = {}
        for key, b in dict(self.boundaries).items():
            if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], str)):
                raise ValueError(f"boundaries keys must be (block, operator), got {key!r}")
            bounds[(int(key[0]), key[1])] = tuple(float(v) for v in b)
        object.__setattr__(self, "boundaries", FrozenMap(bounds))
        comp = {}
        for key, v in dict(self.compensation).items():
            if set(v) != {"kernel", "bias"}:
                raise ValueError(f"compensation[{key!r}] must hold 'kernel' and 'bias'")
            comp[str(key)] = FrozenMap({k: _frozen_array(v[k]) for k in ("kernel", "bias")})
        object.__setattr__(self, "compensation", FrozenMap(comp))
        object.__setattr__(self, "report", tuple(self.report))

    def compensation_for(self, block: int) -> Optional[tuple]:
        """``(kernel, bias)`` of a compensated block, else None."""
        c = self.compensation.get(block_key(block))
        return None if c is None else (c["kernel"], c["bias"])

    @property
    def variables(self) -> dict:
        """The compensation as a plain variable collection ``{"qwt": {...}}``."""
        return {COLLECTION: {k: {n: np.array(a) for n, a in v.items()}
                             for k, v in self.compensation.items()}}

    def table(self) -> str:
        """The per-block report as text."""
        head = ("block", "ops", "rmse before", "search", "after", "r2", "comp", "budget", "s")
        rows = [head]
        for r in self.report:
            tgt = "" if r.budget_target is None else f" (target {r.budget_target:.0f})"
            rows.append((str(r.block), ",".join(r.operators), f"{r.rmse_before:.4e}",
                         f"{r.rmse_search:.4e}", f"{r.rmse_after:.4e}", f"{r.r2:+.4f}",
                         "yes" if r.compensated else "no",
                         f"{r.budget_actual}/{r.budget_baseline}{tgt}", f"{r.seconds:.1f}"))
        w = [max(len(row[i]) for row in rows) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(n) for c, n in zip(row, w)).rstrip() for row in rows)

    __str__ = table
