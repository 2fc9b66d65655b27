"""``python -m bench.kernels [--cases ...] [--calls N] [--out FILE]``: where a call's device
time goes, kernel by kernel.

Runs each case's jitted call ``--calls`` times under ``jax.profiler.trace``
(a Perfetto trace, read back with the standard library), and sums the device
events (kernels, copies) per name over the calls. Prints, per case, one row
per kernel name: calls of it per case call, microseconds per case call and
share of the busy time; then the busy time (sum of device events), the span
(first device event's start to the last one's end, per call) and the host
time per call. ``span - busy`` is the device idle between kernels (launch
gaps). The trace's own overhead inflates the span a little; the device times
in ``bench`` / ``bench.fp4`` are the numbers to quote, this tool says what
they are made of.

Cases: ``sc_per_head`` / ``sc_per_row`` (the SC bench's shapes, default config),
``decodeN`` (``QuantLinear`` MXFP4 forward, N rows, K = M = 4096; any N),
``prefill`` (N = K = M = 4096). Off GPU the trace has no device events
(CPU smoke run only: shapes shrink).
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.__main__ import write_json

__all__ = ["device_events", "profile", "build_case"]


def device_events(trace_dir: str):
    """(events, device line names): complete events (name, ts us, dur us) on the
    device streams of the Perfetto trace that ``jax.profiler.trace(...,
    create_perfetto_trace=True)`` wrote under ``trace_dir`` (processes named
    ``/device:...``; their threads named ``Stream...`` when there are such, else
    all their threads)."""
    paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise RuntimeError(f"no perfetto trace under {trace_dir}")
    with gzip.open(max(paths, key=os.path.getmtime)) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    meta = lambda kind: {(e["pid"], e.get("tid")): str(e["args"].get("name", ""))
                         for e in events if e.get("ph") == "M" and e.get("name") == kind}
    dev = {pid for (pid, _), n in meta("process_name").items() if n.startswith("/device:")}
    threads = {k: n for k, n in meta("thread_name").items() if k[0] in dev}
    # the device lines of a GPU trace: one per stream, plus "XLA Modules" / "XLA Ops"
    # summaries over the same time; keep the streams when the trace names them
    streams = {k for k, n in threads.items() if n.startswith("Stream")}
    keep = lambda e: ((e["pid"], e.get("tid")) in streams if streams else e.get("pid") in dev)
    ev = [(e["name"], float(e["ts"]), float(e["dur"])) for e in events
          if e.get("ph") == "X" and "dur" in e and keep(e)]
    return ev, sorted(set(threads.values()))


def profile(fn, args, calls: int = 5):
    """Kernel table of ``fn(*args)`` (jitted by the caller), ``calls`` traced
    calls after one warm call: dict(rows=[(name, count per call, us per call)],
    busy_us, span_us, host_us (per call), lines (the device lines seen))."""
    jax.block_until_ready(fn(*args))
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            t0 = time.perf_counter()
            for _ in range(calls):
                jax.block_until_ready(fn(*args))      # calls apart: spans do not overlap
            host = (time.perf_counter() - t0) / calls
        ev, lines = device_events(d)
    tot, cnt = collections.Counter(), collections.Counter()
    for name, _, dur in ev:
        tot[name] += dur
        cnt[name] += 1
    busy = sum(tot.values()) / calls
    span = (max(t + u for _, t, u in ev) - min(t for _, t, _ in ev)) / calls if ev else 0.0
    rows = [(n, cnt[n] / calls, tot[n] / calls) for n, _ in tot.most_common()]
    return dict(rows=rows, busy_us=busy, span_us=span, host_us=host * 1e6, lines=lines)


def build_case(name: str, on_gpu: bool):
    """(jitted fn, args) of a case (see the module docstring)."""
    import scmp_jax
    from scmp_jax.flax import QuantLinear
    rng = np.random.default_rng(0)
    if name.startswith("sc_"):
        shapes = {"sc_per_head": ((32, 1024, 128), "per_head"),
                  "sc_per_row": ((2048, 4096), "per_row")}
        shape, gran = shapes[name]
        if not on_gpu:
            shape = (2, 64, 32) if len(shape) == 3 else (64, 128)
        a = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        b = jnp.asarray(rng.standard_normal(shape if gran == "per_head" else
                                            (shape[1], shape[1])), jnp.float32)
        return jax.jit(lambda x, y: scmp_jax.sc_matmul(x, y, gran)), (a, b)
    k = 4096 if on_gpu else 256
    if name == "prefill":
        n = k
    elif name.startswith("decode"):
        n = int(name[len("decode"):])
    else:
        raise ValueError(f"unknown case {name!r}")
    x = jnp.asarray(rng.standard_normal((n, k)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((k, k)) * 0.02, jnp.float32)
    mod, v = QuantLinear.from_dense(w, "mxfp4")
    return jax.jit(mod.apply), (v, x)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__)
    p.add_argument("--cases", default="sc_per_head,decode1,decode8,decode16")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--top", type=int, default=12, help="rows per case")
    p.add_argument("--out", default="kernels.json")
    args = p.parse_args(argv)
    on_gpu = jax.default_backend() == "gpu"
    print(f"jax {jax.__version__}  device {jax.devices()[0].device_kind}", flush=True)
    out = {}
    for case in args.cases.split(","):
        fn, fargs = build_case(case, on_gpu)
        r = profile(fn, fargs, args.calls)
        out[case] = r
        print(f"\n{case}: busy {r['busy_us']:.1f} us, span {r['span_us']:.1f} us, "
              f"host {r['host_us']:.1f} us per call; device lines {r['lines']}", flush=True)
        for n, c, us in r["rows"][:args.top]:
            share = 100 * us / r["busy_us"] if r["busy_us"] else 0.0
            print(f"  {us:10.1f} us {share:5.1f} %  x{c:<4g} {n[:110]}", flush=True)
        if len(r["rows"]) > args.top:
            rest = sum(us for _, _, us in r["rows"][args.top:])
            print(f"  {rest:10.1f} us in {len(r['rows']) - args.top} more names", flush=True)
    write_json(args.out, cases=out)


if __name__ == "__main__":
    main()
