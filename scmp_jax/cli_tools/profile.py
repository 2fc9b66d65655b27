"""``scmp-jax profile``: kernel-level relative-MSE ablation of ``sc_matmul``.

For every operand pair ``(a, b)`` and every configuration of the grid
``stoc_len x halve x scramble`` it measures the error of
``scmp_jax.sc_matmul(a, b, granularity, mode=..., sc_prec=..., stoc_len=L,
halve_bipolar_stoc_len=halve, scramble=s)`` against the exact float64
``a @ b.T`` (batched for 3D operands):

* ``rel_mse = mean((y - ref)**2) / mean(ref**2)``
* ``rel_l2 = ||y - ref||_2 / ||ref||_2`` (``= sqrt(rel_mse)``)

``halve`` follows the API: with an explicit ``stoc_len`` it only changes the
RNG grid to ``2**(sc_prec-1)`` levels (bipolar), so the two halve settings
compare the grid at equal stream length (the reference's ablation axis).

This is the method of the reference package's ``bench/mse_profile.py`` and
``bench/ablation.py`` (CrucibleComputingGroup/scmp_kernels), re-implemented
on this package's API.
"""
from __future__ import annotations

import csv
import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np

from .progress import progress

__all__ = ["profile", "run_profile", "write_csv", "read_csv", "aggregate", "findings",
           "summary_markdown",
           "CSV_FIELDS", "DEFAULT_STOC_LENS", "DEFAULT_SCRAMBLES"]

DEFAULT_STOC_LENS = (16, 32, 64, 128, 256)
DEFAULT_SCRAMBLES = ("bitrev", "counter", "off")
CSV_FIELDS = ("pair", "shape_a", "shape_b", "granularity", "mode", "sc_prec", "stoc_len",
              "halve", "rng_levels", "scramble", "mse", "rel_mse", "rel_l2")


def _exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...nd,...md->...nm", a.astype(np.float64), b.astype(np.float64))


def profile(pairs: dict, stoc_lens=DEFAULT_STOC_LENS, scrambles=DEFAULT_SCRAMBLES,
            halves=(False, True), granularity: str = "per_row", mode: str = "bipolar",
            sc_prec: int = 8, chunk_d: int = 0, show_progress: bool = True) -> list[dict]:
    """Rows of the grid (one per pair x stoc_len x halve x scramble), see the module doc.

    ``chunk_d`` applies to 2D pairs only (the API supports it nowhere else).
    Compiled programs are released after each pair (``scmp_jax.clear_caches``).
    """
    import scmp_jax

    B = 2 ** sc_prec
    for L in stoc_lens:
        if not 1 <= int(L) <= B:
            raise ValueError(f"stoc_len {L} out of [1, 2**sc_prec={B}]")
    grid = list(itertools.product(sorted(int(L) for L in stoc_lens), halves, scrambles))
    rows = []
    for name, (a, b) in pairs.items():
        ref = _exact(a, b)
        ref_ms = float(np.mean(ref ** 2))
        cd = chunk_d if a.ndim == 2 else 0
        for L, halve, scr in progress(grid, desc=f"profile {name}", enabled=show_progress):
            y = np.asarray(scmp_jax.sc_matmul(a, b, granularity, mode=mode, sc_prec=sc_prec,
                                              stoc_len=L, chunk_d=cd,
                                              halve_bipolar_stoc_len=halve, scramble=scr),
                           np.float64)
            mse = float(np.mean((y - ref) ** 2))
            rel = mse / ref_ms if ref_ms > 0 else float("nan")
            G = B // 2 if (halve and mode == "bipolar") else B
            rows.append(dict(pair=name, shape_a="x".join(map(str, a.shape)),
                             shape_b="x".join(map(str, b.shape)), granularity=granularity,
                             mode=mode, sc_prec=sc_prec, stoc_len=L, halve=bool(halve),
                             rng_levels=G, scramble=scr, mse=mse, rel_mse=rel,
                             rel_l2=float(np.sqrt(rel))))
        scmp_jax.clear_caches()
    return rows


def write_csv(rows: list[dict], path) -> None:
    """Write ``rows`` with the columns ``CSV_FIELDS``."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in CSV_FIELDS})


def read_csv(path) -> list[dict]:
    """Read a profile CSV back (numbers parsed)."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            r = dict(r)
            for k in ("sc_prec", "stoc_len", "rng_levels"):
                r[k] = int(r[k])
            for k in ("mse", "rel_mse", "rel_l2"):
                r[k] = float(r[k])
            r["halve"] = r["halve"] in ("True", "true", "1")
            out.append(r)
    return out


def aggregate(rows: list[dict]) -> dict:
    """Mean ``rel_mse`` over the pairs, keyed ``(stoc_len, halve, scramble)``."""
    acc = defaultdict(list)
    for r in rows:
        acc[(r["stoc_len"], r["halve"], r["scramble"])].append(r["rel_mse"])
    return {k: float(np.mean(v)) for k, v in acc.items()}


