"""MiniLM under mixed-precision SC, judged on public human-rated data.

``python -m scmp_jax_examples.mp_report --out docs/mp`` calibrates MP on the
``lee_background.cor`` paragraphs only, then embeds the evaluation texts
(``public_data``) under each configuration and writes ``README.md``,
``results.json`` and ``curves.png`` (matplotlib, optional) into ``--out``.

Configurations (SC ``per_row``, bipolar, ``sc_prec=8`` on the 36 encoder
``nn.Dense`` matmuls; full length 256; MP levels ``LEVELS`` = 128 / 64 / 32 / 16):

* ``uniform_L{32,64,128,256}``: one stream length everywhere;
* ``quantile_mp``: ``MPConfig`` over ``LEVELS`` with ``QUANTILE_FRACTIONS``
  (tokens ranked by ``x_row_max``; 64 cycles per product on average);
* ``calibrated_mp`` / ``calibrated_mp_qwt``: ``FreeBoundaryMPConfig`` over
  ``LEVELS``, boundaries per (layer, operator) from ``mp.calibrate`` at the
  cycle budget of uniform L=64 (``budget_ratio = 64 / 128``), without / with
  QwT compensation. q, k and v read the same input and share one operator.

Metrics (``public_eval``): Spearman rho of the cosine of WordSim353 word
embeddings (each word embedded as a sentence) against the human scores; the
accuracy of a cross-validated ridge probe fit on the float32 embeddings of
the polarity sentences; the mean cosine to float32 on the Lee documents.

Texts are truncated to ``max_tokens`` and run in batches of similar length
(``length_groups``); the MP classifiers rank all rows of one call, so an MP
embedding depends on its batch (the batches are the same for every config).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import jax
import numpy as np

from scmp_jax import mp
from scmp_jax_examples import minilm, public_data, public_eval
from scmp_jax_examples.mp_minilm import (BUDGET_LENGTH, CALIBRATE_RATIO, FULL_LENGTH, LEVELS,
                                         OPERATORS,
                                         QUANTILE_FRACTIONS, RIDGE_GRID,
                                         UNIFORM, Embedder, calibrate_plan, mp_rules,
                                         select_ridge, truncate_layers, uniform_rules)
from scmp_jax_examples.mp_report_write import write_report

__all__ = ["CONFIGS", "Settings", "QUICK", "score", "run_report", "main"]

CONFIGS = tuple(f"uniform_L{L}" for L in UNIFORM) + ("quantile_mp", "calibrated_mp",
                                                      "calibrated_mp_qwt")


def _pos_int(v, name, allow_none=False):
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, "
                         f"got {v!r}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a report run uses. ``ridge=None``: chosen from ``RIDGE_GRID`` on
    held-out ``lee_background`` paragraphs (``select_ridge``). ``word_pairs``,
    ``polarity_per_class``, ``lee_docs``: subsets (None: all). ``layers``: run
    only the first MiniLM layers (None: all 6)."""
    max_tokens: int = 12
    calib_paragraphs: int = 4
    calib_tokens: int = 32
    heldout_paragraphs: int = 8
    n_candidates: int = 3
    n_outer_op: int = 1
    n_outer_block: int = 1
    ridge: Optional[float] = None
    probe_folds: int = 10
    probe_ridge: float = 1.0
    word_pairs: Optional[int] = None
    polarity_per_class: Optional[int] = None
    lee_docs: Optional[int] = None
    layers: Optional[int] = None
    compile_rows: int = 800
    implementation: Optional[str] = "xla"
    configs: tuple = CONFIGS

    def __post_init__(self):
        for name in ("max_tokens", "calib_paragraphs", "calib_tokens", "heldout_paragraphs",
                     "n_candidates", "n_outer_op", "n_outer_block", "compile_rows"):
            _pos_int(getattr(self, name), name)
        for name in ("word_pairs", "polarity_per_class", "lee_docs", "layers"):
            _pos_int(getattr(self, name), name, allow_none=True)
        _pos_int(self.probe_folds, "probe_folds")
        if self.probe_folds < 2:
            raise ValueError(f"probe_folds must be >= 2, got {self.probe_folds}")
        for name in ("ridge", "probe_ridge"):
            v = getattr(self, name)
            if v is None and name == "ridge":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        if self.implementation not in (None, "xla", "pallas"):
            raise ValueError(f"implementation must be None, 'xla' or 'pallas', "
                             f"got {self.implementation!r}")
        configs = tuple(self.configs)
        bad = [c for c in configs if c not in CONFIGS]
        if bad:
            raise ValueError(f"configs must be among {CONFIGS}, got {bad}")
        object.__setattr__(self, "configs", configs)


