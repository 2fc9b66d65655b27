"""``python -m bench.report [--results DIR] [--out FILE]``: BENCHMARKS.md from the result files.

Reads every ``*.json`` in ``--results`` (default ``bench/results``) written by the
bench modules (``bench.common``'s envelope: family, command, device, platform,
jax, date, rows) and writes one Markdown report (default ``BENCHMARKS.md``):
SC matmul, the SC side benches (mixed lengths, memory beyond the table cap,
multi-GPU scaling), fp4, MP calibration, a whole model under ``simulate``, and the
CPU path (cell formatters: ``bench.report_format``).
Every table names the device, jax version, date, commit and the exact command
of the run it shows; a family with no result file is listed as not measured.
Numbers are copied from the JSON (ratios as the bench computed them), never
derived from anything else.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re

from bench.report_format import (columns, f_any, f_bool, f_bytes, f_ms, f_pct, f_ratio, f_s,
                                 f_shape, f_x, is_number)

__all__ = ["load", "render", "main", "FAMILIES", "MAX_BYTES"]

MAX_BYTES = 25_000          # the report stays readable: warn above this

# family -> (title, what it measures); the order of the report's GPU sections
FAMILIES = {
    "sc": ("SC matmul", "`python -m bench`: `scmp_jax.sc_matmul` per granularity and "
           "shape against the XLA SC path, the gather (table-lookup) counts, dense "
           "fp32 / bf16 einsums and, with `--reference`, the reference PyTorch package"),
    "mixed": ("SC mixed stream lengths", "`python -m bench.mixed`: one call with "
              "per-row stream lengths against the same rows split into per-length calls"),
    "memory": ("SC tables beyond the cap", "`python -m bench.memory`: sc_prec=10, "
               "stoc_len=512 (a whole table far above the cap), chunked in bounded memory"),
    "scaling": ("SC on several GPUs", "`python -m bench.scaling`: per_row rows sharded "
                "over every GPU of the host against one GPU"),
    "fp4": ("fp4 (MXFP4 / NVFP4)", "`python -m bench.fp4`: quantize+pack against a "
            "device copy, `QuantLinear` prefill and decode against a bf16 matmul"),
    "mp_calibrate": ("MP calibration: candidates in one program vs a loop",
                     "`python -m bench.mp_calibrate`: `mp.calibrate` of MiniLM with every "
                     "candidate of a boundary in one compiled program against a Python loop "
                     "over candidates (one call of the one-state program each), same plan "
                     "from both; whole calibrations, compiles included"),
    "model": ("A whole model under `simulate`", "A model run through "
              "`scmp_jax.flax.simulate(model, rules)` (family `model`; MiniLM's accuracy "
              "under SC / fp4 rules is in `docs/minilm`, made by "
              "`python -m scmp_jax_examples.minilm_report`, not a bench result file)"),
}
GPU_ONLY = ("scaling",)                     # not expected on the CPU


# ---------------------------------------------------------------- loading

def load(results_dir):
    """Every envelope in ``results_dir`` (sorted by file name), each with
    ``_file`` set; files that are not envelopes are returned under ``_skipped``."""
    runs, skipped = [], []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            skipped.append(f"{os.path.basename(path)} ({type(e).__name__})")
            continue
        if not isinstance(d, dict) or "family" not in d or "rows" not in d:
            skipped.append(f"{os.path.basename(path)} (no family / rows: not a bench envelope)")
            continue
        d["_file"] = os.path.basename(path)
        runs.append(d)
    return runs, skipped


def source(run):
    """The line under each table's heading: where and how it was measured."""
    dev = run.get("device", "?")
    plat = run.get("platform", "?")
    n = run.get("devices") or 1
    inner = ([] if dev == plat else [plat]) + ([f"{n} devices"] if n > 1 else [])
    parts = [dev + (f" ({', '.join(inner)})" if inner else ""),
             f"jax {run.get('jax', '?')}", str(run.get("date", "date unknown"))]
    if run.get("commit"):
        parts.append(f"commit {run['commit']}")
    load, cpus = run.get("load_1min"), run.get("cpu_count")
    if plat == "cpu" and cpus:
        parts.append(f"{cpus} CPUs" + (f", load {load:g} at the end of the run"
                                       if is_number(load) else ""))
    text = (f"Measured on {', '.join(parts)}. Command: `{run.get('command', '?')}` "
            f"(`bench/results/{run['_file']}`).")
    if plat == "cpu" and is_number(load) and cpus and load > 1.5 * cpus:
        text += (f" **Contended run**: a load of {load:g} on {cpus} CPUs means other "
                 "processes shared the CPUs, so these times are upper bounds, not the "
                 "path's speed.")
    return text


