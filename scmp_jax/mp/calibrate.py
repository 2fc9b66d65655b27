"""Automatic MP calibration: ``calibrate(model, variables, calib_inputs, rules,
block_path=...)`` -> a frozen ``MPPlan``.

Gauss-Seidel over blocks, in block order (the reference's auto calibrator,
scmp_kernels ``mp/auto_calibrator.py``):

1. ``X_0``: the first block's input in the simulated model (the rules apply
   before it too).
2. Block ``i`` on ``X_i`` (``BlockProgram``): ``Y_fp`` the exact block; the
   searched operators are those of ``FreeBoundaryMPConfig`` rules in the block
   without a fixed level, starting from the config's boundaries. Rounds
   (``n_outer_block``) over the operators, each a coordinate descent
   (``search.search_op``: ``n_outer_op`` rounds, ``n_candidates`` per boundary,
   every candidate of a boundary in one program).
3. With ``budget_ratio`` the trials carry the block's MP cycles against
   ``target = ratio * baseline_i + carry``, clipped to ``[0, baseline_i]``,
   ``carry = ratio * (baselines so far) - (cycles used so far)``; feasible
   trials come first (``search.better``).
4. QwT: ``W, b, r2`` from the ridge fit of ``Y_fp - Y_sc`` on ``X_i``
   (float64); applied when ``compensate`` and ``r2 > 0``. ``X_{i+1}`` is the
   compensated SC output (``plan.apply_compensation``).

Deterministic: the same inputs give the same plan (no randomness; ties keep
the earlier candidate).
"""
from __future__ import annotations

import importlib.util
import math
import time
from typing import Optional

import jax
import numpy as np

from .._src.errors import check_bool, check_int
from ..flax.intercept import BlockOutput, simulate
from ..flax.rules import SC, Rule
from .block import OBJECTIVES, BlockProgram
from .config import FreeBoundaryMPConfig, FrozenMap
from .plan import BlockReport, MPPlan, apply_compensation, block_key
from .search import EPS, Trial, as_boundaries, ridge_fit, search_block

__all__ = ["calibrate"]


def _check(model, calib_inputs, rules, budget_ratio, objective, compensate, ridge, eps):
    import flax.linen as nn
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a flax linen Module, got {type(model).__name__}")
    if not isinstance(rules, (list, tuple)) or not all(isinstance(r, Rule) for r in rules):
        raise TypeError("rules must be a list of Rule objects")
    if budget_ratio is not None:
        if isinstance(budget_ratio, bool) or not isinstance(budget_ratio, (int, float, np.number)):
            raise TypeError(f"budget_ratio must be None or a number, got {budget_ratio!r}")
        if not math.isfinite(budget_ratio) or budget_ratio < 0:
            raise ValueError(f"budget_ratio must be finite and >= 0, got {budget_ratio!r}")
        budget_ratio = min(float(budget_ratio), 1.0)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    check_bool(compensate, "compensate")
    for name, v in (("ridge", ridge), ("eps", eps)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name} must be a number > 0, got {v!r}")
    if eps >= 0.5:
        raise ValueError(f"eps must be < 0.5, got {eps!r}")
    args = tuple(calib_inputs) if isinstance(calib_inputs, (list, tuple)) else (calib_inputs,)
    return args, budget_ratio


def _searched_ops(sim, variables, args, kwargs, total):
    """block -> [(operator, config)] of the FreeBoundaryMPConfig ops, in order."""
    tr, ins = sim.trace(variables, *args, **kwargs)
    seen = []
    jax.eval_shape(lambda *a: seen.append(tr.evaluate(*a, total_blocks=total,
                                                      callbacks=False)[1]) or 0, *ins)
    found: dict = {}
    for rec in seen[0].records:
        arith = None if rec.rule is None else sim.rules[rec.rule].arithmetic
        if not isinstance(arith, SC) or arith.mp is None or rec.block is None:
            continue
        cfg = arith.mp.config
        if not isinstance(cfg, FreeBoundaryMPConfig) \
                or cfg.get_fixed_level(rec.operator, rec.block) is not None:
            continue
        ops = found.setdefault(rec.block, {})
        if rec.operator in ops and ops[rec.operator].stoc_len_levels != cfg.stoc_len_levels:
            raise ValueError(f"operator {rec.operator!r} of block {rec.block} has two configs "
                             "with different stoc_len_levels")
        ops.setdefault(rec.operator, cfg)
    return {b: list(ops.items()) for b, ops in found.items()}


