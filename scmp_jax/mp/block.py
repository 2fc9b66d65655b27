"""One block of a simulated model as compiled programs, for MP calibration.

``BlockProgram`` traces the model once with the block's first argument
replaced by a given input ``X`` and the trace ended at the block's output
(``flax.intercept.BlockOutput``; the interpreter skips what the output does
not need). Its boundaries of the searched (block, operator) pairs are traced
inputs, so:

* ``evaluate(states)``: every state in ONE program (``lax.map`` over the
  states; row lengths traced, stream levels static), compiled once per number
  of states and reused for every operator and boundary of the block;
* ``run(state)``: one state in a program of its own (the block's output for
  the compensation fit, and the reference a loop over states would give).

The outputs and level counts of a state are the same bits in both programs
(SC is integer arithmetic, the rest of a token-wise block is evaluated alike);
the objective is a float32 reduction, whose order XLA may choose per program,
so a search compares only objectives from ``evaluate``.

The objective, in float32 at the highest matmul precision: "qwt", the
residual ``||R - X_aug sol||^2`` of the ridge fit of ``R = Y_fp - Y_sc`` on
``[X, 1]`` (``G_inv`` from float64); "mse", ``mean(R^2)``. ``Y_fp`` is the
block's exact output on ``X``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..flax.intercept import BlockOutput
from .report import CycleBudget
from .search import ridge_system

__all__ = ["OBJECTIVES", "BlockProgram"]

OBJECTIVES = ("qwt", "mse")
F32 = jnp.float32
HIGH = jax.lax.Precision.HIGHEST


class BlockProgram:
    """Block ``block`` of ``sim`` (a ``SimulatedLinen`` with a ``block_path``) on
    input ``X``; ``ops``: the operators whose boundaries are inputs (a state is
    ``{op: boundaries}``); ``total_blocks``: for layer-bucket lookups."""

    def __init__(self, sim, variables, args, kwargs, block: int, X, *, ops: Sequence[str],
                 total_blocks: Optional[int] = None, objective: str = "qwt",
                 ridge: float = 1e-2):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.block, self.ops, self.objective = int(block), tuple(ops), objective
        self.total_blocks = total_blocks
        self.X = jnp.asarray(X)

        def hook(extra):
            def at_block(idx, fn, a, k):
                if idx == self.block:
                    raise BlockOutput(fn(extra[0], *a[1:], **k))
                return fn(*a, **k)
            return at_block

        self.traced, self.inputs = sim.trace(variables, *args, hook=hook, extra=(self.X,),
                                             **kwargs)
        self.records = []
        self.y_fp = jax.jit(self._exact)(*self.inputs, self.X)
        rows = int(np.prod(self.X.shape[:-1]))
        if np.prod(np.shape(self.y_fp)[:-1]) != rows:
            raise ValueError(f"block {block}: its output {np.shape(self.y_fp)} must keep the "
                             f"rows of its input {self.X.shape} (a token-wise block)")
        xa, gi = ridge_system(np.asarray(self.X, np.float64).reshape(rows, -1), ridge)
        self.xa, self.gi = jnp.asarray(xa, F32), jnp.asarray(gi, F32)
        self._one = jax.jit(self._single)
        self._map = jax.jit(self._many, static_argnames="outputs")

    # ---------------------------------------------------------------- traced pieces
    def _exact(self, w, s, d, X):
        return self.traced.evaluate(w, s, d, (X,), rules=(), callbacks=False)[0]

    def _forward(self, w, s, d, X, bounds):
        trial = {(self.block, op): b for op, b in zip(self.ops, bounds)}
        out, interp = self.traced.evaluate(w, s, d, (X,), trial=trial,
                                           total_blocks=self.total_blocks, callbacks=False)
        recs = [(r, c) for r, c in interp.mp_records if r.block == self.block]
        self.records = [r for r, _ in recs]
        return out, tuple(c for _, c in recs)

    def _score(self, y, y_fp, xa, gi):
        R = (y_fp.astype(F32) - y.astype(F32)).reshape(xa.shape[0], -1)
        if self.objective == "mse":
            return jnp.mean(R * R)
        sol = jnp.matmul(gi, jnp.matmul(xa.T, R, precision=HIGH), precision=HIGH)
        res = R - jnp.matmul(xa, sol, precision=HIGH)
        return jnp.sum(res * res)

    def _single(self, w, s, d, X, y_fp, xa, gi, bounds):
        y, counts = self._forward(w, s, d, X, bounds)
        return y, self._score(y, y_fp, xa, gi), counts

    def _many(self, w, s, d, X, y_fp, xa, gi, cands, outputs=False):
        def one(c):
            y, counts = self._forward(w, s, d, X, c[0])
            return self._score(y, y_fp, xa, gi), counts, (y if outputs else ())
        return jax.lax.map(one, cands)

    # ---------------------------------------------------------------- host side
    def _bounds(self, state) -> tuple:
        return tuple(jnp.asarray(np.asarray(state[op], np.float32)) for op in self.ops)

    def _args(self):
        return (*self.inputs, self.X, self.y_fp, self.xa, self.gi)

    def run(self, state: dict):
        """``(Y, score, counts)`` for one state: the block's output, the objective
        (a Python float of the float32 value) and rows per level of each MP op."""
        y, score, counts = self._one(*self._args(), self._bounds(state))
        return y, float(score), [np.asarray(c) for c in counts]

    def evaluate(self, states: Sequence[dict], outputs: bool = False) -> list:
        """``[(score, counts)]`` of every state, all in one program
        (``outputs=True``: ``[(score, counts, Y)]``, a program of its own)."""
        cands = tuple(jnp.asarray(np.asarray([s[op] for s in states], np.float32))
                      for op in self.ops)
        cands = (cands, jnp.zeros(len(states)))        # the map's length, even without ops
        scores, counts, ys = self._map(*self._args(), cands, outputs=outputs)
        scores, counts = np.asarray(scores), [np.asarray(c) for c in counts]
        return [(float(scores[i]), [c[i] for c in counts]) + ((ys[i],) if outputs else ())
                for i in range(len(states))]

    def cycles(self, counts) -> CycleBudget:
        """The block's MP cycles (every MP op of the block) for these counts."""
        total = CycleBudget(0, 0)
        for rec, c in zip(self.records, counts):
            used = rec.depth * rec.cols * int(np.dot(np.asarray(c, np.int64), rec.levels))
            total = total + CycleBudget(used, rec.rows * rec.cols * rec.depth * max(rec.levels))
        return total
