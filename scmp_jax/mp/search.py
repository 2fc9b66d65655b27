"""The search rules of MP calibration (host side): the candidate grid, the
feasible-first order of trials, the coordinate descent over one operator's
free boundaries, the Gauss-Seidel rounds over a block's operators, and the
closed-form ridge fit of QwT compensation.

The rules are those of the reference's auto calibrator (scmp_kernels,
``mp/auto_calibrator.py``): boundaries descending in (0, 1); candidates for
boundary ``j`` on a grid strictly between its neighbours; a candidate replaces
the current value only when strictly better; a round without a change ends
the descent. Evaluation is the caller's (``evaluate(list of boundary tuples)
-> list of Trial``), so all candidates of one boundary can run as one program.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = ["EPS", "TOL", "Trial", "better", "as_boundaries", "candidate_grid", "search_op",
           "search_block", "ridge_system", "ridge_residual", "ridge_fit"]

EPS = 1e-3      # candidates keep this distance from their neighbours (and from 0 and 1)
TOL = 1e-9      # scores, cycles and overruns closer than this are equal


@dataclasses.dataclass(frozen=True)
class Trial:
    """One evaluated set of boundaries: the objective ``score`` (lower is better)
    and, under a budget, the block's MP cycles ``actual`` against ``target``."""
    score: float
    actual: Optional[int] = None
    target: Optional[float] = None

    @property
    def feasible(self) -> bool:
        return self.target is None or self.actual is None or self.actual <= self.target + TOL

    @property
    def over(self) -> float:
        """Cycles above the target (0.0 when feasible or without a budget)."""
        if self.target is None or self.actual is None:
            return 0.0
        return max(float(self.actual) - self.target, 0.0)


def better(new: Trial, best: Trial) -> bool:
    """Feasible before infeasible; two feasible: lower score, then fewer cycles;
    two infeasible: smaller overrun, then lower score (differences <= TOL tie)."""
    if new.feasible != best.feasible:
        return new.feasible
    if new.feasible:
        if new.score < best.score - TOL:
            return True
        if best.score < new.score - TOL:
            return False
        return (new.actual is not None and best.actual is not None
                and new.actual < best.actual - TOL)
    if new.over < best.over - TOL:
        return True
    if best.over < new.over - TOL:
        return False
    return new.score < best.score - TOL


def as_boundaries(b) -> tuple:
    """Boundaries as float32 values (what the classifier compares), as Python floats."""
    return tuple(float(v) for v in np.asarray(b, np.float32).reshape(-1))


def candidate_grid(bounds: Sequence[float], j: int, n: int, eps: float = EPS) -> tuple:
    """``n`` candidates for ``bounds[j]``: ``np.linspace(lo, hi, n)`` in float64,
    rounded to float32, with ``lo = bounds[j+1] + eps`` (``eps`` for the last)
    and ``hi = bounds[j-1] - eps`` (``1 - eps`` for the first); when ``hi <= lo``
    only the current value."""
    k1 = len(bounds)
    lo = float(bounds[j + 1]) + eps if j + 1 < k1 else eps
    hi = float(bounds[j - 1]) - eps if j > 0 else 1.0 - eps
    if hi <= lo:
        return (float(bounds[j]),)
    return as_boundaries(np.linspace(lo, hi, n))


def search_op(bounds, evaluate: Callable, *, current: Optional[Trial] = None,
              n_candidates: int = 10, n_outer: int = 2, eps: float = EPS):
    """Coordinate descent over the boundaries of one (block, operator).

    ``evaluate(list of boundary tuples) -> list of Trial`` (the other operators
    held fixed); ``current``: the trial of ``bounds`` if known. Each outer round
    visits ``j = 0 .. k-2`` once; returns ``(bounds, trial)``."""
    b = list(as_boundaries(bounds))
    best = evaluate([tuple(b)])[0] if current is None else current
    for _ in range(n_outer):
        improved = False
        for j in range(len(b)):
            cands = candidate_grid(b, j, n_candidates, eps)
            trials = evaluate([tuple(b[:j]) + (c,) + tuple(b[j + 1:]) for c in cands])
            pick, pick_trial = b[j], best
            for c, t in zip(cands, trials):
                if better(t, pick_trial):
                    pick, pick_trial = c, t
            if pick != b[j] or better(pick_trial, best):
                b[j], best, improved = pick, pick_trial, True
        if not improved:
            break
    return tuple(b), best


def search_block(state: dict, ops: Sequence[str], evaluate: Callable, *, current: Trial,
                 n_outer_block: int = 2, on_op: Optional[Callable] = None, **op_kwargs):
    """Gauss-Seidel rounds over a block's operators: each round runs
    :func:`search_op` for every op in order, the others at their latest
    boundaries. ``state``: op -> boundaries (updated in place);
    ``evaluate(op, list of boundary tuples)``; returns the final trial."""
    for _ in range(n_outer_block):
        for op in ops:
            state[op], current = search_op(state[op], lambda bl, op=op: evaluate(op, bl),
                                           current=current, **op_kwargs)
            if on_op is not None:
                on_op(op)
    return current


def ridge_system(X, ridge: float):
    """``(X_aug, G_inv)`` float64: ``X_aug = [X, 1]`` and the inverse of
    ``X_aug^T X_aug + ridge * I`` (no penalty on the bias row)."""
    X = np.asarray(X, np.float64)
    Xa = np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)
    G = Xa.T @ Xa
    G[np.arange(X.shape[1]), np.arange(X.shape[1])] += ridge
    return Xa, np.linalg.inv(G)


def ridge_residual(R, Xa, Gi) -> float:
    """``||R - X_aug sol||^2`` with ``sol = G_inv X_aug^T R`` (float64)."""
    R = np.asarray(R, np.float64)
    res = R - Xa @ (Gi @ (Xa.T @ R))
    return float(np.sum(res * res))


def ridge_fit(X, R, ridge: float):
    """Closed-form ridge of ``R`` on ``X`` (float64): ``(W (D, D_out), b (D_out,),
    r2)``, ``r2 = 1 - SS_res / SS_tot`` with ``SS_tot`` about the column means."""
    Xa, Gi = ridge_system(X, ridge)
    R = np.asarray(R, np.float64)
    sol = Gi @ (Xa.T @ R)
    res = R - Xa @ sol
    ss_tot = float(np.sum((R - R.mean(axis=0)) ** 2))
    r2 = 1.0 - float(np.sum(res * res)) / ss_tot if ss_tot > 0 else 0.0
    return sol[:-1], sol[-1], r2
