"""``python -m bench.fp4_probe [--cases quant,...]``: where the fp4 quantize kernel's
time goes (GPU, device time, (8192, 8192) bf16, MXFP4), as rows of one table.

* ``copy``: XLA ``-x`` (the bandwidth ceiling the issue measures against);
* ``skeleton``: a kernel with the quantize kernel's blocks that only loads the
  words and stores bytes (the layout's own ceiling);
* ``int encoder``: the quantize kernel with the integer e2m1 encoder for every
  rounding mode (the encoder before ``formats.e2m1_encode_even``);
* the default kernel at several tilings.

Notes for each version (prediction, outcome) live in BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from bench.__main__ import device_time, write_json
from scmp_jax._backend import triton_params
from scmp_jax.fp4 import formats as FM
from scmp_jax.fp4 import pallas as P

BF16, I32, U8 = jnp.bfloat16, jnp.int32, jnp.uint8


def _skeleton(x, rows=8, cols=512):
    """Same (R, K/G, G/2) int32-word blocks as ``_pair_call``; codes = low bytes."""
    interp = jax.default_backend() != "gpu"
    R, K = x.shape
    H, NG = 16, cols // 32
    w = jax.lax.bitcast_convert_type(x.reshape(R, K // 2, 2), I32).reshape(R, K // 32, H)

    def kernel(x_ref, c_ref, s_ref):
        v = x_ref[...]
        c_ref[...] = (v ^ (v >> 16)).astype(U8)
        s_ref[...] = jnp.max(v, axis=2).astype(U8)

    return pl.pallas_call(
        kernel, grid=(R // rows, K // 32 // NG),
        in_specs=[pl.BlockSpec((rows, NG, H), lambda i, j: (i, j, 0))],
        out_specs=[pl.BlockSpec((rows, NG, H), lambda i, j: (i, j, 0)),
                   pl.BlockSpec((rows, NG), lambda i, j: (i, j))],
        out_shape=[jax.ShapeDtypeStruct((R, K // 32, H), U8),
                   jax.ShapeDtypeStruct((R, K // 32), U8)],
        interpret=interp, **triton_params(interp, 4))(w)


def _quant(tiling=None):
    return lambda v: P.quantize_fused(v, np.float32(6.0), np.float32(1.0), group_size=32,
                                      scale_dtype="e8m0", rounding=0, tiling=tiling)


def quant_rows(n, repeats):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), BF16)
    rows = []

    def row(case, fn):
        t = device_time(fn, (x,), repeats)
        out = jax.jit(fn)(x)
        moved = x.nbytes + sum(o.nbytes for o in jax.tree_util.tree_leaves(out))
        r = dict(case=case, ms=t * 1e3, gbs=moved / t / 1e9)
        if rows:
            r["pct_of_copy"] = 100 * r["gbs"] / rows[0]["gbs"]
        print(f"{case:<40} {r['ms']:8.4f} ms {r['gbs']:7.0f} GB/s "
              f"{r.get('pct_of_copy', 100):6.1f} %", flush=True)
        rows.append(r)

    row("copy (-x)", lambda v: -v)
    row("skeleton 8x512/4", _skeleton)
    row("default", _quant())
    orig = P._encode
    P._encode = lambda body, r: body(lambda q: FM.e2m1_encode(q, r).astype(I32))
    try:
        row("int encoder 8x512/4", _quant(P.QuantTiling(8, 512, 4)))
    finally:
        P._encode = orig
    for r_, c_, w_ in [(8, 512, 4), (4, 1024, 4), (16, 512, 4), (8, 1024, 4), (16, 256, 4),
                       (8, 512, 8), (16, 1024, 8), (32, 512, 8), (4, 512, 2)]:
        row(f"fast {r_}x{c_}/{w_}", _quant(P.QuantTiling(r_, c_, w_)))
    return rows


def decode_rows(n, repeats):
    """``decode_bf16`` of an (n, n) MXFP4 tensor: bytes moved vs a copy."""
    from scmp_jax import fp4
    from scmp_jax.fp4 import pallas_matmul as MM
    x = jnp.asarray(np.random.default_rng(1).standard_normal((n, n)), BF16)
    t = fp4.quantize(x, "mxfp4")
    rows = []
    for case, fn, args in [("copy bf16 (-x)", lambda v: -v, (x,)),
                           ("decode_bf16 16x1024/4", lambda c, s: MM.decode_bf16(
                               c, s, "e8m0", interpret=jax.default_backend() != "gpu"), (t.codes, t.scale_bytes))]:
        sec = device_time(fn, args, repeats)
        moved = sum(a.nbytes for a in args) + x.nbytes
        rows.append(dict(case=case, ms=sec * 1e3, gbs=moved / sec / 1e9))
        print(f"{case:<40} {sec * 1e3:8.4f} ms {moved / sec / 1e9:7.0f} GB/s", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.fp4_probe", description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="fp4_probe.json")
    p.add_argument("--cases", default="quant,decode")
    args = p.parse_args(argv)
    print(f"jax {jax.__version__}  {jax.devices()[0].device_kind}", flush=True)
    n = 8192 if jax.default_backend() == "gpu" else 256
    cases = args.cases.split(",")
    write_json(args.out, quant=quant_rows(n, args.repeats) if "quant" in cases else [],
               decode=decode_rows(n // 2, args.repeats) if "decode" in cases else [])


if __name__ == "__main__":
    main()