# ---------------------------------------------------------------- families

def sc_table(run):
    rows = [r for r in run["rows"] if isinstance(r, dict)]
    same_xla = all(r.get("xla_ms") == r.get("sc_ms") for r in rows)
    same_gather = all(r.get("gather_ms") == r.get("sc_ms") for r in rows)
    spec = [("case", "case", f_any), ("a", "a", f_shape), ("b", "b", f_shape),
            ("ms", "sc_ms", f_ms), ("G products/s", "glookups_per_s", lambda v: f_ratio(v, 2))]
    if not same_xla:
        spec += [("XLA path ms", "xla_ms", f_ms), ("/XLA", "sc_over_xla", f_ratio)]
    if not same_gather:
        spec += [("gather ms", "gather_ms", f_ms), ("/gather", "sc_over_gather", f_ratio)]
    spec += [("fp32 ms", "fp32_ms", f_ms), ("/fp32", "sc_over_fp32", lambda v: f_ratio(v, 1)),
             ("bf16 ms", "bf16_ms", f_ms), ("/bf16", "sc_over_bf16", lambda v: f_ratio(v, 1)),
             ("reference ms", "ref_ms", f_ms), ("/reference", "sc_over_ref", f_ratio),
             ("share of elements with the reference's bits", "same_bits_as_ref", f_ratio)]
    out = columns(rows, spec)
    notes = ["\"/X\" = our time / X's time, both measured in this run (< 1: faster than X)."]
    if same_xla and same_gather:
        notes.append("The default here is the XLA path with gather counts, so the XLA and "
                     "gather columns would equal ms and are left out.")
    if any(r.get("same_bits_as_ref") is not None for r in rows):
        notes.append("The reference accumulates in float32 with FMA and computes scales in "
                     "float64; this package accumulates exact integers with float32 scales "
                     "(docs/SPEC.md, Appendix A), so a share below 1 is expected.")
    if not any(r.get("ref_ms") is not None for r in rows):
        notes.append("Reference package: not run (no `--reference`).")
    return out, notes


def _fp4_kind(case):
    c = case.strip()
    if case.startswith(" ") or c.startswith("sweep"):
        return ("sweep",)
    if c.startswith("copy"):
        return ("copy",)
    m = re.match(r"quantize (\w+) \[(\w+)\]$", c)
    if m:
        return ("quantize", m[1], m[2])
    m = re.match(r"(prefill|decode N=(\d+)) (bf16 matmul|QuantLinear (\w+) \[(\w+)\])$", c)
    if m:
        n = int(m[2]) if m[2] else None
        return ("linear", "prefill" if n is None else "decode", n, m[4], m[5])
    m = re.match(r"decode N=(\d+) x(\d+) weights (bf16|QuantLinear (\w+))$", c)
    if m:
        return ("cold", int(m[1]), int(m[2]), m[4])
    return ("other",)