#: a smoke run: a few texts, short tokens, two candidates
QUICK = Settings(max_tokens=8, calib_paragraphs=2, calib_tokens=16, heldout_paragraphs=2,
                 n_candidates=2, word_pairs=30, polarity_per_class=10, lee_docs=6,
                 probe_folds=5)


def score(embeddings: dict, data: dict, settings: Settings) -> dict:
    """Per config: WordSim353 Spearman rho, probe accuracy / agreement, Lee cosine."""
    ref = embeddings["float32"]
    pol = {n: e[data["polarity_idx"]] for n, e in embeddings.items()}
    probe = public_eval.probe_accuracy(pol["float32"], data["labels"], pol,
                                       k=settings.probe_folds, ridge=settings.probe_ridge)
    out = {}
    for name, e in embeddings.items():
        cos_w = public_eval.pair_cosines(e[data["word_a"]], e[data["word_b"]])
        cos_lee = public_eval.pair_cosines(e[data["lee_idx"]], ref[data["lee_idx"]])
        out[name] = {"wordsim_spearman": public_eval.spearman(cos_w, data["human"]),
                     "polarity_accuracy": probe[name]["accuracy"],
                     "polarity_agreement": probe[name]["agreement"],
                     "lee_cosine_mean": float(np.mean(cos_lee)),
                     "lee_cosine_min": float(np.min(cos_lee))}
    return out


def _data(s: Settings) -> dict:
    pairs, human = public_data.wordsim353()
    if s.word_pairs is not None:
        pairs, human = pairs[:s.word_pairs], human[:s.word_pairs]
    sents, labels = public_data.polarity()
    if s.polarity_per_class is not None:
        keep = np.concatenate([np.flatnonzero(labels == c)[:s.polarity_per_class]
                               for c in (0, 1)])
        sents, labels = [sents[i] for i in keep], labels[keep]
    docs = public_data.lee_documents(s.lee_docs)
    texts = list(dict.fromkeys([w for p in pairs for w in p] + sents + docs))
    at = {t: i for i, t in enumerate(texts)}
    return {"texts": texts, "word_a": [at[a] for a, _ in pairs],
            "word_b": [at[b] for _, b in pairs], "human": human,
            "polarity_idx": [at[t] for t in sents], "labels": labels,
            "lee_idx": [at[t] for t in docs],
            "counts": {"word_pairs": len(pairs), "words": len({w for p in pairs for w in p}),
                       "polarity_sentences": len(sents), "lee_documents": len(docs)}}


