"""MiniLM sentence embeddings under simulated SC / fp4 arithmetic: a config grid.

``python -m scmp_jax_examples.minilm_report --out docs/minilm`` runs every
configuration of :func:`config_grid` on the built-in sentence set
(``scmp_jax_examples.sentences``) through ``scmp_jax.flax.simulate`` and
writes ``results.json`` and ``README.md`` (a table, plus the hand-written
``summary.md`` of that directory when present) into ``--out``.

Per configuration: mean / min cosine of each sentence embedding to its
float32 embedding, top-1 retrieval agreement with float32, paraphrase
accuracy (``minilm_eval``), the number of matmuls that ran in the simulated
arithmetic, and wall time: ``first_s`` (trace + compile + run of one
jitted batch) and ``steady_s`` (a second call of the compiled program).

The grid (all SC configs: per_row, bipolar, ``sc_prec=8``, on the 36 encoder
``nn.Dense`` matmuls, weights x activations):

* ``stoc_len`` in {32, 64, 128, 256} (Owen scramble ``bitrev``, the default);
* ``scramble="off"`` at ``stoc_len=64``;
* ``halve_bipolar_stoc_len=True`` at 256 (with an explicit ``stoc_len`` this
  only halves the RNG grid to 128 levels);
* at 256, SC also on the 12 attention act x act einsums (scores ``q k^T``
  and context ``p v``; ``act_act=True``), ``per_head`` or ``per_row``;
* MXFP4 and NVFP4 (``fp4.quantize`` both operands along the contraction) on
  all Dense matmuls.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["DENSE", "ATTENTION", "sc_rule", "config_grid", "run_config", "run_grid",
           "markdown_table", "write_report", "main"]

#: module paths of the encoder's nn.Dense matmuls (q, k, v, attention out, FFN up/down)
DENSE = r"encoder/layer_\d+/(attention/(query|key|value|output)|intermediate|output)"
#: module paths of the attention act x act einsums (q k^T and softmax(.) v)
ATTENTION = r"encoder/layer_\d+/attention/(scores|context)"

#: the SC settings shared by every SC configuration of the grid
SC_BASE = dict(mode="bipolar", sc_prec=8)


def sc_rule(module_path: str = DENSE, granularity: str = "per_row", act_act: bool = False,
            **kw):
    """A ``Rule`` running ``sc_matmul(granularity, mode="bipolar", sc_prec=8, **kw)``."""
    from scmp_jax.flax import SC, Rule

    return Rule(module_path, SC(granularity, **{**SC_BASE, **kw}), act_act=act_act)


def config_grid() -> dict[str, tuple[str, list]]:
    """``{name: (description, rules)}`` of the report, in table order."""
    from scmp_jax.flax import FP4, Rule

    g: dict[str, tuple[str, list]] = {}
    for L in (32, 64, 128, 256):
        g[f"sc_L{L}"] = (f"SC per_row, Dense, stoc_len={L}", [sc_rule(stoc_len=L)])
    g["sc_L64_scramble_off"] = ("SC per_row, Dense, stoc_len=64, scramble=off",
                                [sc_rule(stoc_len=64, scramble="off")])
    g["sc_L256_halve"] = ("SC per_row, Dense, stoc_len=256, halve_bipolar_stoc_len",
                          [sc_rule(stoc_len=256, halve_bipolar_stoc_len=True)])
    for gran in ("per_head", "per_row"):
        g[f"sc_L256_attn_{gran}"] = (
            f"SC per_row Dense + SC {gran} attention act x act, stoc_len=256",
            [sc_rule(stoc_len=256), sc_rule(ATTENTION, gran, act_act=True, stoc_len=256)])
    for fmt in ("mxfp4", "nvfp4"):
        g[fmt] = (f"{fmt.upper()} (activations and weights), Dense", [Rule(DENSE, FP4(fmt))])
    return g


def run_config(rules, sentences: Sequence[str], loaded) -> dict:
    """Embed ``sentences`` under ``rules`` (None: float32) twice with one compiled
    program: ``{"embeddings", "first_s", "steady_s", "simulated_ops", "total_ops"}``."""
    from scmp_jax_examples import minilm

    model, params, tok = loaded
    if rules is not None:
        from scmp_jax.flax import simulate

        model = simulate(model, list(rules))
    times, emb = [], None
    for _ in range(2):
        t0 = time.perf_counter()
        emb = minilm.embed(list(sentences), params, model, tokenizer=tok)
        times.append(time.perf_counter() - t0)
    report = getattr(model, "report", None) if rules is not None else None
    records = report.records if report is not None else []
    return {"embeddings": emb, "first_s": times[0], "steady_s": times[1],
            "simulated_ops": sum(r.arithmetic not in ("exact", "exact (non-float)")
                                 for r in records),
            "total_ops": len(records)}


def run_grid(names: Sequence[str] | None = None, sentences=None, pairs=None, loaded=None,
             log=print) -> dict:
    """Run the float32 reference and the chosen configs (default: all).

    Returns the JSON-ready results: ``{"meta": ..., "configs": [row, ...]}``
    with one row per config (float32 first)."""
    import jax

    from scmp_jax_examples import minilm, minilm_eval
    from scmp_jax_examples.sentences import PARAPHRASE_PAIRS, SENTENCES

    if sentences is None:
        sentences, pairs = SENTENCES, PARAPHRASE_PAIRS if pairs is None else pairs
    loaded = minilm.load() if loaded is None else loaded
    grid = config_grid()
    names = list(grid) if names is None else list(names)
    unknown = [n for n in names if n not in grid]
    if unknown:
        raise ValueError(f"unknown configs {unknown}; known: {list(grid)}")

    base = run_config(None, sentences, loaded)
    ref = base["embeddings"]
    rows = [{"name": "float32", "description": "float32 reference (no simulation)",
             **_metrics(ref, ref, pairs, minilm_eval), **_timing(base)}]
    log(_fmt(rows[-1]))
    for name in names:
        desc, rules = grid[name]
        out = run_config(rules, sentences, loaded)
        rows.append({"name": name, "description": desc,
                     **_metrics(out["embeddings"], ref, pairs, minilm_eval), **_timing(out)})
        log(_fmt(rows[-1]))
    tokens = minilm.tokenize(loaded[2], list(sentences))["input_ids"].shape
    meta = {"sentences": len(sentences), "padded_batch": list(tokens),
            "paraphrase_pairs": len(pairs or ()), "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": len(jax.devices()),
            "machine": platform.machine(), "python": platform.python_version(),
            "sc_base": {"granularity": "per_row", **SC_BASE},
            "date": time.strftime("%Y-%m-%d")}
    return {"meta": meta, "configs": rows}


def _metrics(emb, ref, pairs, ev) -> dict:
    cos = ev.cosine_to_reference(emb, ref)
    row = {"cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos)),
           "retrieval_agreement": ev.retrieval_agreement(emb, ref)}
    row["paraphrase_accuracy"] = ev.paraphrase_accuracy(emb, pairs) if pairs else None
    row["finite"] = bool(np.isfinite(emb).all())
    return row


def _timing(out) -> dict:
    return {"first_s": round(out["first_s"], 3), "steady_s": round(out["steady_s"], 3),
            "simulated_ops": out["simulated_ops"], "total_ops": out["total_ops"]}


def _fmt(row) -> str:
    return (f"{row['name']:<22} cos mean {row['cosine_mean']:.4f} min {row['cosine_min']:.4f} "
            f"retr {row['retrieval_agreement']:.3f} para {row['paraphrase_accuracy']} "
            f"ops {row['simulated_ops']}/{row['total_ops']} "
            f"{row['first_s']:.1f}s / {row['steady_s']:.1f}s")


def markdown_table(results: dict) -> str:
    """The results as a GitHub markdown table."""
    head = ("| config | simulated matmuls | cosine mean | cosine min | retrieval agreement "
            "| paraphrase acc. | first call (s) | steady call (s) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in results["configs"]:
        para = "-" if r["paraphrase_accuracy"] is None else f"{r['paraphrase_accuracy']:.3f}"
        ops = "-" if r["name"] == "float32" else f"{r['simulated_ops']}/{r['total_ops']}"
        lines.append(f"| `{r['name']}` | {ops} | {r['cosine_mean']:.4f} | {r['cosine_min']:.4f} "
                     f"| {r['retrieval_agreement']:.3f} | {para} | {r['first_s']:.1f} "
                     f"| {r['steady_s']:.2f} |")
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | Path) -> None:
    """Write ``results.json`` and ``README.md`` (table, config legend and, if the
    directory holds a hand-written ``summary.md``, that summary)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = ""
    if (out / "summary.md").exists():
        summary = "\n## Summary\n\n" + (out / "summary.md").read_text().strip() + "\n"
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["meta"]
    legend = "\n".join(f"- `{r['name']}`: {r['description']}" for r in results["configs"])
    text = f"""# MiniLM under simulated SC / fp4 arithmetic

Made by `python -m scmp_jax_examples.minilm_report --out docs/minilm`
({m['date']}, jax {m['jax']}, {m['backend']}, {m['devices']} device(s)); numbers in
`results.json`. all-MiniLM-L6-v2 (`scmp_jax_examples.minilm`) embeds the
{m['sentences']} built-in sentences ({m['paraphrase_pairs']} paraphrase pairs + distractors,
one padded batch of shape {tuple(m['padded_batch'])}) with
`scmp_jax.flax.simulate(model, rules)`; every metric compares to the float32 run.
SC configs are `sc_matmul(..., "per_row", mode="bipolar", sc_prec=8)` unless named
otherwise. Retrieval agreement: fraction of sentences whose nearest other sentence
is the same as under float32. Paraphrase accuracy: fraction of paraphrase-pair
members whose nearest neighbour is their partner. Times are wall clock for one
batch: the first call traces, compiles and runs; the steady call reruns the
compiled program.

{markdown_table(results)}

{legend}
{summary}
"""
    (out / "README.md").write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/minilm", help="output directory")
    p.add_argument("--configs", nargs="*", default=None,
                   help=f"subset of configs (default all): {' '.join(config_grid())}")
    args = p.parse_args(argv)
    results = run_grid(args.configs)
    write_report(results, args.out)
    print(f"wrote {args.out}/README.md and results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
