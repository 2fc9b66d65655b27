"""``python -m bench.fp4_probe [--cases quant,...]``: where the fp4 quantize kernel's
time goes (GPU, device time, (8192, 8192) bf16, MXFP4), as rows of one table.

* ``copy``: XLA ``-x`` (the bandwidth ceiling the quantize kernel is measured against);
* ``skeleton``: a kernel with the quantize kernel's blocks that only loads the
  words and stores bytes (the layout's own ceiling);
* the quantize kernel with e2m1 codes by thresholds (e8m0 scales, any global
  scale) vs its older forms: one multiply per element (power-of-two divisors)
  or IEEE ``div.rn`` per element (``QuantTiling(thresholds=False)``), for
  gs = 1, the MXFP4 preset's gs = 1/3 and NVFP4 (e4m3 scales: division);
* ``quant_sweep``: the threshold kernel at several tilings (with ``quant``: both);
  every row checks its codes and scales equal to its format's first row;
* ``gemv``: decode rows N = 1, 2: quantize + gemv matmul vs ``linear_gemv``
  (activation quantized inside the gemv kernel) at several tilings.
* ``anatomy``: where the N = 1 cold decode time goes: the gemv kernel on
  activation codes, the integer-dot gemv (``Dp4aTiling``), a
  skeleton of its grid and weight blocks that only sums the loaded bytes (several bm / split; with and without the XLA split sum),
  and XLA reading the same bytes.
* ``floor``: the decode floor, N = 1, 8, 16, cold and warm: bf16, the
  QuantLinear path, an almost empty launch, the activation quantize alone, the
  weight-read skeleton and the chain quantize -> skeleton (``floor_rows``).
* ``layouts``: the same N = 1 cold decode with one step per program (``bk = K /
  split``, ``LAYOUTS``): skeleton, dp4a on codes, ``linear_gemv`` dp4a.
* ``grouped``: decode N = 8, 16 cold on codes: the grouped fused kernel at
  ``GROUPED`` tilings (fewer K ranges, larger programs).
* ``compile``: first-call seconds of programs with 1 or 4 traced-global-scale
  quantize calls, with and without the staged threshold params.
* ``params``: seconds to compute the concrete kernel parameters on the host
  (``quantize.params._host_params``, NumPy); ``params_soft``: also the first
  call of the softfloat program (tens of seconds on a GPU machine's CPU).

Kernel parameters staged with constant scalars made XLA GPU constant-fold the
softfloat threshold search (minutes of compile); ``quantize.params.params``
computes concrete scalars at trace time instead.

Notes for each version (prediction, outcome) live in BENCHMARKS.md.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from bench.__main__ import device_time, device_time_rotating, write_json
from scmp_jax._src.dispatch import resolve, triton_params
from scmp_jax.cli_tools.argtypes import int_in
from scmp_jax.fp4.linear import dequant as LD
from scmp_jax.fp4.linear import gemv as LG
from scmp_jax.fp4.matmul import heuristic as H
from scmp_jax.fp4.matmul import pallas as MP
from scmp_jax.fp4.matmul.schedules import dequant as SD
from scmp_jax.fp4.matmul.tilings import Dp4aTiling, FusedTiling, GemvTiling
from scmp_jax.fp4.quantize import pallas as QP
from scmp_jax.fp4.quantize import params as PR

BF16, I32, U8 = jnp.bfloat16, jnp.int32, jnp.uint8


def _backend():
    """The Pallas backend as ``implementation="pallas"`` resolves it here."""
    return resolve("pallas", op="bench.fp4_probe")


def quantize_fused(*a, **k):
    return QP.quantize_fused(*a, backend=_backend(), **k)


def matmul(a, w, tiling=None):
    return MP.matmul(a, w, backend=_backend(), tiling=tiling)


def linear_gemv(*a, **k):
    return LG.linear_gemv(*a, backend=_backend(), **k)


def _skeleton(x, rows=8, cols=512):
    """Same (R, K/G, G/2) int32-word blocks as ``quantize.pallas.pair_call``;
    codes = low bytes."""
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


def _quant(tiling=None, gs=1.0, scale_dtype="e8m0", group=32, ss=6.0):
    return lambda v: quantize_fused(v, np.float32(ss), np.float32(gs), group_size=group,
                                      scale_dtype=scale_dtype, rounding=0, tiling=tiling)


def quant_rows(n, repeats, main=True, sweep=False, reps=10):
    """Rows as described in the module docstring; every quantize row's codes and
    scales are checked equal to the first quantize row's of the same format
    (``same`` column), so a faster form that changed bits shows."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), BF16)
    rows, first = [], {}

    def row(case, fn, fmt=None):
        info = {}
        t = device_time(fn, (x,), repeats, reps=reps, info=info)
        out = [np.asarray(o) for o in jax.tree_util.tree_leaves(jax.jit(fn)(x))]
        moved = x.nbytes + sum(o.nbytes for o in out)
        r = dict(case=case, ms=t * 1e3, gbs=moved / t / 1e9, first_s=info["first_s"])
        if fmt:
            ref = first.setdefault(fmt, out)
            r["same"] = all((a == b).all() for a, b in zip(ref, out))
        if rows:
            r["pct_of_copy"] = 100 * r["gbs"] / rows[0]["gbs"]
        print(f"{case:<52} {r['ms']:8.4f} ms {r['gbs']:7.0f} GB/s "
              f"{r.get('pct_of_copy', 100):6.1f} %  same={r.get('same', '-')} "
              f"(first call {r['first_s']:.1f} s)", flush=True)
        rows.append(r)

    row(f"copy (-x) reps={reps}", lambda v: -v)
    mx = dict(gs=1 / 3, ss=4.0)                  # the MXFP4 preset: p = 2^k / 3
    nv = dict(gs=1.0, ss=6.0, scale_dtype="e4m3", group=16)
    if main:
        row("skeleton 8x512/4", _skeleton)
        row("mxfp4 gs=1/3 thresholds (default: static params)", _quant(**mx), "mx")
        row("mxfp4 gs=1/3 thresholds, params read in kernel", _quant(
            QP.QuantTiling(static_params=False), **mx), "mx")
        row("mxfp4 gs=1/3 div.rn", _quant(QP.QuantTiling(thresholds=False), **mx), "mx")
        row("mxfp4 gs=1 thresholds", _quant(), "mx1")
        row("mxfp4 gs=1 power-of-two multiply", _quant(QP.QuantTiling(thresholds=False)), "mx1")
        row("nvfp4 gs=1 div.rn (e4m3: no threshold branch)", _quant(**nv), "nv")
        row("nvfp4 gs=1 div.rn, params read in kernel", _quant(
            QP.QuantTiling(static_params=False), **nv), "nv")
        nv7 = dict(nv, gs=0.7)
        row("nvfp4 gs=0.7 div.rn", _quant(**nv7), "nv7")
    if not sweep:
        return rows
    for r_, c_, w_ in [(2, 1024, 2), (4, 512, 2), (4, 1024, 4), (8, 512, 4), (4, 1024, 2),
                       (4, 512, 4), (2, 512, 1), (8, 1024, 8), (16, 512, 8)]:
        til = QP.QuantTiling(r_, c_, w_)
        row(f"mxfp4 gs=1/3 thresholds {r_}x{c_}/{w_}", _quant(til, **mx), "mx")
        row(f"nvfp4 gs=1 {r_}x{c_}/{w_}", _quant(til, **nv), "nv")
    return rows


