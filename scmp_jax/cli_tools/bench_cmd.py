"""``scmp-jax bench``: run the benchmark module (``python -m bench``).

On a GPU it runs the full suite; without one it runs the CPU quick mode
(the GPU target shapes scaled down), unless ``full_on_cpu`` is set.
"""
from __future__ import annotations

import sys

__all__ = ["run_bench"]


def run_bench(quick: bool = False, repeats: int = 5, out: str = "bench_results.json",
              reference: str | None = None, full_on_cpu: bool = False, log=sys.stdout) -> int:
    """Call ``bench.__main__.main`` with the equivalent arguments; return 0."""
    import jax

    try:
        from bench.__main__ import main as bench_main
    except ImportError as e:  # bench/ ships in the wheel; a partial install may lack it
        raise SystemExit(f"scmp-jax bench: the 'bench' package is not importable ({e}); "
                         "run from the repository root or reinstall scmp-jax") from e
    on_gpu = jax.default_backend() == "gpu"
    if not on_gpu and not quick and not full_on_cpu:
        print("scmp-jax bench: no GPU found, running the CPU quick mode "
              "(--full-on-cpu to run every case)", file=log)
        quick = True
    argv = ["--repeats", str(repeats), "--out", out]
    if quick:
        argv.append("--quick")
    if reference:
        argv += ["--reference", reference]
    bench_main(argv)
    return 0
