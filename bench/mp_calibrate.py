"""``python -m bench.mp_calibrate``: MP calibration of MiniLM (``mp.calibrate``)
with every candidate of a boundary in one compiled program (``lax.map`` over
the candidates, the library's way) against a Python loop over candidates (one
call of the block's one-state program per distinct candidate), in one process.
Both calibrations run cold (each compiles its own programs); the row says
whether they returned the same plan: equal boundaries, equal compensation
bits and equal per-block cycles.

Settings: the MP rules of ``scmp_jax_examples.mp_report`` (levels 128/64/32/16,
operators qkv / attn_out / ffn_up / ffn_down, budget of uniform L=64,
QwT compensation), the first ``--paragraphs`` paragraphs of
``lee_background.cor`` truncated to ``--tokens`` tokens, ``--layers`` MiniLM
layers (default 2 on CPU, 6 on GPU). Needs the examples extras, the MiniLM
weights package and gensim's data files.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from bench.common import write_result
from scmp_jax import mp
from scmp_jax.cli_tools.argtypes import int_in
from scmp_jax_examples import minilm, public_data
from scmp_jax_examples.mp_minilm import (BLOCK_PATH, CALIBRATE_RATIO, LEVELS, OPERATORS,
                                         calib_batch, mp_rules, truncate_layers)

__all__ = ["CountingProgram", "LoopProgram", "same_plan", "run", "main"]


class CountingProgram(mp.BlockProgram):
    """``BlockProgram`` counting the states it evaluates and the program calls."""
    states = 0
    calls = 0

    def evaluate(self, states, outputs=False):
        type(self).states += len(states)
        type(self).calls += 1
        return super().evaluate(states, outputs)


class LoopProgram(mp.BlockProgram):
    """``evaluate`` as a Python loop: one ``run`` (the one-state program) per
    distinct state of the list."""
    states = 0
    calls = 0

    def evaluate(self, states, outputs=False):
        done: dict = {}
        out = []
        for s in states:
            key = tuple(tuple(float(v) for v in s[op]) for op in self.ops)
            if key not in done:
                y, score, counts = self.run(s)
                type(self).calls += 1
                done[key] = (score, counts) + ((y,) if outputs else ())
            out.append(done[key])
        type(self).states += len(done)
        return out


def same_plan(a, b) -> dict:
    """Equal boundaries, compensation bits and per-block cycles, with the largest
    boundary difference (0.0 when equal)."""
    keys = set(a.boundaries) | set(b.boundaries)
    diff = max((max(abs(x - y) for x, y in zip(a.boundaries.get(k, ()), b.boundaries.get(k, ())))
                if k in a.boundaries and k in b.boundaries else float("inf"))
               for k in keys) if keys else 0.0
    comp = set(a.compensation) == set(b.compensation) and all(
        np.array_equal(np.asarray(a.compensation[k][n]).view(np.uint32),
                       np.asarray(b.compensation[k][n]).view(np.uint32))
        for k in a.compensation for n in ("kernel", "bias"))
    cycles = [r.budget_actual for r in a.report] == [r.budget_actual for r in b.report]
    return {"same_boundaries": dict(a.boundaries) == dict(b.boundaries),
            "same_compensation": bool(comp), "same_cycles": cycles,
            "max_boundary_diff": float(diff)}


def run(loaded, paragraphs: int, tokens: int, n_candidates: int, n_outer_op: int,
        n_outer_block: int, implementation=None) -> dict:
    """Calibrate twice (looped, then batched); the result row."""
    model, params, _ = loaded
    args = calib_batch(loaded, public_data.lee_background(paragraphs), tokens)
    rules = mp_rules(mp.FreeBoundaryMPConfig(LEVELS), implementation)
    kw = dict(block_path=BLOCK_PATH, budget_ratio=CALIBRATE_RATIO,
              n_candidates=n_candidates, n_outer_op=n_outer_op, n_outer_block=n_outer_block)
    plans, secs = {}, {}
    for name, cls in (("loop", LoopProgram), ("batched", CountingProgram)):
        cls.states = cls.calls = 0
        t0 = time.perf_counter()
        plans[name] = mp.calibrate(model, {"params": params}, args, rules, block_program=cls,
                                   **kw)
        secs[name] = time.perf_counter() - t0
        print(f"{name}: {secs[name]:.1f} s, {cls.states} states in {cls.calls} program calls")
    check = same_plan(plans["loop"], plans["batched"])
    print(f"loop / batched: {secs['loop'] / secs['batched']:.3f}; {check}")
    return dict(case=f"MiniLM, {model.config.num_hidden_layers} of 6 layers",
                rows=int(np.prod(args[0].shape)), layers=model.config.num_hidden_layers,
                operators=len(OPERATORS), levels=list(LEVELS), n_candidates=n_candidates,
                n_outer_op=n_outer_op, n_outer_block=n_outer_block,
                states_batched=CountingProgram.states, calls_batched=CountingProgram.calls,
                states_loop=LoopProgram.states, calls_loop=LoopProgram.calls,
                batched_s=secs["batched"], loop_s=secs["loop"],
                loop_over_batched=secs["loop"] / secs["batched"],
                block_s_batched=[r.seconds for r in plans["batched"].report],
                block_s_loop=[r.seconds for r in plans["loop"].report],
                same_plan=all(check[k] for k in ("same_boundaries", "same_compensation",
                                                 "same_cycles")), **check)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.mp_calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = jax.default_backend() == "gpu"
    ap.add_argument("--layers", type=int_in(1, 6), default=6 if gpu else 2)
    ap.add_argument("--paragraphs", type=int_in(1, 300), default=16 if gpu else 2)
    ap.add_argument("--tokens", type=int_in(3, 256), default=64 if gpu else 16)
    ap.add_argument("--candidates", type=int_in(1), default=10)
    ap.add_argument("--outer-op", type=int_in(1), default=2 if gpu else 1)
    ap.add_argument("--outer-block", type=int_in(1), default=2 if gpu else 1)
    ap.add_argument("--out", default=None, help="JSON result file (default "
                    "bench/results/mp_calibrate.json on a GPU, else <platform>_mp_calibrate.json)")
    args = ap.parse_args(argv)
    loaded = truncate_layers(minilm.load(), args.layers)
    row = run(loaded, args.paragraphs, args.tokens, args.candidates, args.outer_op,
              args.outer_block, implementation=None if gpu else "xla")
    write_result(args.out, "mp_calibrate", "bench.mp_calibrate", argv, [row])


if __name__ == "__main__":
    main()
