"""MiniLM under mixed-precision SC: the rules, batching and calibration that
``mp_report`` runs.

* ``uniform_rules(L)``: SC ``per_row``, bipolar, ``sc_prec=8`` on the 36
  encoder ``nn.Dense`` matmuls at one stream length;
* ``mp_rules(config)``: the same matmuls under an MP config, one rule per
  operator (``OPERATORS``; q, k and v read the same input and share one);
* ``Embedder``: a fixed list of texts in fixed batches of similar length
  (``length_groups``), with the MP cycles of every call;
* ``select_ridge``: the QwT ridge with the lowest held-out residual;
* ``calibrate_plan``: ``mp.calibrate`` at the cycle budget of uniform L=64.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import jax
import numpy as np

from scmp_jax import mp
from scmp_jax.flax import SC, Rule, simulate
from scmp_jax.mp.search import ridge_fit
from scmp_jax_examples import minilm
from scmp_jax_examples.minilm_report import DENSE

__all__ = ["LEVELS", "FULL_LENGTH", "UNIFORM", "BUDGET_LENGTH", "QUANTILE_FRACTIONS",
           "OPERATORS", "BLOCK_PATH", "CALIBRATE_RATIO", "RIDGE_GRID", "uniform_rules", "mp_rules",
           "truncate_layers", "truncating_tokenizer", "length_groups", "Embedder",
           "calib_batch", "select_ridge", "calibrate_plan"]

#: MP stream lengths; not 256: at sc_prec=8 a full-length stream takes no Owen
#: scramble and embeds worse than 128 (docs/minilm)
LEVELS = (128, 64, 32, 16)
FULL_LENGTH = 256
UNIFORM = (32, 64, 128, 256)
BUDGET_LENGTH = 64
#: ``mp.calibrate``'s budget_ratio (against every row at LEVELS[0]) for BUDGET_LENGTH
CALIBRATE_RATIO = BUDGET_LENGTH / LEVELS[0]
#: quantile MP: the top third of the rows at 128, 1/6 at 64, 1/6 at 32, the last
#: third at 16 (mean 64)
QUANTILE_FRACTIONS = (1 / 3, 1 / 6, 1 / 6, 1 / 3)
#: MP operator name -> module path under a layer
OPERATORS = {"qkv": "attention/(query|key|value)", "attn_out": "attention/output",
             "ffn_up": "intermediate", "ffn_down": "output"}
BLOCK_PATH = r"encoder/layer_(\d+)"
RIDGE_GRID = (1e-2, 1.0, 10.0, 100.0, 1000.0)
def _sc(impl, **kw):
    return SC("per_row", mode="bipolar", sc_prec=8, implementation=impl, **kw)


def uniform_rules(stoc_len: int, implementation=None) -> list:
    """Every encoder Dense matmul at one stream length."""
    return [Rule(DENSE, _sc(implementation, stoc_len=stoc_len))]


def mp_rules(config, implementation=None) -> list:
    """Every encoder Dense matmul under ``config``, one rule per operator."""
    return [Rule(rf"encoder/layer_\d+/{path}", _sc(implementation, mp=config), operator=op)
            for op, path in OPERATORS.items()]


def truncate_layers(loaded, layers: Optional[int]):
    """``(model, params, tokenizer)`` keeping only the first ``layers`` layers."""
    model, params, tok = loaded
    if layers is None or layers >= model.config.num_hidden_layers:
        return loaded
    cfg = dataclasses.replace(model.config, num_hidden_layers=layers)
    enc = {f"layer_{i}": params["encoder"][f"layer_{i}"] for i in range(layers)}
    return (minilm.MiniLM(cfg, model.pipeline, model.precision),
            {**params, "encoder": enc}, tok)


def truncating_tokenizer(tok, max_tokens: int):
    """A copy of ``tok`` truncating to ``max_tokens`` (the original is shared)."""
    out = type(tok).from_str(tok.to_str())
    out.enable_truncation(max_length=max_tokens)
    return out


def length_groups(lengths, compile_rows: int) -> list:
    """Batches of texts of similar length: contiguous groups of the texts sorted
    by length, minimising ``sum(group size * longest) + compile_rows * groups``
    (a new padded shape costs a compile). Returns a list of index arrays."""
    lengths = np.asarray(lengths, np.int64)
    order = np.argsort(lengths, kind="stable")
    s = lengths[order]
    n = len(s)
    best = np.full(n + 1, np.inf)
    best[0], cut = 0.0, np.zeros(n + 1, np.int64)
    for j in range(1, n + 1):
        cost = best[:j] + (j - np.arange(j)) * s[j - 1] + compile_rows
        cut[j] = int(np.argmin(cost))
        best[j] = cost[cut[j]]
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


class Embedder:
    """Embeds a fixed list of texts in fixed batches (``length_groups``) under
    any model, counting the MP cycles of each call."""

    def __init__(self, loaded, texts: Sequence[str], max_tokens: int, compile_rows: int):
        self.model, self.params, tok = loaded
        self.tok = truncating_tokenizer(tok, max_tokens)
        self.texts = list(texts)
        # real (unpadded) token counts: the tokenizer pads a batch to its longest
        lengths = [int(sum(e.attention_mask)) for e in self.tok.encode_batch(self.texts)]
        self.groups = length_groups(lengths, compile_rows)
        self.rows = int(sum(len(g) * max(lengths[i] for i in g) for g in self.groups))

    def run(self, rules=None, plan=None) -> dict:
        """``{"embeddings", "seconds", "cycles_used", "cycles_baseline"}``
        (cycles of MP ops only; 0 without MP)."""
        model = self.model
        if rules is not None:
            model = simulate(model, list(rules), plan=plan)
        out = np.zeros((len(self.texts), model.config.hidden_size), np.float32)
        used = base = 0
        t0 = time.perf_counter()
        for g in self.groups:
            batch = minilm.tokenize(self.tok, [self.texts[i] for i in g])
            fn = jax.jit(lambda p, b: model.apply({"params": p}, **b))   # one trace per shape
            out[g] = np.asarray(fn(self.params, batch))
            budget = model.report.mp_budget() if rules is not None else None
            if budget is not None:
                used, base = used + budget.used, base + budget.baseline
        return {"embeddings": out, "seconds": time.perf_counter() - t0,
                "cycles_used": used, "cycles_baseline": base}


def calib_batch(loaded, paragraphs, tokens):
    b = minilm.tokenize(truncating_tokenizer(loaded[2], tokens), paragraphs)
    return b["input_ids"], b["attention_mask"], b["token_type_ids"]


def select_ridge(loaded, fit_paragraphs, heldout_paragraphs, tokens, *, grid=RIDGE_GRID,
                 implementation=None) -> dict:
    """The QwT ridge with the lowest held-out residual: layer 0 under the
    ``FreeBoundaryMPConfig`` default boundaries on the fit and held-out
    paragraphs (one batch); ``W, b`` fit on the fit paragraphs' rows, the rmse of
    ``Y_fp - Y_sc - (X W + b)`` measured on the held-out rows."""
    model, params, _ = loaded
    args = calib_batch(loaded, list(fit_paragraphs) + list(heldout_paragraphs), tokens)
    cfg = mp.FreeBoundaryMPConfig(LEVELS)
    sim = simulate(model, mp_rules(cfg, implementation), block_path=BLOCK_PATH)
    x0 = model.apply({"params": params}, args[0], args[2],
                     method=lambda m, ids, types: m.embeddings(ids, types))
    prog = mp.BlockProgram(sim, {"params": params}, args, {}, 0, x0, ops=list(OPERATORS),
                           total_blocks=model.config.num_hidden_layers)
    y_sc = np.asarray(prog.run({op: cfg.default_boundaries() for op in OPERATORS})[0],
                      np.float64)
    d = y_sc.shape[-1]
    X = np.asarray(x0, np.float64).reshape(-1, d)
    R = (np.asarray(prog.y_fp, np.float64) - y_sc).reshape(-1, d)
    n_fit = len(fit_paragraphs) * args[0].shape[1]
    rmse = lambda r: float(np.sqrt(np.mean(r * r)))  # noqa: E731
    held = []
    for ridge in grid:
        W, b, _ = ridge_fit(X[:n_fit], R[:n_fit], ridge)
        held.append(rmse(R[n_fit:] - (X[n_fit:] @ W + b)))
    return {"grid": list(grid), "heldout_rmse": held, "uncompensated_rmse": rmse(R[n_fit:]),
            "chosen": float(grid[int(np.argmin(held))]), "rows_fit": int(n_fit),
            "rows_heldout": int(len(R) - n_fit)}


def calibrate_plan(loaded, paragraphs, tokens: int, *, ridge: float, compensate: bool,
                   implementation=None, **search):
    """``mp.calibrate`` of the MiniLM encoder at the L=64 cycle budget on the
    paragraphs truncated to ``tokens``; ``search``: ``n_candidates``,
    ``n_outer_op``, ``n_outer_block``."""
    model, params, _ = loaded
    rules = mp_rules(mp.FreeBoundaryMPConfig(LEVELS), implementation)
    return mp.calibrate(model, {"params": params}, calib_batch(loaded, paragraphs, tokens),
                        rules, block_path=BLOCK_PATH,
                        budget_ratio=CALIBRATE_RATIO, objective="qwt",
                        compensate=compensate, ridge=ridge, **search)