def _first_input(sim, variables, args, kwargs, first):
    def hook(_extra):
        def at_block(idx, fn, a, k):
            if idx == first:
                raise BlockOutput(a[0])
            return fn(*a, **k)
        return at_block
    tr, ins = sim.trace(variables, *args, hook=hook, **kwargs)
    return jax.jit(lambda *a: tr.evaluate(*a, callbacks=False)[0])(*ins)


class _Trials:
    """The objective and MP cycles of a block's states ((op boundaries, ...) in
    ``names`` order), each state evaluated once, in batches of ``n`` (one
    compiled program for all of them)."""

    def __init__(self, prog, names, n, budget: bool):
        self.prog, self.names, self.n, self.budget = prog, names, n, budget
        self.target: Optional[float] = None
        self.cache: dict = {}

    def get(self, key):
        """``(score, CycleBudget)`` of one state."""
        if key not in self.cache:
            todo = [key]
            self._fill(todo)
        return self.cache[key]

    def _fill(self, todo):
        padded = todo + [todo[-1]] * (-len(todo) % self.n)
        for s in range(0, len(padded), self.n):
            batch = padded[s:s + self.n]
            res = self.prog.evaluate([dict(zip(self.names, k)) for k in batch])
            for k, (score, counts) in zip(batch, res):
                self.cache[k] = (score, self.prog.cycles(counts))

    def trials(self, keys) -> list:
        """A ``Trial`` per state; cycles enter the order only under a budget."""
        todo = [k for k in dict.fromkeys(keys) if k not in self.cache]
        if todo:
            self._fill(todo)
        return [Trial(self.cache[k][0], self.cache[k][1].used if self.budget else None,
                      self.target) for k in keys]