def gemv_rows(repeats, k=4096):
    """Decode rows N = 1, 2 (K = M = k, MXFP4), every operand a jit argument (as
    in a jitted model, where weights, scales and global scales are variables):
    bf16 matmul vs ``fp4.quantized_matmul`` (the QuantLinear path) vs quantize +
    gemv matmul (two launches) vs ``linear_gemv`` (activation quantized in the
    gemv kernel; split 1: one launch, alpha in the kernel; split > 1: + XLA's
    sum) at several tilings (bm, bk, split)."""
    from scmp_jax import fp4
    r = np.random.default_rng(3)
    w = jnp.asarray(r.standard_normal((k, k)) * 0.02, BF16)
    wt = fp4.quantize(w, "mxfp4")
    cfg = fp4.MXFP4
    wargs = (wt.codes, wt.scales, jnp.float32(wt.global_scale), jnp.float32(cfg.global_scale))
    tensor = lambda c, s, g: fp4.FP4Tensor(c, s, g, 32, "e8m0", "even", (k, k))
    ops = lambda c, s, g: (c, jax.lax.bitcast_convert_type(s, U8), g, "e8m0")
    rows = []

    def row(case, fn, args):
        info = {}
        sec = device_time(fn, args, repeats, info=info)
        rows.append(dict(case=case, ms=sec * 1e3, first_s=info["first_s"]))
        print(f"{case:<48} {sec * 1e3:8.4f} ms  (first call {info['first_s']:.1f} s)", flush=True)

    for n, tilings in [(1, [(32, 256, 16), (32, 256, 4), (32, 256, 1), (16, 256, 16),
                            (16, 256, 1), (16, 512, 1), (64, 256, 16), (64, 256, 1)]),
                       (2, [(64, 256, 16), (32, 256, 16), (64, 256, 1), (32, 256, 1)])]:
        x = jnp.asarray(r.standard_normal((n, k)), BF16)
        row(f"N={n} bf16 matmul", lambda a, b: jnp.matmul(a, b.T), (x, w))
        row(f"N={n} QuantLinear path (fp4.quantized_matmul)",
            lambda a, c, s, g, ga: fp4.quantized_matmul(a, tensor(c, s, g), cfg, global_scale=ga),
            (x,) + wargs)
        row(f"N={n} quantize + matmul (2 launches)",
            lambda a, c, s, g, ga: fp4.matmul(fp4.quantize(a, cfg, global_scale=ga),
                                              tensor(c, s, g)), (x,) + wargs)
        for bm, bk, sp in tilings:
            t = GemvTiling(bm, bk, 4, 3, sp)
            row(f"N={n} linear_gemv {bm}x{bk} s{sp}", lambda a, c, s, g, ga, t=t: linear_gemv(
                a, np.float32(cfg.scale_scale), ga, ops(c, s, g), group_size=32,
                scale_dtype="e8m0", rounding=0, tiling=t), (x,) + wargs)
    return rows


