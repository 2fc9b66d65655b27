"""``bench.mp_calibrate``: the plan comparison, the loop baseline's one call per
distinct state, and its table in BENCHMARKS.md (numbers as in the JSON)."""
from __future__ import annotations

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from bench import mp_calibrate as bmc
from bench import report
from scmp_jax import mp


def block_report(actual):
    return mp.BlockReport(block=0, operators=("qkv",), boundaries=mp.FrozenMap(),
                          score_before=1.0, score_after=0.5, rmse_before=0.3, rmse_search=0.2,
                          rmse_after=0.1, r2=0.5, compensated=True, budget_target=10.0,
                          budget_actual=actual, budget_baseline=20, seconds=1.0)


def plan(bounds=(0.5, 0.3, 0.1), bias=0.0, actual=9):
    comp = {"block_0": {"kernel": np.eye(2, dtype=np.float32),
                        "bias": np.full(2, bias, np.float32)}}
    return mp.MPPlan(r"layer_(\d+)", {(0, "qkv"): bounds}, comp, [block_report(actual)])


def test_same_plan():
    assert bmc.same_plan(plan(), plan()) == {"same_boundaries": True, "same_compensation": True,
                                             "same_cycles": True, "max_boundary_diff": 0.0}
    d = bmc.same_plan(plan(), plan(bounds=(0.5, 0.25, 0.1)))
    assert not d["same_boundaries"] and abs(d["max_boundary_diff"] - 0.05) < 1e-12
    assert not bmc.same_plan(plan(), plan(bias=-0.0))["same_compensation"]   # bits, not values
    assert not bmc.same_plan(plan(), plan(actual=8))["same_cycles"]


def test_loop_runs_each_distinct_state_once():
    prog = bmc.LoopProgram.__new__(bmc.LoopProgram)     # no model: run() stubbed
    prog.ops = ("qkv",)
    seen = []

    def run(state):
        seen.append(state["qkv"])
        return None, float(sum(state["qkv"])), [np.array([1, 2])]

    prog.run = run
    bmc.LoopProgram.states = bmc.LoopProgram.calls = 0
    out = prog.evaluate([{"qkv": (0.5,)}, {"qkv": (0.2,)}, {"qkv": (0.5,)}])
    assert seen == [(0.5,), (0.2,)] and [o[0] for o in out] == [0.5, 0.2, 0.5]
    assert (bmc.LoopProgram.states, bmc.LoopProgram.calls) == (2, 2)


def test_report_table(tmp_path):
    row = dict(case="MiniLM, 2 of 6 layers", rows=32, levels=[128, 64, 32, 16], n_candidates=10,
               n_outer_op=1, n_outer_block=1, states_batched=260, states_loop=180,
               batched_s=61.25, loop_s=48.75, loop_over_batched=0.7959, same_plan=True)
    env = dict(family="mp_calibrate", command="python -m bench.mp_calibrate", device="cpu",
               platform="cpu", jax="0", date="2026-01-01", commit=None, devices=1,
               cpu_count=2, load_1min=1.0, rows=[row])
    (tmp_path / "cpu_mp_calibrate.json").write_text(json.dumps(env))
    text = report.render(*report.load(str(tmp_path)))
    cpu = text.split("## The CPU path", 1)[1]
    assert "### MP calibration: candidates in one program vs a loop (CPU)" in cpu
    assert "| MiniLM, 2 of 6 layers | 32 | (128,64,32,16) | 10 | 1 / 1 | 61.2 | 48.8 | 0.796 " \
           "| 260 / 180 | yes |" in cpu


def test_block_program_must_be_a_block_program_class():
    model = nn.Dense(2)
    x = np.ones((3, 2), np.float32)
    variables = model.init(jax.random.key(0), x)
    for bad in (int, bmc.same_plan, "BlockProgram"):
        with pytest.raises(TypeError, match="block_program"):
            mp.calibrate(model, variables, x, [], block_path=r"layer_(\d+)", block_program=bad)
