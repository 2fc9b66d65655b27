"""The profile's figure: relative MSE vs stream length (optional matplotlib)."""
from __future__ import annotations

import importlib.util
from collections import defaultdict

__all__ = ["plot_profile", "have_matplotlib"]

_COLORS = {"bitrev": "tab:blue", "counter": "tab:orange", "off": "tab:red", "random": "tab:green"}


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def plot_profile(rows: list[dict], path):
    """Write a PNG: one panel with the mean over pairs, then one per pair.

    x: stoc_len (log2), y: relative MSE (log); colour = scramble, line style =
    halve (solid full grid, dashed halved grid). Returns ``path``, or None
    when matplotlib is missing.
    """
    if not have_matplotlib():
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pairs = sorted({r["pair"] for r in rows})
    panels = ["mean over pairs"] + (pairs if len(pairs) > 1 else [])
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        data = defaultdict(lambda: defaultdict(list))
        for r in rows:
            if panel == "mean over pairs" or r["pair"] == panel:
                data[(r["scramble"], r["halve"])][r["stoc_len"]].append(r["rel_mse"])
        for (scr, halve), pts in sorted(data.items()):
            Ls = sorted(pts)
            ax.plot(Ls, [np.mean(pts[L]) for L in Ls], marker="o", ms=3,
                    color=_COLORS.get(scr, "k"), ls="--" if halve else "-",
                    label=f"{scr}, {'halve' if halve else 'full'}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("stoc_len")
        ax.set_ylabel("relative MSE")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    r0 = rows[0]
    fig.suptitle(f"sc_matmul relative MSE vs exact: {r0['granularity']} {r0['mode']}, "
                 f"sc_prec={r0['sc_prec']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
