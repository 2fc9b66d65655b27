"""The decode-rows grid shared by the ``"gemv"`` and ``"dp4a"`` schedules (and
``linear.gemv``, which quantizes its activation in the same kernels): one
program per (``bm`` weight rows, K range), every activation row in each
program, the weight read as (bm, K_s/G, G/2) bytes and looped over in
``bk``-element steps; with ``split > 1`` the K ranges' partials are added by
XLA (``kernel.split_sum``).

A row kernel has the signature ``kernel(*refs, n_act, act, steps, ng, dtw,
scale_in_kernel, interpret)``: ``refs`` = the ``n_act`` activation refs, then
weight codes, weight scale bytes, ``gs_a``, ``gs_w`` and the output (N, bm);
``act(act_refs, n, s)`` -> float32 e2m1 values (low, high nibbles; (ng, G/2))
and decoded scales (ng,) of activation row ``n`` at step ``s``.
"""
from __future__ import annotations

import functools

import jax
from jax.experimental import pallas as pl

from ...._src.dispatch import triton_params
from ... import formats as FM
from ... import kernel as K
from ..tilings import Dp4aTiling, GemvTiling

__all__ = ["rows_call", "on_codes"]

I32 = jax.numpy.int32


def rows_call(kernel, act_args, act_specs, act, wc, ws, gs, N, Kx, G, dtw,
              t: GemvTiling | Dp4aTiling, interpret, name):
    """Runs the row ``kernel`` with tiling ``t`` over weights (M, K/2) codes /
    (M, K/G) scale bytes with activation operands ``act_args`` (already padded to
    ``kernel.padded_k(K, t.bk, t.split)``; ``act_specs(ng_s)`` their BlockSpecs
    for a K range of ``ng_s`` groups) -> float32 (N, M). ``name``: the kernel's."""
    M, S, H = wc.shape[0], t.split, G // 2
    Mp, Kp = pl.cdiv(M, t.bm) * t.bm, K.padded_k(Kx, t.bk, t.split)
    ng, ng_s = t.bk // G, Kp // S // G                   # groups per step, per K range
    body = functools.partial(kernel, n_act=len(act_args), act=act, steps=ng_s // ng, ng=ng,
                             dtw=dtw, scale_in_kernel=S == 1, interpret=interpret)
    w = K.pad2(wc, Mp, Kp // 2).reshape(Mp, Kp // G, H)
    out = pl.pallas_call(
        body, grid=(Mp // t.bm, S),
        in_specs=list(act_specs(ng_s)) + [
            pl.BlockSpec((t.bm, ng_s, H), lambda j, s: (j, s, 0)),
            pl.BlockSpec((t.bm, ng_s), lambda j, s: (j, s)),
            pl.BlockSpec((1,), lambda j, s: (0,)),
            pl.BlockSpec((1,), lambda j, s: (0,))],
        out_specs=pl.BlockSpec((None, N, t.bm), lambda j, s: (s, 0, j)),
        out_shape=jax.ShapeDtypeStruct((S, N, Mp), jax.numpy.float32),
        interpret=interpret, name=name, **triton_params(interpret, t.warps, t.stages),
    )(*act_args, w, K.pad2(ws, Mp, Kp // G), *gs)
    return K.split_sum(out, gs)[:, :M]


def on_codes(kernel, ac2, as2, wc, ws, gs, dta, dtw, G, t, interpret, name):
    """Activation codes (N, K/2) / scale bytes (N, K/G) x weights by the row
    ``kernel`` (``rows_call``) -> float32 (N, M)."""
    N, Kx = ac2.shape[0], 2 * ac2.shape[1]
    H, Kp = G // 2, K.padded_k(Kx, t.bk, t.split)
    a3 = K.pad2(ac2, N, Kp // 2).reshape(N, Kp // G, H)
    as2 = K.pad2(as2, N, Kp // G)
    ng = t.bk // G

    def act(refs, n, s):
        ac_ref, as_ref = refs
        ca = ac_ref[n, pl.ds(s * ng, ng), :].astype(I32)                  # (ng, H)
        sa = FM.decode_scale(as_ref[n, pl.ds(s * ng, ng)].astype(I32), dta)
        return K.value(ca, False, interpret), K.value(ca, True, interpret), sa

    specs = lambda ng_s: [pl.BlockSpec((N, ng_s, H), lambda j, s: (0, s, 0)),
                          pl.BlockSpec((N, ng_s), lambda j, s: (0, s))]
    return rows_call(kernel, (a3, as2), specs, act, wc, ws, gs, N, Kx, G, dtw, t, interpret,
                     name)
