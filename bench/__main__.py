"""``python -m bench [--quick] [--reference DIR] [--out FILE]``: SC matmul timings as ratios.

Every case is timed in one process next to its baselines: dense
``jnp.matmul`` in float32 and bfloat16 on the same shapes, the XLA SC path
when the default implementation is another one, on GPU the default with
``counts="gather"`` (table lookups; checked to give the same bits), and with
``--reference DIR`` the reference PyTorch package ``scmp_kernels`` imported from ``DIR`` (a local
copy, never committed) on the same data. Times are per call, from back-to-back
calls with one synchronisation (median of ``--repeats``). Prints a table and
writes JSON (``bench.common``'s envelope, family ``sc``; default
``bench/results/sc.json``, ``cpu_sc.json`` off GPU). On CPU the GPU target
shapes are scaled down (same D, fewer rows).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

import scmp_jax
from bench.common import write_result
from scmp_jax.cli_tools.argtypes import int_in

GPU_CASES = [
    # name, a shape, b shape, kwargs
    ("per_row", (2048, 4096), (4096, 4096), dict(granularity="per_row")),
    ("per_row L=64", (2048, 4096), (4096, 4096), dict(granularity="per_row", stoc_len=64)),
    ("per_row chunk_d=128", (2048, 4096), (4096, 4096), dict(granularity="per_row", chunk_d=128)),
    ("per_row unipolar", (2048, 4096), (4096, 4096), dict(granularity="per_row", mode="unipolar")),
    ("per_tensor", (2048, 4096), (4096, 4096), dict(granularity="per_tensor")),
    ("per_head", (32, 1024, 128), (32, 1024, 128), dict(granularity="per_head")),
    ("per_row 3D", (32, 1024, 128), (32, 1024, 128), dict(granularity="per_row")),
    ("per_row small", (128, 1024), (512, 1024), dict(granularity="per_row")),
]


def _scale_for_cpu(shape):
    if len(shape) == 3:
        return (2,) + shape[1:2] + shape[2:]
    return (min(shape[0], 256),) + shape[1:]


def write_json(path, **payload):
    """Write a result file with the run's jax version, device and backend."""
    with open(path, "w") as f:
        json.dump(dict(jax=jax.__version__, device=jax.devices()[0].device_kind,
                       backend=jax.default_backend(), **payload), f, indent=1)
    print(f"wrote {path}")


