"""``python -m bench.scaling``: the big per_row case on every GPU of the host
(a's rows sharded, b replicated, output left sharded) vs one GPU, same
process; checks the sharded output equals the single-device one bit for bit."""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

import scmp_jax
from bench.__main__ import _median_time
from bench.common import write_result
from scmp_jax.cli_tools.argtypes import int_in


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    ap.add_argument("--repeats", type=int_in(1), default=5)
    ap.add_argument("--out", default=None,
                    help="JSON result file (default bench/results/scaling.json)")
    args = ap.parse_args(argv)
    n = len(jax.devices())
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 4096)).astype(np.float32)
    b = rng.standard_normal((4096, 4096)).astype(np.float32)
    rows = []
    for case, kw in (("per_row", {}), ("per_tensor", dict(granularity="per_tensor"))):
        a1, b1 = jnp.asarray(a), jnp.asarray(b)
        one = lambda: scmp_jax.sc_matmul(a1, b1, **kw)
        t1 = _median_time(one, args.repeats)
        mesh = jax.make_mesh((n,), ("x",))
        an = jax.device_put(a, NamedSharding(mesh, P("x", None)))
        bn = jax.device_put(b, NamedSharding(mesh, P(None, None)))
        many = lambda: scmp_jax.sc_matmul(an, bn, **kw)
        tn = _median_time(many, args.repeats)
        out = many()
        same = bool(np.array_equal(np.asarray(out).view(np.uint32),
                                   np.asarray(one()).view(np.uint32)))
        rows.append(dict(case=case, gpus=n, one_gpu_ms=t1 * 1e3, n_gpu_ms=tn * 1e3,
                         speedup=t1 / tn, same_bits=same, out_spec=str(out.sharding.spec)))
        print(f"{case}: 1 GPU {t1 * 1e3:.2f} ms | {n} GPUs {tn * 1e3:.2f} ms | "
              f"speedup {t1 / tn:.2f}x | same bits {same} | out {out.sharding.spec}", flush=True)
    write_result(args.out, "scaling", "bench.scaling", argv, rows)


if __name__ == "__main__":
    main()
