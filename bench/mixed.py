"""``python -m bench.mixed``: one mixed-length SC matmul vs the same work split
into per-level calls (GPU). Rows of a (2048, 4096) get stream lengths
256/128/64 (25/50/25 %); b is (4096, 4096). Prints a table, writes JSON."""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import scmp_jax
from bench.__main__ import _median_time
from bench.common import write_result
from scmp_jax.cli_tools.argtypes import int_in


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.mixed", description=__doc__)
    ap.add_argument("--repeats", type=int_in(1), default=5)
    ap.add_argument("--out", default=None,
                    help="JSON result file (default bench/results/mixed.json)")
    args = ap.parse_args(argv)
    on_gpu = jax.default_backend() == "gpu"
    N, M, D = (2048, 4096, 4096) if on_gpu else (128, 256, 1024)
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((N, D)).astype(np.float32))
    b = jnp.asarray(rng.standard_normal((M, D)).astype(np.float32))
    levels = (256, 128, 64)
    rl = np.repeat(np.array(levels), [N // 4, N // 2, N - N // 4 - N // 2])
    rl = jnp.asarray(rng.permutation(rl).astype(np.int32))
    mixed = jax.jit(lambda x, y, r: scmp_jax.sc_matmul(x, y, row_stoc_len=r, stoc_levels=levels))
    rows = [np.flatnonzero(np.asarray(rl) == L) for L in levels]
    parts = [jax.jit(lambda x, y, L=L: scmp_jax.sc_matmul(x, y, stoc_len=L)) for L in levels]
    subsets = [a[r] for r in rows]       # the rows are grouped once, outside the timing

    def split():
        return [f(s, b) for f, s in zip(parts, subsets)]

    t_mixed = _median_time(lambda: mixed(a, b, rl), args.repeats)
    t_split = _median_time(split, args.repeats)
    t_full = _median_time(lambda: parts[0](a, b), args.repeats)
    same = all(np.array_equal(np.asarray(mixed(a, b, rl))[r], np.asarray(p))
               for r, p in zip(rows, split()))
    res = dict(shape=[N, M, D],
               levels=levels, mixed_ms=t_mixed * 1e3, split_ms=t_split * 1e3,
               single_L256_ms=t_full * 1e3, mixed_over_split=t_mixed / t_split,
               rows_equal_split=same)
    print(f"mixed {t_mixed * 1e3:.3f} ms | split into {len(levels)} calls {t_split * 1e3:.3f} ms "
          f"| one L=256 call {t_full * 1e3:.3f} ms | mixed/split {t_mixed / t_split:.3f} | "
          f"rows equal: {same}")
    write_result(args.out, "mixed", "bench.mixed", argv, [res])


if __name__ == "__main__":
    main()
