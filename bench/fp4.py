"""``python -m bench.fp4 [--repeats N] [--out FILE]``: FP4 (SPEC.md section 9) kernel timings.

* quantize+pack of a (8192, 8192) bfloat16 array (MXFP4 and NVFP4 presets)
  vs a measured device copy of the same input bytes (``-x``): bandwidth of
  each (bytes read + written per second) and quantize as % of copy;
* ``QuantLinear`` forward, MXFP4, x (4096, 4096) bf16, weight (4096, 4096)
  (activation quantize + fp4 matmul) vs bf16 ``jnp.matmul``; also the
  matmul alone on pre-quantized activations;
* decode rows N in {1, 8, 16} (K = M = 4096) vs bf16 ``jnp.matmul`` (with
  ``--sweep`` also N = 2, 4); one weight reused, so it stays in L2 (50-60 MB)
  between the unrolled calls;
* ``decode_cold``: decode N in {1, 16} through 16 distinct weights per timed
  call (``bench.device_time_rotating``), so weights stream from HBM as in a
  multi-layer model (where fp4's quarter of the bytes can show).

Default implementation (Pallas on GPU), plus the XLA path for comparison.
Times are device times (``bench.device_time``: 10 calls unrolled in one jitted
program (the quantize rows and their copy baseline alike, so neither has
an advantage of fewer calls), median of ``--repeats``), so
decode-sized calls are not measured as Python dispatch. "1st s": seconds of
the first call of the timing program (its compile), to spot slow compiles.
``--sweep`` adds kernel tilings (the data behind the heuristics in
``scmp_jax.fp4.matmul.heuristic`` / ``scmp_jax.fp4.quantize.pallas.QuantTiling``).
Off GPU the shapes shrink to 512 (smoke test only).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from bench.__main__ import device_time, device_time_rotating
from bench.common import write_result
from scmp_jax import fp4
from scmp_jax._src.dispatch import resolve
from scmp_jax.cli_tools.argtypes import int_in
from scmp_jax.flax import QuantLinear
from scmp_jax.fp4.matmul import pallas as MP
from scmp_jax.fp4.matmul.tilings import DequantTiling, FusedTiling, GemvTiling
from scmp_jax.fp4.quantize import pallas as QP

BF16 = jnp.bfloat16


def _quantize_rows(n, repeats, rng, impls, sweep):
    x = jnp.asarray(rng.standard_normal((n, n)), BF16)
    t_copy = device_time(lambda v: -v, (x,), repeats)             # 10 calls, as the rows
    copy_bw = 2 * x.nbytes / t_copy
    rows = _Rows()
    rows.append(dict(case="copy (-x)", shape=[n, n], ms=t_copy * 1e3, gbs=copy_bw / 1e9))

    def row(case, fn):
        info = {}
        t = device_time(fn, (x,), repeats, info=info)       # same 10 calls as the copy
        codes, scales = jax.jit(fn)(x)
        moved = x.nbytes + codes.nbytes + scales.nbytes
        return dict(case=case, shape=[n, n], ms=t * 1e3, gbs=moved / t / 1e9,
                    pct_of_copy=100 * moved / t / copy_bw, first_s=info["first_s"])

    for preset in ("mxfp4", "nvfp4"):
        for impl in impls:
            rows.append(row(f"quantize {preset} [{impl}]", lambda v, p=preset, i=impl: (
                lambda t: (t.codes, t.scales))(fp4.quantize(v, p, implementation=i))))
    if sweep:
        for r_, c_, w_ in [(8, 512, 4), (4, 512, 4), (8, 256, 4), (4, 256, 4), (2, 512, 4),
                           (8, 512, 2), (4, 1024, 4), (16, 256, 4)]:
            til = QP.QuantTiling(rows=r_, cols=c_, warps=w_)
            rows.append(row(f"  sweep quantize mxfp4 {r_}x{c_} w{w_}",
                            lambda v, t=til: QP.quantize_fused(
                                v, np.float32(6.0), np.float32(1.0), group_size=32,
                                scale_dtype="e8m0", rounding=0, tiling=t,
                                backend=resolve("pallas", op="bench.fp4"))))
    return rows


def _linear_rows(n, k, m, repeats, rng, impls, tag, tilings=()):
    x = jnp.asarray(rng.standard_normal((n, k)), BF16)
    w = (rng.standard_normal((m, k)) * 0.02).astype(np.float32)
    wb = jnp.asarray(w, BF16)
    t16 = device_time(lambda a, b: jnp.matmul(a, b.T), (x, wb), repeats)
    rows = _Rows()
    rows.append(dict(case=f"{tag} bf16 matmul", shape=[n, k, m], ms=t16 * 1e3))
    a = fp4.quantize(x, "mxfp4")
    for impl in impls:
        mod, v = QuantLinear.from_dense(jnp.asarray(w), "mxfp4", quant_impl=impl,
                                        matmul_impl=impl)
        info = {}
        t = device_time(mod.apply, (v, x), repeats, info=info)
        wt = fp4.FP4Tensor(v["fp4"]["codes"], jax.lax.bitcast_convert_type(
            v["fp4"]["scales"], jnp.float8_e8m0fnu), v["fp4"]["global_scale"], 32, "e8m0",
            "even", (m, k))
        tm = device_time(lambda a_, w_, i=impl: fp4.matmul(a_, w_, implementation=i),
                         (a, wt), repeats)
        rows.append(dict(case=f"{tag} QuantLinear mxfp4 [{impl}]", shape=[n, k, m], ms=t * 1e3,
                         over_bf16=t / t16, matmul_only_ms=tm * 1e3, matmul_over_bf16=tm / t16,
                         first_s=info["first_s"]))
    if tilings:
        wt4 = fp4.quantize(jnp.asarray(w), "mxfp4")
        ops = lambda t_: (t_.codes, t_.scale_bytes, t_.global_scale, t_.scale_dtype)
        for til in tilings:
            try:
                tm = device_time(lambda a_, w_, t=til: MP.matmul(
                    ops(a_), ops(w_), tiling=t, backend=resolve("pallas", op="bench.fp4")),
                    (a, wt4), repeats)
            except Exception as e:          # a tiling Triton cannot compile: say so, go on
                rows.append(dict(case=f"  sweep {til}", shape=[n, k, m], ms=float("nan"),
                                 error=str(e)[:120]))
                continue
            rows.append(dict(case=f"  sweep {til}", shape=[n, k, m], ms=tm * 1e3,
                             matmul_over_bf16=tm / t16))
    return rows


_FT = FusedTiling
PREFILL_SWEEP = [_FT(256, 128, 128, 8, 3), _FT(256, 128, 128, 8, 3, grouped=True),
                 _FT(128, 256, 128, 8, 3, grouped=True), _FT(128, 128, 128, 8, 3, grouped=True),
                 DequantTiling()]
DECODE_SWEEP = [_FT(16, 128, 256, 4, 3, 16, grouped=True),
                _FT(16, 64, 256, 4, 3, 16, grouped=True),
                _FT(16, 128, 512, 4, 3, 8, grouped=True)] + [
    GemvTiling(bm, bk, w, 3) for bm, bk, w in [(32, 256, 4), (16, 512, 4), (64, 256, 4)]]


def _print_row(r):
    f = lambda k, fmt: format(r[k], fmt) if r.get(k) is not None else ""
    print(f"{r['case'][:60]:<36} {str(tuple(r['shape'])):>18} {r['ms']:>9.3f} "
          f"{f('gbs', '8.0f'):>8} {f('pct_of_copy', '6.1f'):>6} {f('over_bf16', '7.2f'):>7} "
          f"{f('matmul_only_ms', '8.3f'):>8} {f('matmul_over_bf16', '8.2f'):>8} "
          f"{f('first_s', '7.1f'):>7}", flush=True)


class _Rows(list):
    """Result rows, printed as they arrive (a long sweep shows progress)."""

    def append(self, r):
        _print_row(r)
        super().append(r)


def _decode_cold_rows(n, k, m, layers, repeats, rng):
    """Decode N=n through ``layers`` distinct (m, k) weights per timed call (16 bf16
    weights of 4096^2 = 512 MB, 128 MB as MXFP4: both far past the 50-60 MB L2),
    so each weight comes from HBM as in a multi-layer model; the plain decode
    rows reuse one weight, which stays in L2 between the unrolled calls."""
    x = jnp.asarray(rng.standard_normal((n, k)), BF16)
    ws = [(rng.standard_normal((m, k)) * 0.02).astype(np.float32) for _ in range(layers)]
    t16 = device_time_rotating(lambda a, b: jnp.matmul(a, b.T),
                               [(x, jnp.asarray(w, BF16)) for w in ws], repeats)
    rows = _Rows()
    tag = f"decode N={n} x{layers} weights"
    rows.append(dict(case=f"{tag} bf16", shape=[n, k, m], ms=t16 * 1e3))
    mods = [QuantLinear.from_dense(jnp.asarray(w), "mxfp4") for w in ws]
    info = {}
    t = device_time_rotating(mods[0][0].apply, [(v, x) for _, v in mods], repeats, info=info)
    rows.append(dict(case=f"{tag} QuantLinear mxfp4", shape=[n, k, m], ms=t * 1e3,
                     over_bf16=t / t16, first_s=info["first_s"]))
    return rows


def run(repeats=5, sweep=False, cases=("quantize", "prefill", "decode", "decode_cold")):
    on_gpu = jax.default_backend() == "gpu"
    big, lin = (8192, 4096) if on_gpu else (512, 512)
    impls = ("pallas", "xla") if on_gpu else ("xla",)
    sweep = sweep and on_gpu
    rng = np.random.default_rng(0)
    rows = []
    if "quantize" in cases:
        rows += _quantize_rows(big, repeats, rng, impls, sweep)
    if "prefill" in cases:
        rows += _linear_rows(lin, lin, lin, repeats, rng, impls, "prefill",
                             PREFILL_SWEEP if sweep else ())
    if "decode" in cases:
        for n in (1, 2, 4, 8, 16) if sweep else (1, 8, 16):
            rows += _linear_rows(n, lin, lin, repeats, rng, impls, f"decode N={n}",
                                 DECODE_SWEEP if sweep else ())
    if "decode_cold" in cases:
        for n in (1, 16):
            rows += _decode_cold_rows(n, lin, lin, 16 if on_gpu else 2, repeats, rng)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.fp4", description=__doc__)
    p.add_argument("--repeats", type=int_in(1), default=5)
    p.add_argument("--out", default=None,
                   help="JSON result file (default bench/results/fp4.json; cpu_fp4.json off GPU)")
    p.add_argument("--sweep", action="store_true", help="also time kernel tilings (GPU)")
    p.add_argument("--cases", default="quantize,prefill,decode,decode_cold",
                   help="comma-separated subset of quantize,prefill,decode,decode_cold")
    args = p.parse_args(argv)
    dev = jax.devices()[0]
    print(f"jax {jax.__version__}  device {dev.device_kind} ({jax.default_backend()})")
    print(f"{'case':<36} {'shape':>18} {'ms':>9} {'GB/s':>8} {'%copy':>6} {'/bf16':>7} "
          f"{'mm ms':>8} {'mm/bf16':>8} {'1st s':>7}", flush=True)
    rows = run(args.repeats, args.sweep, tuple(args.cases.split(",")))
    write_result(args.out, "fp4", "bench.fp4", argv, rows)


if __name__ == "__main__":
    main()
