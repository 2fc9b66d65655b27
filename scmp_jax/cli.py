"""Command line ``scmp-jax``: ``demo`` (the main job), ``bench``, ``profile``, ``export-vectors``.

This module only wires argparse; ``bench``, ``profile`` and ``export-vectors``
live in ``scmp_jax.cli_tools``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from ._src.errors import check_int
from .cli_tools.argtypes import SC_PREC, int_in

__all__ = ["main", "demo"]

POSITIVE, NON_NEGATIVE, PREC = int_in(1), int_in(0), int_in(*SC_PREC)

_SHAPES = {
    # name: (a shape, b shape, 3D?)
    "mlp": ((256, 1024), (512, 1024)),
    "attn-qk": ((8, 128, 64), (8, 128, 64)),
    "small": ((64, 256), (128, 256)),
}
_VARIANTS = [
    ("per_tensor", dict(mode="bipolar")),
    ("per_tensor", dict(mode="unipolar")),
    ("per_row", dict(mode="bipolar")),
    ("per_row", dict(mode="unipolar")),
    ("per_row", dict(mode="bipolar", chunk_d=128)),
    ("per_row", dict(mode="bipolar", halve_bipolar_stoc_len=True)),
    ("per_head", dict(mode="bipolar")),
]


def _time(fn, repeats: int) -> float:
    fn().block_until_ready()                      # compile + warm up
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn().block_until_ready()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def demo(shapes=("small", "mlp", "attn-qk"), stoc_lens=(None, 64), sc_prec: int = 8,
         repeats: int = 3, seed: int = 0, out=sys.stdout) -> list[dict]:
    """SC matmul error vs the exact matmul and time per call, as a table."""
    check_int(repeats, "repeats", 1)
    import jax
    import jax.numpy as jnp
    import scmp_jax

    rng = np.random.default_rng(seed)
    rows = []
    print(f"scmp-jax demo  jax {jax.__version__} on {jax.default_backend()}  sc_prec={sc_prec}",
          file=out)
    head = f"{'shape':<9} {'granularity':<11} {'mode/options':<40} {'L':>5} {'rel_err':>9} {'ms/call':>9} {'G lookups/s':>11}"
    print(head, file=out)
    print("-" * len(head), file=out)
    for name in shapes:
        sa, sb = _SHAPES[name]
        a = jnp.asarray(rng.standard_normal(sa).astype(np.float32))
        b = jnp.asarray(rng.standard_normal(sb).astype(np.float32))
        exact = np.einsum("...nd,...md->...nm", np.asarray(a, np.float64), np.asarray(b, np.float64))
        lookups = int(np.prod(exact.shape)) * sa[-1]
        for gran, kw in _VARIANTS:
            three_d = len(sa) == 3
            if (gran == "per_head") != three_d and gran == "per_head":
                continue
            if kw.get("chunk_d") and (three_d or sa[-1] <= kw["chunk_d"]):
                continue
            for L in stoc_lens:
                if L is not None and kw.get("halve_bipolar_stoc_len"):
                    continue
                f = jax.jit(lambda x, y, g=gran, k=tuple(kw.items()), L=L: scmp_jax.sc_matmul(
                    x, y, g, sc_prec=sc_prec, stoc_len=L, **dict(k)))
                y = np.asarray(f(a, b), np.float64)
                err = float(np.linalg.norm(y - exact) / np.linalg.norm(exact))
                dt = _time(lambda: f(a, b), repeats)
                opts = ",".join(f"{k}={v}" for k, v in kw.items())
                Lr = L or (2 ** (sc_prec - 1) if kw.get("halve_bipolar_stoc_len") else 2 ** sc_prec)
                rows.append(dict(shape=name, granularity=gran, options=opts, stoc_len=Lr,
                                 rel_err=err, ms=dt * 1e3, glookups=lookups / dt / 1e9))
                print(f"{name:<9} {gran:<11} {opts:<40} {Lr:>5} {err:>9.4f} {dt * 1e3:>9.2f} "
                      f"{lookups / dt / 1e9:>11.3f}", file=out, flush=True)
    return rows


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="SC matmul error vs exact matmul and time per call",
                       description=demo.__doc__)
    p.add_argument("--shapes", nargs="+", default=["small", "mlp", "attn-qk"],
                   choices=sorted(_SHAPES))
    p.add_argument("--stoc-lens", nargs="+", type=POSITIVE, default=None,
                   help="stream lengths to compare (default: 2**sc_prec and 64)")
    p.add_argument("--sc-prec", type=PREC, default=8)
    p.add_argument("--repeats", type=POSITIVE, default=3)
    p.add_argument("--quick", action="store_true", help="small shape only, one repeat")


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmarks (python -m bench)",
                       description="Run the benchmark module (python -m bench): the full suite "
                       "on a GPU, the CPU quick mode otherwise.")
    p.add_argument("--quick", action="store_true", help="fewer cases (always on without a GPU)")
    p.add_argument("--full-on-cpu", action="store_true",
                   help="without a GPU, run every case (scaled-down shapes) instead of --quick")
    p.add_argument("--repeats", type=POSITIVE, default=5,
                   help="timing samples per case (median)")
    p.add_argument("--out", default="bench_results.json", help="JSON results file")
    p.add_argument("--reference", default=None,
                   help="directory with a local copy of the scmp_kernels package (GPU only)")


def _add_profile(sub) -> None:
    from .cli_tools.profile import DEFAULT_SCRAMBLES, DEFAULT_STOC_LENS

    p = sub.add_parser(
        "profile", help="kernel-level relative-MSE ablation: stoc_len x halve x scramble",
        description="Relative MSE of sc_matmul(a, b) vs the exact float64 a @ b.T over the grid "
        "stoc_len x halve_bipolar_stoc_len x scramble, on real MiniLM operands (default) or "
        "the pairs of an .npz. Writes profile.csv, summary.md and (with matplotlib) "
        "profile.png into --out-dir.")
    p.add_argument("--npz", default=None,
                   help="operands: arrays a, b or pairs a_<name>, b_<name> (default: capture "
                        "from the MiniLM example on its built-in sentences)")
    p.add_argument("--rows", type=POSITIVE, default=64,
                   help="MiniLM dense layers: token rows kept per activation (default 64)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="row subsampling seed")
    p.add_argument("--pairs", nargs="+", default=None,
                   help="only these operand pairs (names as printed, e.g. L0.query)")
    p.add_argument("--save-operands", default=None, metavar="FILE",
                   help="also write the operand pairs to FILE (.npz, usable as --npz)")
    p.add_argument("--stoc-lens", nargs="+", type=POSITIVE, default=list(DEFAULT_STOC_LENS))
    p.add_argument("--scrambles", nargs="+", default=list(DEFAULT_SCRAMBLES),
                   choices=["bitrev", "counter", "off", "random"])
    p.add_argument("--halves", nargs="+", default=["full", "halve"], choices=["full", "halve"],
                   help="halve_bipolar_stoc_len settings (halve: RNG grid 2**(sc_prec-1))")
    p.add_argument("--granularity", default="per_row", choices=["per_row", "per_tensor"])
    p.add_argument("--mode", default="bipolar", choices=["bipolar", "unipolar"])
    p.add_argument("--sc-prec", type=PREC, default=8)
    p.add_argument("--chunk-d", type=NON_NEGATIVE, default=0,
                   help="chunk_d for 2D pairs (per_row bipolar)")
    p.add_argument("--out-dir", default="profile_out")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar / lines")


def _add_export(sub) -> None:
    from .cli_tools.vectors import CONFIG_BUILDERS

    p = sub.add_parser(
        "export-vectors", help="golden per-cycle streams and counts for an RTL testbench",
        description="Golden-model (golden/) vectors: boundaries, signs, per-cycle A/B bit "
        "streams, enable counts k, product counts c, accumulators and float outputs, as "
        "vectors.npz and hex text files (widths in manifest.json). Checks that the JAX "
        "sc_matmul gives the same float32 bits.")
    p.add_argument("--sc-prec", type=PREC, default=8)
    p.add_argument("--stoc-len", type=POSITIVE, default=None,
                   help="stream length L (default 2**sc_prec)")
    p.add_argument("--rng-levels", type=POSITIVE, default=None,
                   help="RNG grid G (default 2**sc_prec)")
    p.add_argument("--scramble", default="bitrev", choices=["bitrev", "counter", "off", "random"])
    p.add_argument("--config", default="default", choices=list(CONFIG_BUILDERS),
                   help="stream config builder (golden.configs; default = sobol_simple)")
    p.add_argument("-D", "--dim", type=POSITIVE, default=16,
                   help="inner dimension D (random operands)")
    p.add_argument("--rows", type=POSITIVE, default=4, help="rows N of a (random operands)")
    p.add_argument("--cols", type=POSITIVE, default=None, help="rows M of b (default: --rows)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0,
                   help="operand seed (and rng_seed of the randomized config builders)")
    p.add_argument("--npz", default=None, help="given operands: arrays a (N, D) and b (M, D)")
    p.add_argument("--mode", default="bipolar", choices=["bipolar", "unipolar"])
    p.add_argument("--granularity", default="per_row", choices=["per_row", "per_tensor"])
    p.add_argument("--out-dir", default="vectors_out")


def _run_profile(args) -> int:
    from .cli_tools import operands
    from .cli_tools.profile import run_profile

    if args.npz:
        pairs = operands.load_npz(args.npz)
    else:
        print("capturing MiniLM operands on the built-in sentences ...", flush=True)
        pairs = operands.capture_minilm(rows=args.rows, seed=args.seed)
    if args.pairs:
        unknown = sorted(set(args.pairs) - set(pairs))
        if unknown:
            raise SystemExit(f"unknown pairs {unknown}; available: {sorted(pairs)}")
        pairs = {k: pairs[k] for k in args.pairs}
    if args.save_operands:
        operands.save_npz(args.save_operands, pairs)
    run_profile(pairs, args.out_dir, plot=not args.no_plot, stoc_lens=tuple(args.stoc_lens),
                scrambles=tuple(args.scrambles),
                halves=tuple(h == "halve" for h in args.halves), granularity=args.granularity,
                mode=args.mode, sc_prec=args.sc_prec, chunk_d=args.chunk_d,
                show_progress=not args.no_progress)
    return 0


def _check_lengths(parser, args) -> None:
    """Stream lengths and RNG grids at most ``2**sc_prec`` (argparse error otherwise)."""
    B = 2 ** getattr(args, "sc_prec", 8)
    for opt in ("stoc_lens", "stoc_len", "rng_levels"):
        vals = getattr(args, opt, None)
        for v in vals if isinstance(vals, list) else [vals]:
            if v is not None and v > B:
                parser.error(f"argument --{opt.replace('_', '-')}: must be <= 2**sc_prec = {B}, "
                             f"got {v}")


def main(argv=None) -> int:
    """Entry point of ``scmp-jax``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="scmp-jax", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_demo(sub)
    _add_bench(sub)
    _add_profile(sub)
    _add_export(sub)
    args = parser.parse_args(argv)
    _check_lengths(sub.choices[args.cmd], args)
    if args.cmd == "demo":
        shapes = ["small"] if args.quick else args.shapes
        stoc = tuple(args.stoc_lens) if args.stoc_lens else (None, 64)
        demo(shapes, stoc, args.sc_prec, 1 if args.quick else args.repeats)
        return 0
    if args.cmd == "bench":
        from .cli_tools.bench_cmd import run_bench
        return run_bench(args.quick, args.repeats, args.out, args.reference, args.full_on_cpu)
    if args.cmd == "profile":
        return _run_profile(args)
    if args.cmd == "export-vectors":
        from .cli_tools.vectors import export_vectors
        export_vectors(args.out_dir, sc_prec=args.sc_prec, stoc_len=args.stoc_len,
                       rng_levels=args.rng_levels, scramble=args.scramble, config=args.config,
                       D=args.dim, rows=args.rows, cols=args.cols, seed=args.seed,
                       mode=args.mode, granularity=args.granularity, npz=args.npz)
        return 0
    parser.error(f"unknown command {args.cmd!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