def _cold_weights(r, k, layers):
    """``layers`` distinct (k, k) weights for the cold decode rows (together past
    the L2): bfloat16, their MXFP4 tensors, and (codes, scale bytes, global
    scale) of each."""
    from scmp_jax import fp4
    wf = [jnp.asarray(r.standard_normal((k, k)) * 0.02, BF16) for _ in range(layers)]
    wq = [fp4.quantize(w, "mxfp4") for w in wf]
    return wf, wq, [(t.codes, t.scale_bytes, t.global_scale) for t in wq]


def _warm_time(fn, sets, repeats, info=None):
    """``device_time`` of ``fn`` on ``sets[0]``: one operand set reused (L2-resident)."""
    return device_time(fn, sets[0], repeats, info=info)


def _rotating_row(rows, repeats, case, fn, sets, ref=None, timer=device_time_rotating):
    """Times ``fn`` over ``sets`` (``timer``: ``device_time_rotating``, or
    ``_warm_time`` for the first set reused), appends and prints the
    row (with its ratio to ``ref`` seconds); a kernel that does not compile is
    printed as FAILED and skipped. Returns the seconds or None."""
    info = {}
    try:
        sec = timer(fn, sets, repeats, info=info)
    except Exception as e:                       # a tiling that does not compile
        print(f"{case:<52} FAILED {type(e).__name__}: {str(e)[:200]}", flush=True)
        return None
    rows.append(dict(case=case, ms=sec * 1e3, first_s=info.get("first_s"),
                     over_bf16=None if ref is None else sec / ref))
    extra = "" if ref is None else f" {sec / ref:6.2f}x bf16"
    print(f"{case:<52} {sec * 1e3:8.4f} ms{extra}  (first {info.get('first_s', 0):.1f} s)",
          flush=True)
    return sec