def _median_time(fn, repeats, sync=jax.block_until_ready, info=None):
    """Median seconds per call; each sample runs enough back-to-back calls
    (one sync at the end) to last >= ~20 ms, so launch gaps overlap. With a dict
    ``info``, ``info["first_s"]`` = seconds of the first call (compile included)."""
    t0 = time.perf_counter()
    sync(fn())
    if info is not None:
        info["first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sync(fn())
    once = max(time.perf_counter() - t0, 1e-6)
    k = int(min(200, max(1, 0.02 // once)))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(k - 1):
            fn()
        sync(fn())
        ts.append((time.perf_counter() - t0) / k)
    return float(np.median(ts))


def _unrolled(fn):
    """jit of ``body(*arg_sets)``: one ``fn`` call per tuple of arguments, each
    call's inputs passing an ``optimization_barrier`` with a loop-carried scalar
    and each output a barrier (see ``device_time``)."""
    def body(*sets):
        c = jnp.float32(0)
        for a in sets:
            a2, c = jax.lax.optimization_barrier((a, c))
            out = jax.lax.optimization_barrier(fn(*a2))    # whole output materialized
            leaf = jax.tree_util.tree_leaves(out)[0]
            c = c + leaf.reshape(-1)[0].astype(jnp.float32)
        return c
    return body


def device_time(fn, args, repeats=5, reps=10, info=None):
    """Median seconds per ``fn(*args)`` measured on the device: ``reps`` calls
    unrolled inside ONE jitted program (each call's inputs pass through an
    ``optimization_barrier`` with a loop-carried scalar, so XLA can neither
    hoist nor merge them, and each output passes a barrier, so no slice of it is
    pushed into the computation), so host dispatch and launch gaps between programs
    do not count. For kernels shorter than Python's dispatch (decode-sized
    matmuls) this is the time a jitted model pays; ``_median_time`` is not.
    ``info``: see ``_median_time`` (the compile of all ``reps`` copies)."""
    body = _unrolled(fn)
    loop = jax.jit(lambda *a: body(*[a] * reps))
    return _median_time(lambda: loop(*args), repeats, info=info) / reps


def device_time_rotating(fn, arg_sets, repeats=5, info=None):
    """Like ``device_time`` with one call per tuple of ``arg_sets`` (e.g. several
    layers' weights), so operands larger than L2 together stream from HBM on
    each call as in a multi-layer model; seconds per call."""
    loop = jax.jit(_unrolled(fn))
    return _median_time(lambda: loop(*arg_sets), repeats, info=info) / len(arg_sets)


class _Reference:
    """The reference package on the same GPU, same process (torch)."""

    def __init__(self, path):
        import sys
        sys.path.insert(0, path)
        import torch
        from scmp_kernels import sc_matmul
        self.torch, self.fn = torch, sc_matmul

    def time(self, a, b, g, kw, repeats):
        t = self.torch
        ta, tb = t.from_numpy(np.asarray(a)).cuda(), t.from_numpy(np.asarray(b)).cuda()
        out = self.fn(ta, tb, g, **kw)
        ms = _median_time(lambda: self.fn(ta, tb, g, **kw), repeats,
                          sync=lambda _: t.cuda.synchronize())
        res = out.cpu().numpy()
        ta = tb = out = None          # free the device copies before empty_cache
        t.cuda.empty_cache()
        return ms, res


def run(quick: bool = False, repeats: int = 5, reference=None, cases=None):
    """``cases``: names of ``GPU_CASES`` to run (all when None)."""
    on_gpu = jax.default_backend() == "gpu"
    ref = _Reference(reference) if (reference and on_gpu) else None
    results = []
    for name, sa, sb, kw in GPU_CASES:
        if cases is not None and name not in cases:
            continue
        if not on_gpu:
            sa, sb = _scale_for_cpu(sa), _scale_for_cpu(sb)
            if quick and name not in ("per_row", "per_head", "per_row small"):
                continue
        rng = np.random.default_rng(zlib.crc32(name.encode()))    # same data with --cases
        a = jnp.asarray(rng.standard_normal(sa).astype(np.float32))
        b = jnp.asarray(rng.standard_normal(sb).astype(np.float32))
        kw = dict(kw)
        g = kw.pop("granularity")
        sc = jax.jit(lambda x, y: scmp_jax.sc_matmul(x, y, g, **kw))
        sc_xla = jax.jit(lambda x, y: scmp_jax.sc_matmul(x, y, g, implementation="xla", **kw))
        sc_gather = jax.jit(lambda x, y: scmp_jax.sc_matmul(x, y, g, counts="gather", **kw))
        mm32 = jax.jit(lambda x, y: jnp.einsum("...nd,...md->...nm", x, y,
                                               precision=jax.lax.Precision.DEFAULT))
        mm16 = jax.jit(lambda x, y: jnp.einsum("...nd,...md->...nm", x.astype(jnp.bfloat16),
                                               y.astype(jnp.bfloat16)))
        t_sc = _median_time(lambda: sc(a, b), repeats)
        t_xla = t_sc if not on_gpu else _median_time(lambda: sc_xla(a, b), repeats)
        t_gather = t_sc if not on_gpu else _median_time(lambda: sc_gather(a, b), repeats)
        if on_gpu:     # the two count algorithms must give the same bits
            assert np.array_equal(np.asarray(sc(a, b)).view(np.uint32),
                                  np.asarray(sc_gather(a, b)).view(np.uint32)), name
        t32 = _median_time(lambda: mm32(a, b), repeats)
        t16 = _median_time(lambda: mm16(a, b), repeats)
        lookups = int(np.prod(sa[:-1])) * sb[-2] * sa[-1]
        r = dict(case=name, a=list(sa), b=list(sb), sc_ms=t_sc * 1e3,
                 xla_ms=t_xla * 1e3, gather_ms=t_gather * 1e3, fp32_ms=t32 * 1e3,
                 bf16_ms=t16 * 1e3, sc_over_gather=t_sc / t_gather,
                 glookups_per_s=lookups / t_sc / 1e9,
                 sc_over_xla=t_sc / t_xla, sc_over_fp32=t_sc / t32,
                 sc_over_bf16=t_sc / t16, ref_ms=None, sc_over_ref=None)
        if ref is not None:
            t_ref, out_ref = ref.time(a, b, g, kw, repeats)
            mine = np.asarray(sc(a, b))
            r.update(ref_ms=t_ref * 1e3, sc_over_ref=t_sc / t_ref,
                     same_bits_as_ref=float(np.mean(mine.view(np.uint32)
                                                    == out_ref.view(np.uint32))))
        results.append(r)
        rr = "" if ref is None else f" {r['ref_ms']:>9.2f} {r['sc_over_ref']:>7.3f}"
        print(f"{name:<22} {str(tuple(sa)):>16} {r['sc_ms']:>10.3f} {r['glookups_per_s']:>8.1f} "
              f"{r['sc_over_xla']:>8.3f} {r['sc_over_gather']:>8.3f} {r['sc_over_fp32']:>9.1f} "
              f"{r['sc_over_bf16']:>9.1f}{rr}",
              flush=True)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int_in(1), default=5)
    p.add_argument("--out", default=None,
                   help="JSON result file (default bench/results/sc.json; cpu_sc.json off GPU)")
    p.add_argument("--reference", default=None,
                   help="directory holding a local copy of the scmp_kernels package (GPU only)")
    p.add_argument("--cases", default=None,
                   help="comma-separated case names (default: all): " +
                   ", ".join(c[0] for c in GPU_CASES))
    args = p.parse_args(argv)
    cases = None if args.cases is None else args.cases.split(",")
    unknown = set(cases or ()) - {c[0] for c in GPU_CASES}
    if unknown:
        p.error(f"unknown --cases {sorted(unknown)}")
    dev = jax.devices()[0]
    print(f"jax {jax.__version__}  device {dev.device_kind} ({jax.default_backend()})  "
          f"host {platform.machine()}")
    print(f"{'case':<22} {'a':>16} {'sc ms':>10} {'G lk/s':>8} {'/xla':>8} {'/gather':>8} "
          f"{'/fp32':>9} {'/bf16':>9}"
          + (f" {'ref ms':>9} {'/ref':>7}" if args.reference else ""))
    res = run(args.quick, args.repeats, args.reference, cases)
    write_result(args.out, "sc", "bench", argv, res)


if __name__ == "__main__":
    main()