def run_report(settings: Settings = Settings(), loaded=None, log=print) -> dict:
    """Calibrate, embed and score every configuration; the JSON-ready results."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    s = settings
    loaded = truncate_layers(minilm.load() if loaded is None else loaded, s.layers)
    data = _data(s)
    emb = Embedder(loaded, data["texts"], s.max_tokens, s.compile_rows)
    log(f"{len(data['texts'])} texts in {len(emb.groups)} batches, {emb.rows} token rows")
    n_cal, n_held = s.calib_paragraphs, s.heldout_paragraphs
    background = public_data.lee_background(n_cal + n_held)
    if len(background) < n_cal + n_held:
        raise ValueError(f"calib_paragraphs + heldout_paragraphs must be <= 300, got "
                         f"{n_cal + n_held}")
    calib, heldout = background[:n_cal], background[n_cal:]
    results = {"ridge_selection": None, "calibration": {}}
    rows, embs, plans = [], {}, {}
    ridge = s.ridge
    wanted = [c for c in s.configs if c.startswith("calibrated")]
    if wanted and ridge is None:
        t0 = time.perf_counter()
        sel = select_ridge(loaded, calib, heldout, s.calib_tokens,
                           implementation=s.implementation)
        sel["seconds"] = time.perf_counter() - t0
        results["ridge_selection"] = sel
        ridge = sel["chosen"]
        log(f"ridge {ridge:g} (held-out rmse {dict(zip(sel['grid'], sel['heldout_rmse']))})")
    for name in wanted:
        t0 = time.perf_counter()
        plans[name] = calibrate_plan(
            loaded, calib, s.calib_tokens, ridge=ridge, compensate=name.endswith("qwt"),
            implementation=s.implementation, n_candidates=s.n_candidates,
            n_outer_op=s.n_outer_op, n_outer_block=s.n_outer_block)
        dt = time.perf_counter() - t0
        results["calibration"][name] = {
            "seconds": dt, "ridge": ridge,
            "blocks": [{k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in dataclasses.asdict(r).items() if k != "boundaries"}
                       | {"boundaries": {op: list(b) for op, b in r.boundaries.items()}}
                       for r in plans[name].report]}
        log(f"{name}: calibrated in {dt:.0f} s\n{plans[name].table()}")
    specs = [("float32", "float32 reference (no simulation)", None, None)]
    for L in UNIFORM:
        specs.append((f"uniform_L{L}", f"SC, every Dense at stoc_len={L}",
                      uniform_rules(L, s.implementation), None))
    specs.append(("quantile_mp", f"MPConfig levels {LEVELS}, fractions "
                  f"{tuple(round(f, 4) for f in QUANTILE_FRACTIONS)}",
                  mp_rules(mp.MPConfig(LEVELS, QUANTILE_FRACTIONS), s.implementation), None))
    free = mp_rules(mp.FreeBoundaryMPConfig(LEVELS), s.implementation)
    specs.append(("calibrated_mp", "FreeBoundaryMPConfig + mp.calibrate, compensate=False",
                  free, plans.get("calibrated_mp")))
    specs.append(("calibrated_mp_qwt", "FreeBoundaryMPConfig + mp.calibrate + QwT",
                  free, plans.get("calibrated_mp_qwt")))
    for name, desc, rules, plan in specs:
        if name != "float32" and name not in s.configs:
            continue
        out = emb.run(rules, plan)
        embs[name] = out["embeddings"]
        if name.startswith("uniform_L"):
            avg = float(name[len("uniform_L"):])
        elif rules is None:
            avg = None
        else:
            avg = LEVELS[0] * out["cycles_used"] / out["cycles_baseline"]
        calib_ratio = None
        if plan is not None:
            calib_ratio = (LEVELS[0] / FULL_LENGTH * sum(r.budget_actual for r in plan.report)
                           / sum(r.budget_baseline for r in plan.report))
        rows.append({"name": name, "description": desc, "avg_stream_length": avg,
                     "cycle_ratio": None if avg is None else avg / FULL_LENGTH,
                     "calib_cycle_ratio": calib_ratio, "seconds": out["seconds"]})
        log(f"{name}: embedded in {out['seconds']:.0f} s, average length {avg}")
    metrics = score(embs, data, s)
    for r in rows:
        r.update(metrics[r["name"]])
    results["configs"] = rows
    results["meta"] = {
        "settings": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in dataclasses.asdict(s).items()},
        "ridge": ridge, "levels": list(LEVELS), "full_length": FULL_LENGTH,
        "budget_ratio": BUDGET_LENGTH / FULL_LENGTH, "calibrate_budget_ratio": CALIBRATE_RATIO,
        "operators": OPERATORS,
        "counts": data["counts"], "batches": len(emb.groups), "token_rows": emb.rows,
        "layers": loaded[0].config.num_hidden_layers, "jax": jax.__version__,
        "backend": jax.default_backend(), "date": time.strftime("%Y-%m-%d"),
        "seconds_total": time.perf_counter() - t_start,
        "cpu_seconds": time.process_time() - cpu_start, "cpu_count": os.cpu_count(),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scmp_jax_examples.mp_report",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/mp", help="output directory (default docs/mp)")
    p.add_argument("--quick", action="store_true", help="a smoke run (a few texts)")
    opts = {"--max-tokens": "max_tokens", "--calib-paragraphs": "calib_paragraphs",
            "--calib-tokens": "calib_tokens", "--heldout-paragraphs": "heldout_paragraphs",
            "--candidates": "n_candidates", "--outer-op": "n_outer_op",
            "--outer-block": "n_outer_block", "--layers": "layers"}
    for flag, field in opts.items():
        p.add_argument(flag, dest=field, type=int, default=None)
    p.add_argument("--ridge", type=float, default=None,
                   help=f"QwT ridge (default: chosen from {RIDGE_GRID} on held-out paragraphs)")
    p.add_argument("--implementation", choices=("xla", "pallas", "auto"), default=None,
                   help="sc_matmul implementation (default xla; auto: Pallas on GPU)")
    p.add_argument("--configs", nargs="*", default=None, help=f"subset of {' '.join(CONFIGS)}")
    p.add_argument("--rewrite", action="store_true",
                   help="only rewrite README.md and the plot from --out's results.json")
    args = p.parse_args(argv)
    if args.rewrite:
        results = json.loads((Path(args.out) / "results.json").read_text())
        print("wrote " + ", ".join(str(w) for w in write_report(results, args.out)))
        return 0
    base = QUICK if args.quick else Settings()
    over = {f: getattr(args, f) for f in list(opts.values()) + ["ridge"]
            if getattr(args, f) is not None}
    if args.implementation is not None:
        over["implementation"] = None if args.implementation == "auto" else args.implementation
    if args.configs is not None:
        over["configs"] = tuple(args.configs)
    results = run_report(dataclasses.replace(base, **over))
    argv = sys.argv[1:] if argv is None else list(argv)
    results["meta"]["command"] = " ".join(["python -m scmp_jax_examples.mp_report"]
                                          + [shlex.quote(a) for a in argv])
    written = write_report(results, args.out)
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
