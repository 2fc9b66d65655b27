"""``python -m bench.tune``: the Pallas count kernel's tilings, measured (GPU).

For the issue's three shapes, builds the real table indices of Gaussian
operands (default config, sc_prec=8, L=256) and times
``pallas_counts.accumulate`` for a grid of tilings next to the heuristic's
choice, plus the quantization kernels alone. Writes JSON and prints a table;
the heuristic in ``pallas_counts.tiling`` is set from these numbers.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from bench.__main__ import _median_time, write_json
from scmp_jax.cli_tools.argtypes import int_in
from scmp_jax.quant import pallas as QP
from scmp_jax.quant import xla as QX
from scmp_jax.sc import SCConfig, pallas_counts
from scmp_jax.sc.pallas_encode import encode_index
from scmp_jax.sc.tables import enable_tables, layout

SHAPES = [("per_row", (1, 2048, 4096), (1, 4096, 4096)),
          ("per_head", (32, 1024, 128), (32, 1024, 128)),
          ("small", (1, 128, 1024), (1, 512, 1024))]
TILES = [(128, 128, 8), (128, 128, 4), (64, 128, 4), (128, 64, 4), (64, 64, 4), (64, 64, 2),
         (32, 64, 4), (32, 32, 4), (32, 32, 2), (16, 64, 2)]


def _indices(a, b, p=8, L=256):
    G = 2 ** p
    D = a.shape[-1]
    tabs = enable_tables(SCConfig.sobol_simple(), D, p, L, G, "bitrev", 256 << 20)
    lay = layout(tabs.streams_b.shape[0], L, G)
    sch = QX.Scheme("per_row", "bipolar", p, G)
    pa = QX.row_params(QP.stats(a, None, interpret=False), sch)
    pb = QX.row_params(QP.stats(b, None, interpret=False), sch)
    enc_a = jax.jit(lambda x, prm: encode_index(
        x, None, prm, tabs.sid_b * lay.row_s, tabs.sid_a * (G + 1), tabs.ktab, sch=sch,
        interpret=False, shift=lay.shift, vp=lay.vp)[0])
    enc_b = jax.jit(lambda x, prm: encode_index(
        x, None, prm, sch=sch, interpret=False, shift=lay.shift, vp=lay.vp)[0])
    return enc_a(a, pa), enc_b(b, pb), tabs.table, (enc_a, pa, enc_b, pb)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__)
    ap.add_argument("--repeats", type=int_in(1), default=5)
    ap.add_argument("--out", default="tune_results.json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for name, sa, sb in SHAPES:
        a = jnp.asarray(rng.standard_normal(sa).astype(np.float32))
        b = jnp.asarray(rng.standard_normal(sb).astype(np.float32))
        ro, co, table, (enc_a, pa, enc_b, pb) = _indices(a, b)
        H, D, N = ro.shape
        M = co.shape[2]
        lookups = H * N * M * D
        st_a = jax.jit(lambda x: QP.stats(x, None, interpret=False))
        t_q = (_median_time(lambda: st_a(a), args.repeats)
               + _median_time(lambda: st_a(b), args.repeats)
               + _median_time(lambda: enc_a(a, pa), args.repeats)
               + _median_time(lambda: enc_b(b, pb), args.repeats))
        print(f"{name}: quantization kernels (stats + encode, both sides) {t_q * 1e3:.3f} ms",
              flush=True)
        heur = pallas_counts.tiling(H, N, M, D)
        cands = [heur]
        for bn, bm, w in TILES:
            for s in (1, 2, 4, 8):
                if D // s >= 64 and bn <= max(16, N) and bm <= max(16, M):
                    cands.append(pallas_counts.Tiling(bn, bm, s, w))
        seen = set()
        for t in cands:
            if t in seen:
                continue
            seen.add(t)
            fn = jax.jit(lambda r, c, tb, t=t: pallas_counts.accumulate(
                r, c, tb, interpret=False, tile=t))
            try:
                ms = _median_time(lambda: fn(ro, co, table), args.repeats) * 1e3
            except Exception as e:      # a tiling the backend rejects: recorded, not fatal
                print(f"  {t}: failed {type(e).__name__}: {str(e)[:120]}", flush=True)
                continue
            rows.append(dict(shape=name, bn=t.bn, bm=t.bm, splits=t.splits, warps=t.warps,
                             ms=ms, tlookups_per_s=lookups / ms / 1e9, heuristic=t == heur,
                             quant_ms=t_q * 1e3))
            print(f"  {name:<9} {t.bn:>4}x{t.bm:<4} w{t.warps} s{t.splits}  {ms:8.3f} ms "
                  f"{lookups / ms / 1e9:6.2f} T lk/s{'  <- heuristic' if t == heur else ''}",
                  flush=True)
    write_json(args.out, rows=rows)
    for name, _, _ in SHAPES:
        best = min((r for r in rows if r["shape"] == name), key=lambda r: r["ms"], default=None)
        if best:
            print(f"best {name}: {best['bn']}x{best['bm']} w{best['warps']} s{best['splits']} "
                  f"{best['ms']:.3f} ms")


if __name__ == "__main__":
    main()