def _gemv_skeleton(wc3, ws, bm, split, bk=256, warps=4, stages=3, act=None):
    """A kernel with the gemv schedule's grid and weight blocks ((bm, K/G/split, G/2)
    bytes, (bm, K/G/split) scale bytes per program, ``bk`` elements per step) that
    only sums the bytes it loads -> float32 (split, 1, M) partials: the memory and
    launch floor of that layout, without decode or activation work. ``act``
    (optional, (N, K/2) uint8 activation codes): each program also loads and sums
    its K range of them (what any matmul program must read), so the kernel
    depends on the launch that wrote them."""
    Mp, ng_t, H = wc3.shape
    ng_s, ng = ng_t // split, bk // (2 * H)

    def kernel(wc_ref, ws_ref, *rest):
        *a_ref, o_ref = rest
        def step(s, acc):
            c = wc_ref[:, pl.ds(s * ng, ng), :].astype(I32)
            sw = ws_ref[:, pl.ds(s * ng, ng)].astype(I32)
            return acc + jnp.sum(jnp.sum(c, axis=2) + sw, axis=1)
        acc = jax.lax.fori_loop(0, ng_s // ng, step, jnp.zeros((bm,), I32))
        if a_ref:
            acc = acc + jnp.sum(a_ref[0][...].astype(I32))
        o_ref[0, :] = acc.astype(jnp.float32)

    interp = jax.default_backend() != "gpu"
    in_specs = [pl.BlockSpec((bm, ng_s, H), lambda j, s: (j, s, 0)),
                pl.BlockSpec((bm, ng_s), lambda j, s: (j, s))]
    args = (wc3, ws)
    if act is not None:
        in_specs.append(pl.BlockSpec((act.shape[0], ng_s * H), lambda j, s: (0, s)))
        args += (act,)
    return pl.pallas_call(
        kernel, grid=(Mp // bm, split), in_specs=in_specs,
        out_specs=pl.BlockSpec((None, 1, bm), lambda j, s: (s, 0, j)),
        out_shape=jax.ShapeDtypeStruct((split, 1, Mp), jnp.float32),
        interpret=interp, **triton_params(interp, warps, stages))(*args)


def _tiny_kernel(x):
    """One program that loads 16 x 128 activation elements and writes 128 floats:
    the device time of a launch that does (almost) nothing."""
    interp = jax.default_backend() != "gpu"
    n = min(16, x.shape[0])

    def kernel(x_ref, o_ref):
        o_ref[...] = jnp.sum(x_ref[...].astype(jnp.float32), axis=0)

    return pl.pallas_call(
        kernel, grid=(1,), in_specs=[pl.BlockSpec((n, 128), lambda i: (0, 0))],
        out_specs=pl.BlockSpec((128,), lambda i: (0,)),
        out_shape=jax.ShapeDtypeStruct((128,), jnp.float32),
        interpret=interp, **triton_params(interp, 4))(x)


#: (bm, split, warps) of the floor rows' skeletons: one step per program (bk = K / split)
FLOOR_LAYOUTS = [(16, 1, 8), (64, 4, 8), (32, 2, 8)]


def floor_rows(repeats, k=4096, layers=16):
    """The decode floor, every row in one process, N = 1, 8, 16, cold
    (``layers`` distinct weights per timed call, from HBM) and warm (one weight,
    L2-resident): the bf16 matmul and the QuantLinear path against the parts any
    fp4 decode must run: one almost empty launch; the activation quantize alone;
    the weight bytes loaded and summed (``_gemv_skeleton`` at ``FLOOR_LAYOUTS``, the
    K ranges' partials added by XLA where split > 1); and the two-launch chain
    quantize -> skeleton reading the activation codes (the floor of a decode
    whose activation is quantized once, by its own launch)."""
    from scmp_jax import fp4
    r = np.random.default_rng(9)
    cfg = fp4.MXFP4
    wf, wq, _ = _cold_weights(r, k, layers)
    codes3 = lambda c: c.reshape(c.shape[0], -1, 16)
    rows = []
    q = lambda v, c, s, g: fp4.quantized_matmul(
        v, fp4.FP4Tensor(c, s, g, 32, "e8m0", "even", (k, k)), cfg)

    def skel(bm, sp, w, act=None):
        def f(c, s):
            out = _gemv_skeleton(codes3(c), s, bm, sp, bk=k // sp, warps=w, stages=1, act=act)
            return out[0] if sp == 1 else out.sum(axis=0)
        return f

    def chain(bm, sp, w):
        return lambda v, c, s: skel(bm, sp, w, fp4.quantize(v, cfg).codes)(c, s)

    layouts = [(bm, sp, w) for bm, sp, w in FLOOR_LAYOUTS if k // sp >= 256 and k >= bm]
    for n in (1, 8, 16):
        x = jnp.asarray(r.standard_normal((n, k)), BF16)
        for temp, ws_, timer in (("cold", wq, device_time_rotating), ("warm", wq[:1], _warm_time)):
            tag = f"N={n} {temp}"
            row = lambda case, fn, sets, ref=None, timer=timer: _rotating_row(
                rows, repeats, case, fn, sets, ref, timer)
            sets = lambda *a, full=False, ws_=ws_: [
                a + ((t.codes, t.scales, t.global_scale) if full else (t.codes, t.scale_bytes))
                for t in ws_]
            bsets = [(x, w) for w in wf[:len(ws_)]]
            ref = row(f"{tag} bf16 matmul", lambda v, w: jnp.matmul(v, w.T), bsets)
            row(f"{tag} QuantLinear path (default)", q, sets(x, full=True), ref)
            xs = [(x,)] * len(wq)                          # as many calls as the weight rows
            row(f"{tag} one almost empty launch", _tiny_kernel, xs, ref)
            row(f"{tag} activation quantize alone", lambda v: fp4.quantize(v, cfg).codes,
                xs, ref)
            for bm, sp, w in layouts:
                lay = f"{bm}x{k // sp} s{sp} w{w}"
                row(f"{tag} skeleton {lay}", skel(bm, sp, w), sets(), ref)
                row(f"{tag} quantize -> skeleton {lay}", chain(bm, sp, w), sets(x), ref)
    return rows


def anatomy_rows(repeats, k=4096, layers=16):
    """Where the N = 1 cold decode time goes (``layers`` distinct MXFP4 weights per
    timed call, from HBM): bf16 matmul; the QuantLinear path; the gemv kernel on
    activation codes (no in-kernel quantization); ``_gemv_skeleton`` (bytes
    loaded and summed, no decode) at several (bm, split), its partials alone
    and with the XLA sum over the K ranges; XLA reading the same bytes."""
    from scmp_jax import fp4
    r = np.random.default_rng(6)
    cfg = fp4.MXFP4
    wf, wq, wsets = _cold_weights(r, k, layers)
    x = jnp.asarray(r.standard_normal((1, k)), BF16)
    a = fp4.quantize(x, cfg)
    ops = lambda c, s, g: (c, s, g, "e8m0")
    codes3 = lambda c: c.reshape(c.shape[0], -1, 16)
    rows = []
    row = lambda case, fn, sets, ref=None: _rotating_row(rows, repeats, case, fn, sets, ref)

    ref = row("N=1 cold bf16 matmul", lambda v, w: jnp.matmul(v, w.T), [(x, w) for w in wf])
    row("N=1 cold QuantLinear path (default)", lambda v, c, s, g: fp4.quantized_matmul(
        v, fp4.FP4Tensor(c, s, g, 32, "e8m0", "even", (k, k)), cfg),
        [(x, t.codes, t.scales, t.global_scale) for t in wq], ref)
    t_def = H.choose(1, k, k, 32, 32, gpu=True)[1]
    row(f"N=1 cold gemv on activation codes {t_def.bm}x{t_def.bk} s{t_def.split}",
        lambda c, s, g: matmul((a.codes, a.scale_bytes, a.global_scale, "e8m0"),
                                 ops(c, s, g), tiling=t_def), wsets, ref)
    sp = min(16, k // 256)
    for bm, bk, split in [(32, 256, sp), (64, 256, sp), (32, 512, max(1, sp // 2))]:
        t = Dp4aTiling(bm, bk, 4, 3, split)
        row(f"N=1 cold linear_gemv dp4a {bm}x{bk} s{split}", lambda v, c, s, g, t=t:
            linear_gemv(v, np.float32(cfg.scale_scale), np.float32(cfg.global_scale),
                          ops(c, s, g), group_size=32, scale_dtype="e8m0", rounding=0,
                          tiling=t), [(x,) + w for w in wsets], ref)
    t = Dp4aTiling(32, 256, 4, 3, sp)
    row(f"N=1 cold gemv dp4a on activation codes 32x256 s{sp}",
        lambda c, s, g: matmul((a.codes, a.scale_bytes, a.global_scale, "e8m0"),
                                 ops(c, s, g), tiling=t), wsets, ref)
    for bm, sp in [(32, 16), (16, 16), (64, 16), (128, 16), (32, 4), (32, 1), (128, 1)]:
        if k < 256 * sp or k < bm:                  # the CPU smoke run's small shapes
            continue
        row(f"N=1 cold skeleton {bm}x256 s{sp} partials", lambda c, s, g, bm=bm, sp=sp:
            _gemv_skeleton(codes3(c), s, bm, sp), wsets, ref)
    row(f"N=1 cold skeleton 32x256 s{sp} + XLA sum", lambda c, s, g: _gemv_skeleton(
        codes3(c), s, 32, sp).sum(axis=0), wsets, ref)
    row("N=1 cold XLA sum of the code bytes", lambda c, s, g: jnp.sum(
        c.astype(I32), axis=1) + jnp.sum(s.astype(I32), axis=1), wsets, ref)
    return rows


# (N, bm, split, warps): one step per program (bk = K / split); split 1 has no XLA
# sum. The neighbours of the best measured N = 1 layout (16 x 4096 s1 w8:
# docs/decisions.md) and N = 2.
LAYOUTS = [(1, 64, 16, 4), (1, 16, 1, 8), (1, 32, 1, 8), (1, 16, 1, 16), (1, 32, 1, 16),
           (1, 8, 1, 8), (1, 32, 2, 8), (1, 64, 4, 8), (2, 64, 16, 4), (2, 16, 1, 8),
           (2, 32, 1, 8), (2, 32, 2, 8)]


def layout_rows(repeats, k=4096, layers=16):
    """Cold decode (as ``anatomy``) with one step per program: ``bk = K / split``
    (``LAYOUTS``): fewer, larger programs whose loads are all issued at once, and
    with split 1 no XLA sum. Per layout: the skeleton (bytes summed, N = 1), dp4a
    on activation codes, ``linear_gemv`` dp4a (the QuantLinear kernel; concrete
    scalars: thresholds), and the default tiling's rows."""
    from scmp_jax import fp4
    r = np.random.default_rng(6)
    cfg = fp4.MXFP4
    wf, wq, wsets = _cold_weights(r, k, layers)
    ops = lambda c, s, g: (c, s, g, "e8m0")
    rows = []
    row = lambda case, fn, sets, ref=None: _rotating_row(rows, repeats, case, fn, sets, ref)
    for n in (1, 2):
        x = jnp.asarray(r.standard_normal((n, k)), BF16)
        a = fp4.quantize(x, cfg)
        ref = row(f"N={n} cold bf16 matmul", lambda v, w: jnp.matmul(v, w.T),
                  [(x, w) for w in wf])
        row(f"N={n} cold QuantLinear path (default)", lambda v, c, s, g: fp4.quantized_matmul(
            v, fp4.FP4Tensor(c, s, g, 32, "e8m0", "even", (k, k)), cfg),
            [(x, t.codes, t.scales, t.global_scale) for t in wq], ref)
        want = None
        for n_, bm, sp, warps in LAYOUTS:
            bk = k // sp
            if n_ != n or bk < 256 or k < bm:
                continue
            tag = f"{bm}x{bk} s{sp} w{warps}"
            if n == 1:
                row(f"N=1 cold skeleton {tag}", lambda c, s, g, bm=bm, sp=sp, bk=bk, w=warps:
                    _gemv_skeleton(c.reshape(c.shape[0], -1, 16), s, bm, sp, bk=bk, warps=w),
                    wsets, ref)
            t = Dp4aTiling(bm, bk, warps, 1, sp)
            row(f"N={n} cold dp4a codes {tag}", lambda c, s, g, t=t, a=a: matmul(
                (a.codes, a.scale_bytes, a.global_scale, "e8m0"), ops(c, s, g), tiling=t),
                wsets, ref)
            lin = lambda v, c, s, g, t=t: linear_gemv(
                v, np.float32(cfg.scale_scale), np.float32(cfg.global_scale), ops(c, s, g),
                group_size=32, scale_dtype="e8m0", rounding=0, tiling=t)
            if row(f"N={n} cold linear_gemv dp4a {tag}", lin, [(x,) + w for w in wsets], ref):
                got = np.asarray(lin(x, *wsets[0]))
                want = got if want is None else want
                print(f"   max |diff| vs first layout {float(np.max(np.abs(got - want))):.3g}",
                      flush=True)
    return rows


def decode_rows(n, repeats):
    """``decode_bf16`` of an (n, n) MXFP4 tensor: bytes moved vs a copy."""
    from scmp_jax import fp4
    x = jnp.asarray(np.random.default_rng(1).standard_normal((n, n)), BF16)
    t = fp4.quantize(x, "mxfp4")
    rows = []
    for case, fn, args in [("copy bf16 (-x)", lambda v: -v, (x,)),
                           ("decode_bf16 16x1024/4", lambda c, s: SD.decode_bf16(
                               c, s, "e8m0", interpret=_backend().interpret), (t.codes, t.scale_bytes))]:
        sec = device_time(fn, args, repeats)
        moved = sum(a.nbytes for a in args) + x.nbytes
        rows.append(dict(case=case, ms=sec * 1e3, gbs=moved / sec / 1e9))
        print(f"{case:<40} {sec * 1e3:8.4f} ms {moved / sec / 1e9:7.0f} GB/s", flush=True)
    return rows


def prefill_rows(n, repeats):
    """Where the QuantLinear prefill time goes (M = K = N = n, MXFP4): the dense
    dots alone (bf16 out, float32 out, float32 out times a runtime scalar), the
    weight decode and the one-pass activation quantize-dequant."""
    from scmp_jax import fp4
    r = np.random.default_rng(2)
    x = jnp.asarray(r.standard_normal((n, n)), BF16)
    w = jnp.asarray(r.standard_normal((n, n)) * 0.02, BF16)
    t = fp4.quantize(w, "mxfp4")
    alpha = jnp.float32(1 / 9)
    dims = (((1,), (1,)), ((), ()))
    f32dot = lambda a, b: jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)
    cases = [("bf16 matmul (bf16 out)", lambda a, b: jnp.matmul(a, b.T), (x, w)),
             ("dot bf16 -> f32", f32dot, (x, w)),
             ("dot bf16 -> f32, * alpha", lambda a, b, s: f32dot(a, b) * s, (x, w, alpha)),
             ("decode_bf16 weight", lambda c, s: SD.decode_bf16(
                 c, s, "e8m0", interpret=_backend().interpret),
              (t.codes, t.scale_bytes)),
             ("quantize_dequant activation", lambda v: LD.quantize_dequant(
                 v, np.float32(4.0), np.float32(1 / 3), group_size=32, scale_dtype="e8m0",
                 rounding=0, backend=_backend()), (x,)),
             ("quantized_matmul (one pass)", lambda v, c, s, g: fp4.quantized_matmul(
                 v, fp4.FP4Tensor(c, s, g, 32, "e8m0", "even", (n, n)), "mxfp4"),
              (x, t.codes, t.scales, t.global_scale))]
    rows = []
    for case, fn, args in cases:
        sec = device_time(fn, args, repeats)
        rows.append(dict(case=case, ms=sec * 1e3))
        print(f"{case:<40} {sec * 1e3:8.4f} ms", flush=True)
    return rows


def params_rows(soft=False):
    """First-call seconds of the concrete kernel parameters on the host by NumPy
    (``quantize.params._host_params``, what concrete scalars get); with ``soft``
    also the first call of the softfloat program that traced scalars get
    (``_params_program``, on the CPU device: tens of seconds on a GPU machine's
    host; on the GPU backend minutes)."""
    import time
    rows = []
    ss, gs = np.float32(1.0), np.float32(1 / 3)
    bits = lambda v: int(v.view(np.uint32))
    cpu = jax.local_devices(backend="cpu")[0]
    for case in ("params, thresholds",):
        t0 = time.perf_counter()
        PR._host_params.__wrapped__(bits(ss), bits(gs), 0, True)
        rows.append(dict(case=case, host_s=time.perf_counter() - t0))
        print(f"{case:<40} host {rows[-1]['host_s']:8.4f} s", flush=True)
        if soft:
            t0 = time.perf_counter()
            np.asarray(PR._params_program(*jax.device_put((ss, gs, np.int32(0)), cpu), True))
            rows[-1]["softfloat_cpu_first_s"] = time.perf_counter() - t0
            print(f"{case:<40} softfloat program, first call on the CPU device "
                  f"{rows[-1]['softfloat_cpu_first_s']:7.2f} s", flush=True)
    return rows


def _tilings(specs, k, **kind):
    """(tag, ``FusedTiling(16, bm, bk, warps, stages, split, **kind)``) of the rows
    (bm, bk, split, warps[, stages = 3]) that fit K = k (the CPU smoke run's small
    shapes skip the rest), split clamped to ``k // bk`` (at least 1)."""
    out = []
    for spec in specs:
        bm, bk, sp, warps, stages = tuple(spec) + (3,) * (5 - len(spec))
        if bk > k or bm > k:
            continue
        sp = max(1, min(sp, k // bk))
        out.append((f"{bm}x{bk} s{sp} w{warps} st{stages}",
                    FusedTiling(16, bm, bk, warps, stages, sp, **kind)))
    return out


def _codes_tiling_rows(repeats, k, layers, seed, tilings, default_row):
    """Decode N = 8, 16 cold (``layers`` distinct MXFP4 weights per timed call, as
    ``anatomy``), activation codes given: bf16 matmul (and with ``default_row`` the
    default schedule) vs ``matmul`` at ``tilings`` ((tag, FusedTiling) pairs, the
    tags of the printed rows); each row's output checked against the default's
    (relative L2 difference printed)."""
    from scmp_jax import fp4
    r = np.random.default_rng(seed)
    wf, wq, wsets = _cold_weights(r, k, layers)
    ops = lambda c, s, g: (c, s, g, "e8m0")
    rows = []
    row = lambda case, fn, sets, ref=None: _rotating_row(rows, repeats, case, fn, sets, ref)
    for n in (8, 16):
        x = jnp.asarray(r.standard_normal((n, k)), BF16)
        a = fp4.quantize(x, "mxfp4")
        aops = (a.codes, a.scale_bytes, a.global_scale, "e8m0")
        ref = row(f"N={n} cold bf16 matmul", lambda v, w: jnp.matmul(v, w.T),
                  [(x, w) for w in wf])
        if default_row:
            row(f"N={n} cold default matmul on codes",
                lambda c, s, g: matmul(aops, ops(c, s, g)), wsets, ref)
        want = np.asarray(matmul(aops, ops(*wsets[0])))
        for tag, t in tilings:
            fn = lambda c, s, g, t=t: matmul(aops, ops(c, s, g), tiling=t)
            if row(f"N={n} cold {tag}", fn, wsets, ref):
                got = np.asarray(fn(*wsets[0]))
                rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
                print(f"   relative L2 difference vs default {rel:.2e}", flush=True)
    return rows


# (bm, bk, split, warps, stages) of FusedTiling(16, bm, bk, warps, stages, split,
# grouped=True); the first is the heuristic's N <= 16 default
GROUPED = [(64, 256, 16, 4, 3), (64, 256, 8, 4, 3), (64, 256, 4, 4, 3), (128, 256, 8, 4, 3),
           (128, 256, 4, 8, 3), (64, 512, 4, 4, 3), (128, 512, 2, 8, 3), (32, 256, 8, 4, 3),
           (256, 256, 2, 8, 3), (64, 1024, 4, 4, 1), (128, 1024, 2, 8, 1), (32, 512, 8, 4, 3)]


def grouped_rows(repeats, k=4096, layers=16):
    """``_codes_tiling_rows`` of the grouped fused kernel at ``GROUPED`` tilings.
    Fewer K ranges (``split``) write fewer float32 partials ((split, 16, M): 4 MB
    at the default's 16, as many bytes as half the weight) for XLA to add, but
    give fewer programs."""
    tilings = [("grouped " + tag, t) for tag, t in _tilings(GROUPED, k, grouped=True)]
    return _codes_tiling_rows(repeats, k, layers, 12, tilings, False)


def compile_rows():
    """First-call seconds (trace + compile + run) of jitted programs quantizing
    ``n`` activations with a traced global scale (as a flax ``QuantLinear``'s
    variable under jit): the quantize kernel with its thresholds (the softfloat
    params program staged into the program) or without (division only, the
    params program reduced to one multiply). Staged, the params program made
    ``QuantLinear``'s first decode call several times slower to compile
    (docs/decisions.md); does that cost grow with the number of layers?"""
    import time
    rows = []
    x = jnp.asarray(np.random.default_rng(8).standard_normal((16, 4096)), BF16)
    for thr in (True, False):
        for n in (1, 4):
            til = QP.QuantTiling(thresholds=thr)

            def prog(v, g, til=til, n=n):
                out = []
                for i in range(n):
                    c, s = quantize_fused(v * (i + 1), np.float32(4.0), g, group_size=32,
                                            scale_dtype="e8m0", rounding=0, tiling=til)
                    out.append(c)
                return out
            jax.clear_caches()
            t0 = time.perf_counter()
            jax.block_until_ready(jax.jit(prog)(x, jnp.float32(1 / 3)))
            case = f"{n} traced-gs quantize(s), thresholds={thr}"
            rows.append(dict(case=case, first_s=time.perf_counter() - t0))
            print(f"{case:<48} first call {rows[-1]['first_s']:7.2f} s", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.fp4_probe", description=__doc__)
    p.add_argument("--repeats", type=int_in(1), default=5)
    p.add_argument("--out", default="fp4_probe.json")
    p.add_argument("--cases", default="quant,decode,prefill",
                   help="comma-separated: params, params_soft, compile, grouped, quant, "
                        "quant_sweep, decode, prefill, gemv, anatomy, layouts, floor")
    args = p.parse_args(argv)
    print(f"jax {jax.__version__}  {jax.devices()[0].device_kind}", flush=True)
    n = 8192 if jax.default_backend() == "gpu" else 256
    cases = args.cases.split(",")
    write_json(args.out, params=params_rows("params_soft" in cases)
               if "params" in cases or "params_soft" in cases else [],
               quant=quant_rows(n, args.repeats, "quant" in cases,
                                          "quant_sweep" in cases)
               if "quant" in cases or "quant_sweep" in cases else [],
               gemv=gemv_rows(args.repeats, n // 2) if "gemv" in cases else [],
               anatomy=anatomy_rows(args.repeats, max(256, n // 2)) if "anatomy" in cases
               else [],
               layouts=layout_rows(args.repeats, max(256, n // 2)) if "layouts" in cases
               else [],
               grouped=grouped_rows(args.repeats, max(256, n // 2)) if "grouped" in cases
               else [],
               compile=compile_rows() if "compile" in cases else [],
               floor=floor_rows(args.repeats, max(256, n // 2)) if "floor" in cases else [],
               decode=decode_rows(n // 2, args.repeats) if "decode" in cases else [],
               prefill=prefill_rows(n // 2, args.repeats) if "prefill" in cases else [])


if __name__ == "__main__":
    main()
