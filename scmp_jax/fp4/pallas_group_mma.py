"""FP4 x FP4 matmul for decode-sized N by per-group tensor-core dots of all
activation rows, group scales after each dot (Pallas Triton; SPEC.md section 9).
``MatmulTiling(group_mma=True)``: opt-in, **not yet measured on the GPU**.

For each group ``g`` of a step (equal group sizes ``G``), the weight bytes
(bm, G/2) become float16 ``v_w * 2^-14`` by integer operations
(``pallas_mma.nibbles_f16``: low and high nibbles; PTX on the GPU) and the
activation rows' bytes (bn, G/2) float16 ``v_a * 2^13``; two float16 dots
(k = G/2) give ``D = sum_{k in g} v_a v_w / 2`` (bn, bm), exact in float32
(products of <= 4 significant bits, sums <= 13 bits). Then
``acc += (D * s_w) * s_a`` (IEEE products, exact but for under/overflow:
e8m0 scales are powers of two, e4m3 ones have 4 significant bits), and
``out = 2 * alpha * acc``.

Against the grouped fused kernel (``matmul_tiling``'s pick for 2 < N <= 16),
which multiplies every decoded element by its scale in float32 before a
bfloat16 dot, the weight decode here is integer only and the scales cost
two multiplies per (row, column, group): ``2 N / G`` per weight element.
The hypothesis to measure: N = 8 / 16 decode is bound by that per-element
decode (session 11: 2.7x / 2.4x the bf16 matmul with the weight in L2).

Within float32 accumulation error of the float64 reference (summation order
differs from the other schedules: not bit equal to them). Off GPU the kernel
runs with ``interpret=True``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .._src.dispatch import triton_params
from . import formats as FM
from .pallas_matmul import (MatmulTiling, _alpha, _mul, _pad2, _split_sum, _value,
                             fused_padding)
from .pallas_mma import nibbles_f16

__all__ = ["group_mma"]

F32, F16, I32 = jnp.float32, jnp.float16, jnp.int32
_ACT_SCALE = 2.0 ** 13          # v_a * 2^13 <= 49152: exact in float16 (as pallas_mma)


def _kernel(ac_ref, as_ref, wc_ref, ws_ref, ga_ref, gw_ref, o_ref, *, steps, ng, H, dta,
            dtw, scale_in_kernel, asm, interpret):
    """Activation bytes (bn, K_s/2) / scale bytes (bn, K_s/G) and weight bytes
    (bm, K_s/2) / scale bytes (bm, K_s/G) of one K range, ``steps`` steps of
    ``ng`` groups -> (bn, bm) float32."""
    bn, bm = o_ref.shape[-2:]
    dims = (((1,), (1,)), ((), ()))

    def group(k, acc):
        w_lo, w_hi = nibbles_f16(wc_ref[:, pl.ds(k * H, H)], asm=asm)          # (bm, H)
        ca = ac_ref[:, pl.ds(k * H, H)].astype(I32)                            # (bn, H)
        a16 = lambda hi: (_value(ca, hi, interpret) * F32(_ACT_SCALE)).astype(F16)
        d = (lax.dot_general(a16(False), w_lo, dims, preferred_element_type=F32)
             + lax.dot_general(a16(True), w_hi, dims, preferred_element_type=F32))
        sw = FM.decode_scale(ws_ref[:, k].astype(I32), dtw)                   # (bm,)
        sa = FM.decode_scale(as_ref[:, k].astype(I32), dta)                   # (bn,)
        y = _mul(d, jnp.broadcast_to(sw[None, :], (bn, bm)), interpret)
        return acc + _mul(y, jnp.broadcast_to(sa[:, None], (bn, bm)), interpret)

    def step(s, acc):
        for g in range(ng):
            acc = group(s * ng + g, acc)
        return acc

    acc = lax.fori_loop(0, steps, step, jnp.zeros((bn, bm), F32)) * F32(2)     # exact
    if scale_in_kernel:
        acc = _mul(acc, _alpha(ga_ref, gw_ref, (bn, bm), interpret), interpret)
    o_ref[...] = acc


def group_mma(ac2, as2, wc, ws, gs, dta, dtw, G, t: MatmulTiling, interpret):
    """Activation codes (N, K/2) / scale bytes (N, K/G), weights (M, K/2) / (M, K/G)
    (equal group sizes ``G``), ``gs`` the (1,) global scales -> float32 (N, M)."""
    N, M, K = ac2.shape[0], wc.shape[0], 2 * ac2.shape[1]
    S, H = t.split, G // 2
    if t.bk % G or t.bn < 16 or t.bm < 16 or G < 32:
        raise ValueError(f"tiling.group_mma needs bk a multiple of the group size, bn and bm "
                         f">= 16 and G >= 32 (float16 dots need k >= 16), got G={G}, {t}")
    Np, Mp, Kp = fused_padding(N, M, K, t)
    ng, ng_s = t.bk // G, Kp // S // G
    kernel = functools.partial(
        _kernel, steps=ng_s // ng, ng=ng, H=H, dta=dta, dtw=dtw, scale_in_kernel=S == 1,
        asm=not interpret, interpret=interpret)
    out = pl.pallas_call(
        kernel, grid=(Np // t.bn, Mp // t.bm, S),
        in_specs=[pl.BlockSpec((t.bn, ng_s * H), lambda i, j, s: (i, s)),
                  pl.BlockSpec((t.bn, ng_s), lambda i, j, s: (i, s)),
                  pl.BlockSpec((t.bm, ng_s * H), lambda i, j, s: (j, s)),
                  pl.BlockSpec((t.bm, ng_s), lambda i, j, s: (j, s)),
                  pl.BlockSpec((1,), lambda i, j, s: (0,)),
                  pl.BlockSpec((1,), lambda i, j, s: (0,))],
        out_specs=pl.BlockSpec((None, t.bn, t.bm), lambda i, j, s: (s, i, j)),
        out_shape=jax.ShapeDtypeStruct((S, Np, Mp), F32),
        interpret=interpret, **triton_params(interpret, t.warps, t.stages),
    )(_pad2(ac2, Np, Kp // 2), _pad2(as2, Np, Kp // G), _pad2(wc, Mp, Kp // 2),
      _pad2(ws, Mp, Kp // G), *gs)
    return _split_sum(out, gs)[:N, :M]