class _Bar:
    """A tqdm bar over (block, op) searches when asked for and installed."""

    def __init__(self, enabled, total):
        self.bar = None
        if enabled and importlib.util.find_spec("tqdm") is not None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="mp.calibrate", leave=False)

    def step(self, block, op):
        if self.bar is not None:
            self.bar.set_postfix_str(f"block {block} {op}")
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def calibrate(model, variables, calib_inputs, rules, *, block_path: str,
              budget_ratio: Optional[float] = None, objective: str = "qwt",
              compensate: bool = True, ridge: float = 1e-2, n_candidates: int = 10,
              n_outer_op: int = 2, n_outer_block: int = 2, eps: float = EPS,
              apply_kwargs: Optional[dict] = None, progress: bool = False,
              block_program: type = BlockProgram) -> MPPlan:
    """Search free boundaries per (block, operator) and fit QwT compensation.

    ``model``, ``variables``: a linen module and its variables; ``calib_inputs``:
    the positional argument(s) of ``model.apply`` (an array or a tuple), with
    ``apply_kwargs``. ``rules``: ``simulate``'s rules; ops of rules with
    ``SC(mp=FreeBoundaryMPConfig(...))`` are searched, every other rule runs
    as given. ``block_path``: regex with one group matching the blocks' module
    paths; a block's ``__call__`` must take the running activation first and
    return an array of the same rows. ``objective``: "qwt" | "mse";
    ``progress``: a tqdm bar over blocks and ops (when tqdm is installed).
    ``block_program``: the class building each block's programs (``BlockProgram``
    or a subclass, e.g. a benchmark's that evaluates states one call at a time).
    The module docstring gives the rules; ``plan.report`` the per-block numbers.
    """
    args, budget_ratio = _check(model, calib_inputs, rules, budget_ratio, objective,
                                compensate, ridge, eps)
    for name, v in (("n_candidates", n_candidates), ("n_outer_op", n_outer_op),
                    ("n_outer_block", n_outer_block)):
        check_int(v, name, 1)
    check_bool(progress, "progress")
    if not (isinstance(block_program, type) and issubclass(block_program, BlockProgram)):
        raise TypeError(f"block_program must be BlockProgram or a subclass, got {block_program!r}")
    kwargs = dict(apply_kwargs or {})
    sim = simulate(model, rules, block_path=block_path)
    tr, _ = sim.trace(variables, *args, **kwargs)
    blocks = sorted({i for i in (sim.blocks.module_index(p) for p in tr.paths) if i is not None})
    if not blocks:
        raise ValueError(f"block_path {block_path!r} matches no module path of the model")
    total = sim.blocks.total(tr.paths)
    searched = _searched_ops(sim, variables, args, kwargs, total)
    X = _first_input(sim, variables, args, kwargs, blocks[0])
    bar = _Bar(progress, sum(len(searched.get(b, ())) * n_outer_block for b in blocks))
    bounds, comp, reports = {}, {}, []
    base_sum = used_sum = 0
    search_kw = dict(n_candidates=n_candidates, n_outer=n_outer_op, eps=eps)
    try:
        for i in blocks:
            t0 = time.perf_counter()
            ops = searched.get(i, [])
            prog = block_program(sim, variables, args, kwargs, i, X, ops=[o for o, _ in ops],
                                 total_blocks=total, objective=objective, ridge=ridge)
            state = {o: as_boundaries(c.get_boundaries(o, i)) for o, c in ops}
            names = [o for o, _ in ops]
            trials = _Trials(prog, names, n_candidates, budget_ratio is not None)
            y0 = prog.run(state)[0]
            s0, cyc0 = trials.get(tuple(state[o] for o in names))
            if budget_ratio is not None:
                carry = budget_ratio * base_sum - used_sum
                trials.target = float(min(max(budget_ratio * cyc0.baseline + carry, 0.0),
                                          cyc0.baseline))
            if ops:
                def evaluate(op, candidates, state=state, trials=trials, names=names):
                    return trials.trials([tuple(b if o == op else state[o] for o in names)
                                          for b in candidates])
                search_block(state, names, evaluate,
                             current=trials.trials([tuple(state[o] for o in names)])[0],
                             n_outer_block=n_outer_block,
                             on_op=lambda op, i=i: bar.step(i, op), **search_kw)
            y1 = prog.run(state)[0]
            s1, cyc1 = trials.get(tuple(state[o] for o in names))
            target = trials.target
            yfp = np.asarray(prog.y_fp, np.float64)
            rows = yfp.size // yfp.shape[-1]
            R0 = (yfp - np.asarray(y0, np.float64)).reshape(rows, -1)
            R1 = (yfp - np.asarray(y1, np.float64)).reshape(rows, -1)
            rmse = lambda r: float(np.sqrt(np.mean(r * r)))  # noqa: E731
            W, b, r2 = ridge_fit(np.asarray(X, np.float64).reshape(rows, -1), R1, ridge)
            use = bool(compensate) and r2 > 0
            x_next = y1
            rmse_after = rmse(R1)
            if use:
                W32, b32 = W.astype(np.float32), b.astype(np.float32)
                comp[block_key(i)] = {"kernel": W32, "bias": b32}
                x_next = apply_compensation(y1, X, W32, b32)
                rmse_after = rmse(R1 - (np.asarray(X, np.float64).reshape(rows, -1)
                                        @ W32.astype(np.float64) + b32.astype(np.float64)))
            for o, _ in ops:
                bounds[(i, o)] = state[o]
            reports.append(BlockReport(
                block=i, operators=tuple(o for o, _ in ops),
                boundaries=FrozenMap({o: state[o] for o, _ in ops}), score_before=s0,
                score_after=s1, rmse_before=rmse(R0),
                rmse_search=rmse(R1), rmse_after=rmse_after, r2=float(r2), compensated=use,
                budget_target=target, budget_actual=cyc1.used, budget_baseline=cyc1.baseline,
                seconds=time.perf_counter() - t0))
            base_sum += cyc1.baseline
            used_sum += cyc1.used
            X = x_next
    finally:
        bar.close()
    return MPPlan(block_path, bounds, comp, reports, objective, budget_ratio)