def fp4_tables(run):
    rows = [r for r in run["rows"] if isinstance(r, dict) and "case" in r]
    kinds = [(_fp4_kind(r["case"]), r) for r in rows]
    out, notes = [], []
    copy = [r for k, r in kinds if k[0] == "copy"]
    quant = [(k, r) for k, r in kinds if k[0] == "quantize"]
    if quant:
        base = (f"copy `-x` of the same {f_shape(copy[0].get('shape'))} bf16 array: "
                f"{f_ms(copy[0].get('ms'))} ms, {f_ms(copy[0].get('gbs'))} GB/s"
                if copy else "no copy row")
        out += ["", f"**Quantize + pack** (baseline: {base}; % of copy = bytes read + "
                    "written per second as a share of the copy's)", ""]
        out += columns([dict(r, _f=k[1], _i=k[2]) for k, r in quant], [
            ("format", "_f", f_any), ("implementation", "_i", f_any),
            ("shape", "shape", f_shape), ("ms", "ms", f_ms), ("GB/s", "gbs", f_ms),
            ("% of copy", "pct_of_copy", f_pct), ("first call s", "first_s", f_s)])
    lin = [(k, r) for k, r in kinds if k[0] == "linear"]
    bf16 = {(k[1], k[2]): r for k, r in lin if k[3] is None}
    for phase, title in (("prefill", "Prefill"),
                         ("decode", "Decode, warm: one weight reused by every timed call "
                          "(it stays in cache, on the H200 in L2)")):
        sel = [(k, r) for k, r in lin if k[1] == phase and k[3] is not None]
        if not sel:
            continue
        out += ["", f"**{title}**: `QuantLinear` forward (W4A4: activation and weight "
                    "quantized) against a bf16 matmul of the same shape", ""]
        out += columns([dict(r, _n=k[2], _f=k[3].upper(), _i=k[4],
                             _b=bf16.get((k[1], k[2]), {}).get("ms")) for k, r in sel], [
            ("N", "_n", f_any), ("shape (N,K,M)", "shape", f_shape), ("scheme", "_f", f_any),
            ("implementation", "_i", f_any), ("bf16 ms", "_b", f_ms), ("ms", "ms", f_ms),
            ("vs bf16", "over_bf16", f_x), ("matmul alone ms", "matmul_only_ms", f_ms),
            ("matmul alone vs bf16", "matmul_over_bf16", f_x), ("first call s", "first_s", f_s)])
    cold = [(k, r) for k, r in kinds if k[0] == "cold"]
    cbf = {(k[1], k[2]): r for k, r in cold if k[3] is None}
    csel = [(k, r) for k, r in cold if k[3] is not None]
    if csel:
        out += ["", "**Decode, cold**: each timed call walks distinct weights, together "
                    "larger than the cache on the GPU (read from HBM as in a multi-layer "
                    "model, where fp4's quarter of the bytes can show)", ""]
        out += columns([dict(r, _n=k[1], _w=k[2], _f=k[3].upper(),
                             _b=cbf.get((k[1], k[2]), {}).get("ms")) for k, r in csel], [
            ("N", "_n", f_any), ("weights per call", "_w", f_any),
            ("shape (N,K,M)", "shape", f_shape), ("scheme", "_f", f_any),
            ("bf16 ms", "_b", f_ms), ("ms", "ms", f_ms), ("vs bf16", "over_bf16", f_x),
            ("first call s", "first_s", f_s)])
    other = [r for k, r in kinds if k[0] == "other"]
    if other:
        out += ["", "**Other rows**", ""]
        out += generic_rows(other)
    n_sweep = sum(k[0] == "sweep" for k, _ in kinds)
    if n_sweep:
        notes.append(f"{n_sweep} tiling-sweep rows (`--sweep`) are in the JSON, not shown.")
    if not any(re.search(r"weight[- _]only|w4a16", r["case"], re.I) for r in rows):
        notes.append("Weight-only fp4 (bf16 activation, fp4 weight): not measured "
                     "(no such row in the JSON).")
    return out, notes


def generic_rows(rows):
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    return columns(rows, [(k, k, f_any) for k in keys])


def mixed_table(run):
    return columns(run["rows"], [
        ("shape (N,M,D)", "shape", f_shape), ("levels", "levels", f_shape),
        ("mixed ms", "mixed_ms", f_ms), ("split ms", "split_ms", f_ms),
        ("one L=256 call ms", "single_L256_ms", f_ms),
        ("mixed / split", "mixed_over_split", f_ratio),
        ("rows == split calls", "rows_equal_split", f_bool)]), []


def memory_table(run):
    return columns(run["rows"], [
        ("a, b shape", "shape", f_shape), ("whole table", "whole_table_bytes", f_bytes),
        ("cap", "cap_bytes", f_bytes), ("XLA s (first call)", "xla_s", f_ms),
        ("Pallas s (first call)", "pallas_s", f_ms), ("device peak", "peak_bytes", f_bytes),
        ("finite", "finite", f_bool), ("Pallas == XLA bits", "pallas_equals_xla", f_bool)]), []


def scaling_table(run):
    return columns(run["rows"], [
        ("case", "case", f_any), ("GPUs", "gpus", f_any), ("1 GPU ms", "one_gpu_ms", f_ms),
        ("all GPUs ms", "n_gpu_ms", f_ms), ("speedup", "speedup", f_x),
        ("same bits as 1 GPU", "same_bits", f_bool), ("output spec", "out_spec", f_any)]), []


