"""``python -m bench.fp4 [--repeats N] [--out FILE]``: FP4 (SPEC.md section 9) kernel timings.

* quantize+pack of a (8192, 8192) bfloat16 array (MXFP4 and NVFP4 presets)
  vs a measured device copy of the same input bytes (``-x``): bandwidth of
  each (bytes read + written per second) and quantize as % of copy;
* ``QuantLinear`` forward, MXFP4, x (4096, 4096) bf16, weight (4096, 4096)
  (activation quantize + fp4 matmul) vs bf16 ``jnp.matmul``; also the
  matmul alone on pre-quantized activations;
* decode rows N in {1, 8, 16} (K = M = 4096) vs bf16 ``jnp.matmul``.

Default implementation (Pallas on GPU), plus the XLA path for comparison.
Times: back-to-back calls, one sync per sample, median (``bench._median_time``).
Off GPU the shapes shrink to 512 (smoke test only).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from bench.__main__ import _median_time, write_json
from scmp_jax import fp4
from scmp_jax.flax import QuantLinear

BF16 = jnp.bfloat16


def _quantize_rows(n, repeats, rng, impls):
    x = jnp.asarray(rng.standard_normal((n, n)), BF16)
    copy = jax.jit(lambda v: -v)
    t_copy = _median_time(lambda: copy(x), repeats)
    copy_bw = 2 * x.nbytes / t_copy
    rows = [dict(case="copy (-x)", shape=[n, n], ms=t_copy * 1e3, gbs=copy_bw / 1e9)]
    for preset in ("mxfp4", "nvfp4"):
        for impl in impls:
            q = jax.jit(lambda v, p=preset, i=impl: (lambda t: (t.codes, t.scales))(
                fp4.quantize(v, p, implementation=i)))
            t = _median_time(lambda: q(x), repeats)
            codes, scales = q(x)
            moved = x.nbytes + codes.nbytes + scales.nbytes
            rows.append(dict(case=f"quantize {preset} [{impl}]", shape=[n, n], ms=t * 1e3,
                             gbs=moved / t / 1e9, pct_of_copy=100 * moved / t / copy_bw))
    return rows


def _linear_rows(n, k, m, repeats, rng, impls, tag):
    x = jnp.asarray(rng.standard_normal((n, k)), BF16)
    w = (rng.standard_normal((m, k)) * 0.02).astype(np.float32)
    wb = jnp.asarray(w, BF16)
    dense = jax.jit(lambda a, b: jnp.matmul(a, b.T))
    t16 = _median_time(lambda: dense(x, wb), repeats)
    rows = [dict(case=f"{tag} bf16 matmul", shape=[n, k, m], ms=t16 * 1e3)]
    for impl in impls:
        mod, v = QuantLinear.from_dense(jnp.asarray(w), "mxfp4", quant_impl=impl,
                                        matmul_impl=impl)
        fwd = jax.jit(mod.apply)
        t = _median_time(lambda: fwd(v, x), repeats)
        a = fp4.quantize(x, "mxfp4", implementation=impl)
        wt = fp4.FP4Tensor(v["fp4"]["codes"], jax.lax.bitcast_convert_type(
            v["fp4"]["scales"], jnp.float8_e8m0fnu), v["fp4"]["global_scale"], 32, "e8m0",
            "even", (m, k))
        mm = jax.jit(lambda a_, w_, i=impl: fp4.matmul(a_, w_, implementation=i))
        tm = _median_time(lambda: mm(a, wt), repeats)
        rows.append(dict(case=f"{tag} QuantLinear mxfp4 [{impl}]", shape=[n, k, m], ms=t * 1e3,
                         over_bf16=t / t16, matmul_only_ms=tm * 1e3, matmul_over_bf16=tm / t16))
    return rows


def run(repeats=5):
    on_gpu = jax.default_backend() == "gpu"
    big, lin = (8192, 4096) if on_gpu else (512, 512)
    impls = ("pallas", "xla") if on_gpu else ("xla",)
    rng = np.random.default_rng(0)
    rows = _quantize_rows(big, repeats, rng, impls)
    rows += _linear_rows(lin, lin, lin, repeats, rng, impls, "prefill")
    for n in (1, 8, 16):
        rows += _linear_rows(n, lin, lin, repeats, rng, impls, f"decode N={n}")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.fp4", description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="fp4_results.json")
    args = p.parse_args(argv)
    dev = jax.devices()[0]
    print(f"jax {jax.__version__}  device {dev.device_kind} ({jax.default_backend()})")
    rows = run(args.repeats)
    print(f"{'case':<36} {'shape':>18} {'ms':>9} {'GB/s':>8} {'%copy':>6} {'/bf16':>7} "
          f"{'mm ms':>8} {'mm/bf16':>8}")
    for r in rows:
        f = lambda k, fmt: format(r[k], fmt) if r.get(k) is not None else ""
        print(f"{r['case']:<36} {str(tuple(r['shape'])):>18} {r['ms']:>9.3f} "
              f"{f('gbs', '8.0f'):>8} {f('pct_of_copy', '6.1f'):>6} {f('over_bf16', '7.2f'):>7} "
              f"{f('matmul_only_ms', '8.3f'):>8} {f('matmul_over_bf16', '8.2f'):>8}")
    write_json(args.out, results=rows)


if __name__ == "__main__":
    main()
