"""``python -m bench.memory``: tables beyond the cap run in bounded memory.

sc_prec=10, stoc_len=512 with bitrev masks (1024 distinct streams: a whole
count table would be ~2.1 GB) and D=16384: both implementations walk the inner
dim in chunks with tables built on device under ``table_cap_bytes``. Reports
the device's peak memory and checks that XLA and Pallas give the same bits.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import scmp_jax
from bench.common import write_result
from scmp_jax.sc.tables import cum_bytes


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--d", type=int, default=16384)
    ap.add_argument("--out", default=None,
                    help="JSON result file (default bench/results/memory.json)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((args.rows, args.d)).astype(np.float32))
    b = jnp.asarray(rng.standard_normal((args.rows, args.d)).astype(np.float32))
    kw = dict(sc_prec=10, stoc_len=512)
    whole = cum_bytes(1024, 512, 1024)
    res = dict(whole_table_bytes=whole,
               cap_bytes=scmp_jax.sc.DEFAULT_TABLE_CAP_BYTES, shape=[args.rows, args.d])
    outs = {}
    impls = ("xla", "pallas") if jax.default_backend() == "gpu" else ("xla",)
    for impl in impls:
        t0 = time.perf_counter()
        outs[impl] = np.asarray(scmp_jax.sc_matmul(a, b, implementation=impl, **kw))
        res[f"{impl}_s"] = time.perf_counter() - t0
    stats = jax.devices()[0].memory_stats() or {}
    res["peak_bytes"] = stats.get("peak_bytes_in_use")
    res["finite"] = bool(np.all(np.isfinite(outs["xla"])))
    if "pallas" in outs:
        res["pallas_equals_xla"] = bool(np.array_equal(outs["xla"].view(np.uint32),
                                                        outs["pallas"].view(np.uint32)))
    print(json.dumps(res))
    write_result(args.out, "memory", "bench.memory", argv, [res])


if __name__ == "__main__":
    main()
