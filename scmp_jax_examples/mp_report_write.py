"""The files of ``mp_report``: ``README.md`` (tables, and a summary whose every
statement is computed from the numbers), ``results.json`` and ``curves.png``
(each metric against the average stream length; needs matplotlib)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

__all__ = ["METRICS", "HEADLINE", "headline", "uniform_curve", "configs_table", "calibration_table",
           "ridge_table", "summary", "plot", "write_report"]

#: result key -> (column title, plot title); higher is better for all three
METRICS = {"wordsim_spearman": ("WordSim353 rho", "WordSim353: Spearman rho vs human"),
           "polarity_accuracy": ("polarity acc.", "Polarity: probe accuracy"),
           "lee_cosine_mean": ("Lee cos mean", "Lee docs: mean cosine to float32")}
#: the comparison the report answers: (MP config, uniform config)
HEADLINE = ("calibrated_mp_qwt", "uniform_L128")


def _rows(results) -> dict:
    return {r["name"]: r for r in results["configs"]}


def _f(v, digits=4):
    return "-" if v is None else f"{v:.{digits}f}"


def headline(results, pair=HEADLINE):
    """Per metric ``{"mp", "uniform", "diff", "ok"}`` (``ok``: mp >= uniform)
    and ``"all"``; None when either config was not run."""
    rows = _rows(results)
    if pair[0] not in rows or pair[1] not in rows:
        return None
    a, b = rows[pair[0]], rows[pair[1]]
    out = {k: {"mp": a[k], "uniform": b[k], "diff": a[k] - b[k], "ok": a[k] >= b[k]}
           for k in METRICS}
    out["all"] = all(v["ok"] for v in out.values())
    return out


def configs_table(results) -> str:
    head = ("| config | avg stream length | cycles / full | cycles / full (calib.) | "
            + " | ".join(t for t, _ in METRICS.values())
            + " | probe agreement | Lee cos min | embed s |")
    lines = [head, "|---" + "|---:" * (head.count("|") - 2) + "|"]
    for r in results["configs"]:
        avg = "-" if r["avg_stream_length"] is None else f"{r['avg_stream_length']:.1f}"
        lines.append(f"| `{r['name']}` | {avg} | {_f(r['cycle_ratio'], 3)} | "
                     f"{_f(r['calib_cycle_ratio'], 3)} | "
                     + " | ".join(_f(r[k]) for k in METRICS)
                     + f" | {_f(r['polarity_agreement'], 3)} | {_f(r['lee_cosine_min'])} "
                       f"| {r['seconds']:.0f} |")
    return "\n".join(lines)


def calibration_table(blocks) -> str:
    lines = ["| layer | rmse before | after search | after QwT | r2 | QwT applied | "
             "cycles / at longest level (target) | boundaries qkv / attn_out / ffn_up / "
             "ffn_down | s |",
             "|---:|---:|---:|---:|---:|---|---:|---|---:|"]
    for b in blocks:
        tgt = "" if b["budget_target"] is None else \
            f" ({b['budget_target'] / b['budget_baseline']:.3f})"
        bounds = " / ".join("(" + ", ".join(f"{v:.3f}" for v in bs) + ")"
                            for bs in b["boundaries"].values())
        lines.append(f"| {b['block']} | {b['rmse_before']:.4f} | {b['rmse_search']:.4f} | "
                     f"{b['rmse_after']:.4f} | {b['r2']:+.3f} | "
                     f"{'yes' if b['compensated'] else 'no'} | "
                     f"{b['budget_actual'] / b['budget_baseline']:.3f}{tgt} | {bounds} | "
                     f"{b['seconds']:.0f} |")
    return "\n".join(lines)


def ridge_table(sel) -> str:
    lines = ["| ridge | held-out rmse |", "|---:|---:|",
             f"| (no compensation) | {sel['uncompensated_rmse']:.4f} |"]
    lines += [f"| {g:g}{' (chosen)' if g == sel['chosen'] else ''} | {v:.4f} |"
              for g, v in zip(sel["grid"], sel["heldout_rmse"])]
    return "\n".join(lines)


def _cmp(a, b, key):
    d = a[key] - b[key]
    word = "above" if d > 0 else ("below" if d < 0 else "equal to")
    return f"{METRICS[key][0]} {a[key]:.4f} ({d:+.4f}, {word} `{b['name']}`)"


def uniform_curve(rows, key, length):
    """The uniform configs' ``key`` at ``length``, linear in log2(L) between the two
    nearest measured lengths (None outside the measured range)."""
    pts = sorted((r["avg_stream_length"], r[key]) for n, r in rows.items()
                 if n.startswith("uniform_L"))
    for (l0, v0), (l1, v1) in zip(pts, pts[1:]):
        if l0 <= length <= l1:
            t = (math.log2(length) - math.log2(l0)) / (math.log2(l1) - math.log2(l0))
            return v0 + t * (v1 - v0)
    return None


def _against_curve(rows, name):
    r = rows.get(name)
    if r is None or r["avg_stream_length"] is None:
        return None
    parts = []
    for k in METRICS:
        u = uniform_curve(rows, k, r["avg_stream_length"])
        if u is None:
            return None
        parts.append(f"{METRICS[k][0]} {r[k]:.4f} vs {u:.4f} "
                     f"({'above' if r[k] > u else 'not above'})")
    return (f"`{name}` against the uniform curve at its own measured length "
            f"{r['avg_stream_length']:.1f} (interpolated linearly in log2 L between the "
            "neighbouring uniform points, an assumption): " + "; ".join(parts) + ".")


def summary(results) -> list:
    """Bullet points, each computed from the results."""
    rows, out = _rows(results), []
    full = results["meta"]["full_length"]
    budget = results["meta"]["budget_ratio"] * full
    h = headline(results)
    if h is not None:
        a, b = rows[HEADLINE[0]], rows[HEADLINE[1]]
        verdict = "matches or beats" if h["all"] else "does **not** match"
        lost = [METRICS[k][0] for k in METRICS if not h[k]["ok"]]
        out.append(f"At the cycle budget of uniform L=64, `{HEADLINE[0]}` {verdict} "
                   f"`{HEADLINE[1]}` on every metric"
                   + ("" if h["all"] else f" (behind on: {', '.join(lost)})") + ": "
                   + "; ".join(_cmp(a, b, k) for k in METRICS) + ".")
    for name in ("quantile_mp", "calibrated_mp", "calibrated_mp_qwt"):
        r = rows.get(name)
        if r is not None and r["avg_stream_length"] is not None:
            cal = ("" if r["calib_cycle_ratio"] is None else
                   f" ({full * r['calib_cycle_ratio']:.1f} on the calibration paragraphs)")
            within = "within" if r["avg_stream_length"] <= budget + 1e-9 else "**above**"
            share = r["avg_stream_length"] / budget
            out.append(f"`{name}` used {r['avg_stream_length']:.1f} cycles per product on "
                       f"the evaluation batches{cal}: {within} the budget of "
                       f"{budget:g} there ({100 * share:.0f} % of it).")
    if "uniform_L64" in rows:
        base = rows["uniform_L64"]
        for name in ("quantile_mp", "calibrated_mp", "calibrated_mp_qwt"):
            if name in rows:
                r = rows[name]
                out.append(f"`{name}` (average length {r['avg_stream_length']:.1f}) against "
                           f"`uniform_L64` at the same nominal budget: "
                           + "; ".join(_cmp(r, base, k) for k in METRICS) + ".")
    for name in ("quantile_mp", "calibrated_mp", "calibrated_mp_qwt"):
        line = _against_curve(rows, name)
        if line:
            out.append(line)
    if "calibrated_mp" in rows and "calibrated_mp_qwt" in rows:
        out.append("QwT compensation (`calibrated_mp_qwt` against `calibrated_mp`): "
                   + "; ".join(_cmp(rows["calibrated_mp_qwt"], rows["calibrated_mp"], k)
                               for k in METRICS) + ".")
    if "float32" in rows and results["meta"]["counts"].get("polarity_sentences"):
        p, n = rows["float32"]["polarity_accuracy"], results["meta"]["counts"]["polarity_sentences"]
        se = (p * (1 - p) / n) ** 0.5
        out.append(f"Sampling noise: with {n} polarity sentences an accuracy near {p:.2f} has "
                   f"a binomial standard error of {se:.3f}, so polarity differences below "
                   f"about {2 * se:.3f} do not separate two configurations.")
    uni = [rows[n] for n in ("uniform_L32", "uniform_L64", "uniform_L128", "uniform_L256")
           if n in rows]
    if len(uni) > 1:
        mono = {k: all(uni[i + 1][k] >= uni[i][k] for i in range(len(uni) - 1)) for k in METRICS}
        out.append("Uniform lengths: " + "; ".join(
            f"{METRICS[k][0]} " + " / ".join(f"{r[k]:.4f}" for r in uni)
            + ("" if mono[k] else " (not monotone in L)") for k in METRICS)
            + " for L = " + " / ".join(r["name"][len("uniform_L"):] for r in uni) + ".")
    return out


def plot(results, path) -> bool:
    """Each metric against the average stream length (log2 axis); False when
    matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(results)
    uni = [r for n, r in rows.items() if n.startswith("uniform_L")]
    others = [r for n, r in rows.items() if n != "float32" and not n.startswith("uniform_L")]
    marks = {"quantile_mp": "s", "calibrated_mp": "^", "calibrated_mp_qwt": "*"}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4))
    for ax, (key, (_, title)) in zip(axes, METRICS.items()):
        if uni:
            ax.plot([r["avg_stream_length"] for r in uni], [r[key] for r in uni], "o-",
                    color="tab:blue", label="uniform L")
        for r in others:
            ax.plot([r["avg_stream_length"]], [r[key]], marks.get(r["name"], "D"),
                    markersize=10, label=r["name"])
        if "float32" in rows:
            ax.axhline(rows["float32"][key], color="gray", ls="--", label="float32")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("average stream length (cycles per product; full = 256)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _settings_lines(m) -> list:
    s = m["settings"]
    c = m["counts"]
    return [
        f"- model: all-MiniLM-L6-v2, {m['layers']} layer(s); SC `per_row`, bipolar, "
        f"`sc_prec=8`, implementation `{s['implementation']}` on the "
        f"{6 * m['layers']} encoder Dense matmuls (attention act x act products exact)",
        f"- evaluation texts: {c['word_pairs']} WordSim353 pairs ({c['words']} words), "
        f"{c['polarity_sentences']} polarity sentences, {c['lee_documents']} Lee documents; "
        f"every text truncated to `max_tokens={s['max_tokens']}` tokens ([CLS] and [SEP] "
        f"included); {m['batches']} batches, {m['token_rows']} token rows per configuration",
        f"- MP levels {tuple(m['levels'])} (no 256: at `sc_prec=8` the full-length stream "
        f"takes no Owen scramble and embeds worse than 128, see `docs/minilm`), operators "
        f"{', '.join(m['operators'])}; budget {m['budget_ratio']:.3f} of full length "
        f"{m['full_length']} (`mp.calibrate(budget_ratio={m['calibrate_budget_ratio']:g})`, "
        f"against every row at {m['levels'][0]})",
        f"- calibration: the first {s['calib_paragraphs']} `lee_background.cor` paragraphs, "
        f"truncated to {s['calib_tokens']} tokens; `n_candidates={s['n_candidates']}`, "
        f"`n_outer_op={s['n_outer_op']}`, `n_outer_block={s['n_outer_block']}`, "
        f"objective `qwt`, ridge {m['ridge']:g}" if m.get("ridge") is not None else
        "- calibration: not run",
        f"- polarity probe: ridge classifier (ridge {s['probe_ridge']:g}) on the float32 "
        f"embeddings, {s['probe_folds']} fixed stratified folds",
    ]


def _readme(results, has_plot, notes="") -> str:
    m = results["meta"]
    load = ("" if m.get("load_1min") is None else
            f" with a 1-minute load of {m['load_1min']:.1f} at the end: other work shared "
            "the machine when the load exceeds the CPU count")
    lines = ["# MiniLM under mixed-precision SC, on public human-rated data", "",
             f"Made by `{m.get('command', 'python -m scmp_jax_examples.mp_report')}` "
             f"({m['date']}, jax {m['jax']}, {m['backend']}; the whole run took "
             f"{m['seconds_total'] / 60:.1f} min wall, {m['cpu_seconds'] / 60:.1f} min CPU, "
             f"on {m['cpu_count']} CPUs{load}); raw numbers in `results.json`.", "",
             "Data: the WordSim353, Pang & Lee polarity and Lee corpora shipped in the "
             "`gensim` wheel (`scmp_jax_examples.public_data`). Calibration reads "
             "`lee_background.cor` only; the evaluation texts never enter calibration.", "",
             "## Settings", ""] + _settings_lines(m)
    lines += ["", "## Results", "", configs_table(results), "",
              "Average stream length: MP cycles used over every row at length 1 (the "
              "encoder Dense matmuls, padded token rows included), measured on the evaluation "
              "batches; `cycles / full (calib.)`: the same on the calibration paragraphs. "
              "Metrics: WordSim353 Spearman rho of cosine similarity against the human "
              "mean; polarity accuracy of the probe fit on float32 embeddings (and the "
              "share of its predictions equal to those on float32); cosine of each Lee "
              "document's embedding to its float32 embedding. Higher is better for all."]
    if has_plot:
        lines += ["", "![metrics against average stream length](curves.png)"]
    lines += ["", "## Summary", ""] + [f"- {s}" for s in summary(results)]
    if notes:
        lines += ["", notes.strip()]
    sel = results.get("ridge_selection")
    if sel:
        lines += ["", "## QwT ridge", "",
                  f"Chosen on `lee_background.cor` only: layer 0 under the "
                  f"`FreeBoundaryMPConfig` default boundaries, `W, b` fit on the "
                  f"{sel['rows_fit']} calibration rows, rmse of the residual on "
                  f"{sel['rows_heldout']} rows of the next paragraphs. The same ridge is the "
                  "search objective's.", "", ridge_table(sel)]
    for name, cal in results.get("calibration", {}).items():
        lines += ["", f"## Calibration `{name}` ({cal['seconds']:.0f} s)", "",
                  calibration_table(cal["blocks"])]
    lines += ["", "## Not measured", "",
              "- No GPU run: every number here is from the CPU at the settings above "
              "(smaller calibration, search and texts than the reference's defaults of "
              "10 candidates and 2 + 2 rounds).",
              "- Separate boundaries for q, k and v; the attention act x act products "
              "under SC; full-length texts.",
              "- Repeats: each configuration ran once (SC here is deterministic; the "
              "spread over other data or calibration sets is unknown)."]
    return "\n".join(lines) + "\n"


def write_report(results, out_dir) -> list:
    """Write ``results.json``, ``curves.png`` (when matplotlib is installed) and
    ``README.md`` into ``out_dir`` (with the hand-written ``notes.md`` of that
    directory, when present, after the summary); the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json"]
    written[0].write_text(json.dumps(results, indent=1) + "\n")
    has_plot = plot(results, out / "curves.png")
    if has_plot:
        written.append(out / "curves.png")
    notes = (out / "notes.md").read_text() if (out / "notes.md").exists() else ""
    (out / "README.md").write_text(_readme(results, has_plot, notes))
    return written + [out / "README.md"]
