"""``bench.report``: the tables of BENCHMARKS.md carry the numbers of the bench JSON files.

Real bench runs on tiny shapes (``python -m bench`` with one small case, the
``bench.fp4`` cold-decode rows at K = M = 64) write their envelopes; the report is generated from
them (and, separately, from the committed ``bench/results/*.json``), and every
number in its tables is read back and compared with the JSON value it shows.
"""
from __future__ import annotations

import datetime
import json
import os
import re

import jax
import numpy as np
import pytest

import bench.__main__ as sc_bench
from bench import common, report
from bench import fp4 as fp4_bench
from tests.helpers import ROOT

REPO = str(ROOT)
COMMITTED = os.path.join(REPO, "bench", "results")
TINY_CASE = ("per_row tiny", (16, 64), (8, 64), dict(granularity="per_row"))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """Envelopes written by real bench runs on tiny shapes (CPU: a few seconds)."""
    d = tmp_path_factory.mktemp("results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sc_bench, "GPU_CASES", [TINY_CASE])
        sc_bench.main(["--cases", TINY_CASE[0], "--repeats", "1",
                       "--out", str(d / "cpu_sc.json")])
    # bench.fp4's own CPU mode takes 15-25 s on 2 cores (compiles of 10 unrolled calls):
    # its cold-decode rows on a tiny shape instead, in the same envelope
    rows = fp4_bench._decode_cold_rows(1, 64, 64, 2, 1, np.random.default_rng(0))
    common.write_result(str(d / "cpu_fp4.json"), "fp4", "bench.fp4",
                        ["--cases", "decode_cold"], rows)
    return d


def _load(path):
    with open(path) as f:
        return json.load(f)


# ---------------------------------------------------------------- reading the report back

def _tables(text):
    """{source file name: [(header, rows), ...]} for every table under a source line."""
    out, current, lines = {}, None, text.splitlines()
    i = 0
    while i < len(lines):
        m = re.search(r"^Measured on .*\(`bench/results/([^`]+)`\)\.", lines[i])
        if m:
            current = out.setdefault(m[1], [])
        elif lines[i].startswith("#"):
            current = None
        elif lines[i].startswith("| ") and current is not None:
            header = [c.strip() for c in lines[i].strip("|").split(" | ")]
            assert set(lines[i + 1].replace("|", "")) == {"-"}, lines[i + 1]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("| "):
                cells = [c.strip() for c in lines[i].strip()[2:-2].split(" | ")]
                assert len(cells) == len(header), (header, cells)
                rows.append(dict(zip(header, cells)))
                i += 1
            current.append((header, rows))
            continue
        i += 1
    return out


def _num(cell):
    return float(cell.replace("x", "").replace("%", "").strip())


def _close(cell, value, what):
    """A rendered cell == the JSON value to its printed precision."""
    assert cell != "", what
    got = _num(cell)
    decimals = len(cell.split(".")[1].rstrip("x %")) if "." in cell else 0
    tol = max(0.5 * 10 ** -decimals, 5e-4 * abs(value)) * 1.0001
    assert abs(got - value) <= tol, (what, cell, value)


SC_COLUMNS = {"ms": "sc_ms", "G products/s": "glookups_per_s", "XLA path ms": "xla_ms",
              "/XLA": "sc_over_xla", "gather ms": "gather_ms", "/gather": "sc_over_gather",
              "fp32 ms": "fp32_ms", "/fp32": "sc_over_fp32", "bf16 ms": "bf16_ms",
              "/bf16": "sc_over_bf16", "reference ms": "ref_ms", "/reference": "sc_over_ref",
              "share of elements with the reference's bits": "same_bits_as_ref"}
FP4_COLUMNS = {"ms": "ms", "GB/s": "gbs", "% of copy": "pct_of_copy", "first call s": "first_s",
               "vs bf16": "over_bf16", "matmul alone ms": "matmul_only_ms",
               "matmul alone vs bf16": "matmul_over_bf16"}


def _check_sc(env, tables):
    (header, rows), = tables
    assert len(rows) == len(env["rows"])
    for r in env["rows"]:
        row, = [x for x in rows if x["case"] == r["case"]]
        assert row["a"] == "(" + ",".join(map(str, r["a"])) + ")"
        assert "ms" in header and "/fp32" in header and "/bf16" in header
        for col, key in SC_COLUMNS.items():
            if col in header:
                _close(row[col], r[key], (r["case"], col))
            elif r.get(key) is not None and key not in ("xla_ms", "sc_over_xla", "gather_ms",
                                                        "sc_over_gather"):
                pytest.fail(f"{key} of {r['case']} is in the JSON but not in the table")
        if "XLA path ms" not in header:       # left out only when it is the same timing
            assert r["xla_ms"] == r["sc_ms"]


def _check_fp4(env, tables, text):
    """Every non-sweep quantize / QuantLinear row of the JSON appears once with its
    numbers, next to the bf16 row of the same case (its baseline)."""
    cells = [row for _, rows in tables for row in rows]
    bf16 = {r["case"].rsplit(" bf16", 1)[0]: r["ms"] for r in env["rows"]
            if re.search(r" bf16( matmul)?$", r["case"])}
    shown = 0
    for r in env["rows"]:
        c = r["case"]
        if c.startswith(" ") or re.search(r" bf16( matmul)?$", c) or c.startswith("copy"):
            continue
        impl = re.search(r"\[(\w+)\]$", c)
        m = re.match(r"quantize (\w+) ", c)
        if m:
            row, = [x for x in cells if "% of copy" in x and x["format"] == m[1]
                    and x["implementation"] == impl[1]]
        else:
            m = re.match(r"(?:prefill|decode N=(\d+))(?: x(\d+) weights)? QuantLinear (\w+)", c)
            assert m, c
            row, = [x for x in cells if x.get("scheme") == m[3].upper()
                    and x.get("N") == m[1] and x.get("weights per call") == m[2]
                    and x.get("implementation") == (impl[1] if impl else None)]
            _close(row["bf16 ms"], bf16[c.split(" QuantLinear")[0]], (c, "bf16 ms"))
        for col, key in FP4_COLUMNS.items():
            if r.get(key) is not None:
                _close(row[col], r[key], (c, col))
        shown += 1
    assert shown == len(cells) > 0
    copy = [r for r in env["rows"] if r["case"].startswith("copy")]
    if copy:
        m = re.search(r"bf16 array: (\S+) ms, (\S+) GB/s", text)
        _close(m[1], copy[0]["ms"], "copy ms")
        _close(m[2], copy[0]["gbs"], "copy GB/s")


def _check_report(text, envs):
    assert len(text.encode()) < report.MAX_BYTES
    tables = _tables(text)
    for name, env in envs.items():
        src = [line for line in text.splitlines() if f"`bench/results/{name}`" in line]
        assert len(src) == 1, name
        part = text.split(src[0], 1)[1].split("\n#", 1)[0]
        for field in ("device", "jax", "date", "command"):
            assert str(env[field]) in src[0], (name, field)
        if env["family"] == "sc":
            _check_sc(env, tables[name])
        elif env["family"] == "fp4":
            _check_fp4(env, tables[name], part)
    measured = {(e["family"], e["platform"] == "cpu") for e in envs.values()}
    for fam, (title, _) in report.FAMILIES.items():
        gpu_section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
        assert ("**Not measured**" in gpu_section) == ((fam, False) not in measured), fam


# ---------------------------------------------------------------- tests

def test_envelopes_of_real_runs(fresh):
    for name, family, prog in (("cpu_sc.json", "sc", "python -m bench "),
                               ("cpu_fp4.json", "fp4", "python -m bench.fp4 ")):
        env = _load(fresh / name)
        assert env["family"] == family and env["command"].startswith(prog)
        assert env["device"] == jax.devices()[0].device_kind
        assert env["platform"] == jax.default_backend() and env["jax"] == jax.__version__
        assert datetime.date.fromisoformat(env["date"]) <= datetime.date.today() + \
            datetime.timedelta(days=1)
        assert env["rows"] and all(isinstance(r, dict) for r in env["rows"])
    assert f"--out {fresh / 'cpu_sc.json'}" in _load(fresh / "cpu_sc.json")["command"]
    sc = _load(fresh / "cpu_sc.json")["rows"]
    assert [r["case"] for r in sc] == [TINY_CASE[0]] and sc[0]["sc_ms"] > 0


def test_default_out_names_the_family():
    name = common.default_out("fp4")
    assert name == os.path.join("bench", "results", "fp4.json" if jax.default_backend() == "gpu"
                                else f"{jax.default_backend()}_fp4.json")


def test_report_of_real_runs(fresh, tmp_path):
    out = tmp_path / "B.md"
    assert report.main(["--results", str(fresh), "--out", str(out)]) == 0
    envs = {p: _load(fresh / p) for p in os.listdir(fresh)}
    text = out.read_text()
    _check_report(text, envs)
    cpu = text.split("## The CPU path", 1)[1]
    assert "### SC matmul (CPU)" in cpu and "### fp4 (MXFP4 / NVFP4) (CPU)" in cpu
    assert "**Decode, cold**" in cpu
    assert "**Not measured** on the CPU" in cpu      # mixed, memory, model: no files


def test_report_follows_the_json(fresh, tmp_path):
    """Change a measured value: the table changes with it."""
    env = _load(fresh / "cpu_sc.json")
    env["rows"][0]["sc_ms"] *= 3.7
    env["rows"][0]["sc_over_bf16"] *= 3.7
    (tmp_path / "cpu_sc.json").write_text(json.dumps(env))
    text = report.render(*report.load(str(tmp_path)))
    _check_report(text, {"cpu_sc.json": env})


def test_missing_families_and_foreign_files(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"results": []}))
    text = report.render(*report.load(str(tmp_path)))
    assert text.count("**Not measured**: no result file") == len(report.FAMILIES)
    assert "old.json" in text and "|" not in text


def test_report_of_committed_results():
    """The committed result files render, every number as in its JSON."""
    names = [n for n in sorted(os.listdir(COMMITTED)) if n.endswith(".json")] \
        if os.path.isdir(COMMITTED) else []
    if not names:
        pytest.skip("no committed bench/results/*.json")
    runs, skipped = report.load(COMMITTED)
    assert not skipped
    _check_report(report.render(runs), {n: _load(os.path.join(COMMITTED, n)) for n in names})


def test_contended_cpu_runs_are_flagged(fresh, tmp_path):
    env = _load(fresh / "cpu_sc.json")
    for load, flagged in ((0.5, False), (4 * (env["cpu_count"] or 1), True)):
        env.update(platform="cpu", load_1min=load)
        (tmp_path / "cpu_sc.json").write_text(json.dumps(env))
        text = report.render(*report.load(str(tmp_path)))
        assert ("**Contended run**" in text) == flagged and f"load {load:g}" in text