def mp_calibrate_table(run):
    rows = [dict(r, _rounds=f"{r.get('n_outer_op')} / {r.get('n_outer_block')}",
                 _states=f"{r.get('states_batched')} / {r.get('states_loop')}")
            for r in run["rows"]]
    out = columns(rows, [
        ("case", "case", f_any), ("token rows", "rows", f_any), ("levels", "levels", f_shape),
        ("candidates", "n_candidates", f_any), ("rounds op / block", "_rounds", f_any),
        ("one program s", "batched_s", f_s), ("loop s", "loop_s", f_s),
        ("loop / one program", "loop_over_batched", f_ratio),
        ("states one program / loop", "_states", f_any), ("same plan", "same_plan", f_bool)])
    notes = ["Seconds are whole `mp.calibrate` calls, compiles included (each calibration "
             "builds its own programs); the one-program path evaluates padded batches of "
             "`candidates` states, the loop only distinct states."]
    return out, notes


RENDER = {"sc": sc_table, "fp4": fp4_tables, "mixed": mixed_table, "memory": memory_table,
          "scaling": scaling_table, "mp_calibrate": mp_calibrate_table}


def section(run):
    fn = RENDER.get(run["family"], lambda r: (generic_rows(
        [x for x in r["rows"] if isinstance(x, dict)]), []))
    lines, notes = fn(run)
    while lines and not lines[0]:
        lines = lines[1:]
    out = [source(run), ""] + lines
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    return out


# ---------------------------------------------------------------- report

HEAD = """# Benchmarks

Generated by `python -m bench.report` from the result files in `bench/results/`
({n} files; newest run {newest}); do not edit by hand: re-run a bench module
(the command under each table) and regenerate. Why the code is the way it is,
with the measurements behind each choice: `docs/decisions.md`. The dated
measurement diary this file replaced is in the git history
(`git log -p -- BENCHMARKS.md`).

How it is timed. SC rows (`python -m bench`, `bench.mixed`, `bench.scaling`):
per call from back-to-back calls with one synchronisation, median of
`--repeats`, every baseline in the same process. fp4 rows (`bench.fp4`):
device time, 10 calls unrolled in one jitted program (inputs and outputs
through optimization barriers), median of `--repeats`, so decode-sized calls
are not Python dispatch. "first call s" = the first call of the timing
program (its compile included). A ratio "vs X" or "/X" is our time over X's
(< 1: faster than X)."""


def render(runs, skipped=()):
    """The report's text."""
    newest = max((str(r.get("date")) for r in runs), default="none")
    out = [HEAD.format(n=len(runs), newest=newest)]
    gpu = [r for r in runs if r.get("platform") != "cpu"]
    cpu = [r for r in runs if r.get("platform") == "cpu"]
    for fam, (title, what) in FAMILIES.items():
        out += ["", f"## {title}", "", what + ".", ""]
        mine = [r for r in gpu if r["family"] == fam]
        if not mine:
            out.append("**Not measured**: no result file for this family on a GPU in "
                       "`bench/results/`.")
            continue
        for i, r in enumerate(mine):
            if i:
                out.append("")
            out += section(r)
    extra = sorted({r["family"] for r in gpu} - set(FAMILIES))
    for fam in extra:
        out += ["", f"## {fam}", ""]
        for r in (r for r in gpu if r["family"] == fam):
            out += section(r) + [""]
    out += ["", "## The CPU path", "", "The same modules off GPU (XLA path; shapes scaled "
            "down by the modules themselves).", ""]
    titles = {f: t for f, (t, _) in FAMILIES.items()}
    missing = []
    for fam in list(FAMILIES) + sorted({r["family"] for r in cpu} - set(FAMILIES)):
        mine = [r for r in cpu if r["family"] == fam]
        for r in mine:
            out += [f"### {titles.get(fam, fam)} (CPU)", ""] + section(r) + [""]
        if not mine and fam not in GPU_ONLY:
            missing.append(titles.get(fam, fam))
    if missing:
        out += ["**Not measured** on the CPU: " + "; ".join(missing) + ".", ""]
    if skipped:
        out += ["Files in `bench/results/` that are not bench envelopes (not shown): "
                + ", ".join(skipped) + ".", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=os.path.join("bench", "results"),
                   help="folder of bench JSON files (default bench/results)")
    p.add_argument("--out", default="BENCHMARKS.md", help="report file (default BENCHMARKS.md)")
    args = p.parse_args(argv)
    runs, skipped = load(args.results)
    text = render(runs, skipped)
    with open(args.out, "w") as f:
        f.write(text)
    size = len(text.encode())
    print(f"wrote {args.out}: {size} bytes from {len(runs)} result files"
          + (f" ({len(skipped)} skipped)" if skipped else ""))
    if size > MAX_BYTES:
        print(f"warning: {args.out} is over {MAX_BYTES} bytes")
    return 0


if __name__ == "__main__":
    main()
