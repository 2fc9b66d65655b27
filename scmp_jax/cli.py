"""Command line: ``scmp-jax demo`` (the main job)."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

__all__ = ["main", "demo"]

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scmp-jax", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="SC matmul error vs exact matmul and time per call")
    p.add_argument("--shapes", nargs="+", default=["small", "mlp", "attn-qk"],
                   choices=sorted(_SHAPES))
    p.add_argument("--stoc-lens", nargs="+", type=int, default=None,
                   help="stream lengths to compare (default: 2**sc_prec and 64)")
    p.add_argument("--sc-prec", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small shape only, one repeat")
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        shapes = ["small"] if args.quick else args.shapes
        stoc = tuple(args.stoc_lens) if args.stoc_lens else (None, 64)
        demo(shapes, stoc, args.sc_prec, 1 if args.quick else args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