def findings(rows: list[dict], tol: float = 0.05) -> list[tuple[str, bool, str]]:
    """Check the reference's qualitative findings on the mean rel MSE.

    Returns ``(finding, holds, evidence)`` triples for: scramble essential at
    short streams; bitrev <= counter (within ``tol``); counter << off
    (at least 2x) below the full stream; halve no worse than full (within
    ``tol``) for every stream length and scramble. Findings whose scrambles
    are not in the grid are left out.
    """
    m = aggregate(rows)
    Ls = sorted({k[0] for k in m})
    scr = {k[2] for k in m}
    B = 2 ** rows[0]["sc_prec"] if rows else 0
    short = [L for L in Ls if L < B]
    out = []
    get = lambda L, s, h=False: m.get((L, h, s))
    if {"off", "bitrev"} <= scr and short:
        ratios = {L: get(L, "off") / get(L, "bitrev") for L in Ls}
        grows = ratios[Ls[0]] >= max(ratios[L] for L in Ls) * (1 - tol)
        ev = ", ".join(f"L={L}: off/bitrev={ratios[L]:.2f}x" for L in Ls)
        out.append(("scramble essential at short streams (off/bitrev grows as L shrinks)",
                    bool(grows and ratios[Ls[0]] > 2), ev))
    if {"counter", "bitrev"} <= scr and short:
        worst = max(get(L, "bitrev") / get(L, "counter") for L in short)
        ev = ", ".join(f"L={L}: bitrev/counter={get(L, 'bitrev') / get(L, 'counter'):.3f}"
                       for L in short)
        ev += "; per pair: " + _count(rows, lambda L: L < B, "bitrev", "counter")
        out.append((f"bitrev >= counter (mean bitrev MSE <= {1 + tol:g} x counter MSE)",
                    bool(worst <= 1 + tol), ev))
    if {"counter", "off"} <= scr and short:
        least = min(get(L, "off") / get(L, "counter") for L in short)
        ev = ", ".join(f"L={L}: off/counter={get(L, 'off') / get(L, 'counter'):.2f}x"
                       for L in short)
        out.append(("counter >> off (off MSE >= 2x counter MSE for L < 2**sc_prec)",
                    bool(least >= 2), ev))
    halves = {k[1] for k in m}
    if halves == {False, True}:
        ratios = {(L, s): get(L, s, True) / get(L, s, False) for L in Ls for s in sorted(scr)}
        worst = max(ratios.values())
        kw = max(ratios, key=ratios.get)
        best = min(ratios.values())
        out.append((f"halve no worse than full (mean halve/full MSE <= {1 + tol:g})",
                    bool(worst <= 1 + tol),
                    f"halve/full from {best:.3f} to {worst:.3f} (worst at L={kw[0]}, {kw[1]}); "
                    f"per pair: {_count_halve(rows)}"))
    return out


def _count(rows, keep_L, better: str, worse: str) -> str:
    """'i of n' (pair, stoc_len, halve) cases where ``better``'s rel MSE <= ``worse``'s."""
    m = {(r["pair"], r["stoc_len"], r["halve"], r["scramble"]): r["rel_mse"] for r in rows}
    keys = {k[:3] for k in m if keep_L(k[1])}
    n = sum(m[k + (better,)] <= m[k + (worse,)] for k in keys)
    return f"{better} <= {worse} in {n} of {len(keys)} (pair, stoc_len, halve) cases"


def _count_halve(rows) -> str:
    m = {(r["pair"], r["stoc_len"], r["halve"], r["scramble"]): r["rel_mse"] for r in rows}
    keys = [k for k in m if not k[2] and (k[0], k[1], True, k[3]) in m]
    n = sum(m[(k[0], k[1], True, k[3])] <= m[k] for k in keys)
    return f"halve <= full in {n} of {len(keys)} (pair, stoc_len, scramble) cases"


def summary_markdown(rows: list[dict]) -> str:
    """Markdown: mean rel MSE table (stoc_len rows, halve/scramble columns) + findings."""
    m = aggregate(rows)
    Ls = sorted({k[0] for k in m})
    scr = [s for s in ("off", "counter", "bitrev", "random") if any(k[2] == s for k in m)]
    cols = [(h, s) for h in (False, True) for s in scr if (Ls[0], h, s) in m]
    pairs = sorted({r["pair"] for r in rows})
    lines = [f"Mean relative MSE over {len(pairs)} operand pairs ({', '.join(pairs)}); "
             f"{rows[0]['granularity']} {rows[0]['mode']}, sc_prec={rows[0]['sc_prec']}.", "",
             "| stoc_len | " + " | ".join(f"{'halve' if h else 'full'}/{s}" for h, s in cols)
             + " |", "|---:|" + "---|" * len(cols)]
    for L in Ls:
        vals = [m[(L, h, s)] for h, s in cols]
        best = min(vals)
        cells = [f"**{v:.3e}**" if v == best else f"{v:.3e}" for v in vals]
        lines.append(f"| {L} | " + " | ".join(cells) + " |")
    lines += ["", "| finding | reproduces | evidence |", "|---|---|---|"]
    for name, ok, ev in findings(rows):
        lines.append(f"| {name} | {'yes' if ok else 'no'} | {ev} |")
    return "\n".join(lines) + "\n"


def run_profile(pairs: dict, out_dir, plot: bool = True, log=None, **kw) -> list[dict]:
    """Profile ``pairs``, write ``profile.csv``, ``summary.md`` and (matplotlib) ``profile.png``."""
    import sys

    from .plot import plot_profile

    log = sys.stdout if log is None else log
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (a, b) in pairs.items():
        print(f"pair {name}: a {a.shape}, b {b.shape}", file=log)
    rows = profile(pairs, **kw)
    write_csv(rows, out_dir / "profile.csv")
    text = summary_markdown(rows)
    (out_dir / "summary.md").write_text(text)
    print(text, file=log)
    print(f"wrote {len(rows)} rows -> {out_dir / 'profile.csv'}", file=log)
    if plot:
        png = plot_profile(rows, out_dir / "profile.png")
        print(f"wrote {png}" if png else
              "matplotlib is not installed: skipped the plot (pip install matplotlib)", file=log)
    return rows
