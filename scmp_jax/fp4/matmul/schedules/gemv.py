"""The ``"gemv"`` schedule (``GemvTiling``; SPEC.md section 9): few activation
rows, no tensor-core dot. Each program loops over its K range in steps,
decodes a (bm, groups, G/2) weight tile once per step and, per activation
row, multiplies it by the activation's ``v * s``, sums each group and scales
it by the weight's group scale (the grid: ``rows``). The activation comes as
codes (``matmul``) or, in ``linear.gemv``, as floats quantized inside the
kernel (same bits)."""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ... import formats as FM
from ... import kernel as K
from ..tilings import GemvTiling
from . import rows

__all__ = ["gemv_kernel", "row_kernel", "matmul"]

F32 = jnp.float32
I32 = jnp.int32


def gemv_kernel(*refs, n_act, act, steps, ng, dtw, scale_in_kernel, interpret):
    """Weight rows (bm, K_s/G, H) bytes of one K range, looped over in ``steps``
    steps of ``ng`` groups (the row-kernel contract of ``rows``):
    out[n, m] = sum over groups g of s_w[m, g] * sum_{k in g} v_w[m, k] (v_a s_a)[n, k]
    (the weight scale applied once per group), accumulated step by step, times
    ``alpha`` (when the K range is whole)."""
    act_refs, (wc_ref, ws_ref, ga_ref, gw_ref, o_ref) = refs[:n_act], refs[n_act:]
    n_rows, bm = o_ref.shape[-2:]

    def step(s, accs):
        c = wc_ref[:, pl.ds(s * ng, ng), :].astype(I32)
        sw = FM.decode_scale(ws_ref[:, pl.ds(s * ng, ng)].astype(I32), dtw)      # (bm, ng)
        w_lo, w_hi = K.value(c, False, interpret), K.value(c, True, interpret)
        out = []
        for n in range(n_rows):
            v_lo, v_hi, sa = act(act_refs, n, s)
            a_lo = K.mul(v_lo, sa[:, None], interpret)
            a_hi = K.mul(v_hi, sa[:, None], interpret)
            y = jnp.sum(w_lo * a_lo[None] + w_hi * a_hi[None], axis=2)         # (bm, ng)
            out.append(accs[n] + jnp.sum(y * sw, axis=1))
        return tuple(out)

    accs = lax.fori_loop(0, steps, step, tuple(jnp.zeros((bm,), F32) for _ in range(n_rows)))
    for n in range(n_rows):
        o_ref[n, :] = (K.mul(accs[n], K.alpha(ga_ref, gw_ref, (bm,), interpret), interpret)
                       if scale_in_kernel else accs[n])


def row_kernel(interpret: bool):
    """This schedule's row kernel (``rows``)."""
    del interpret
    return gemv_kernel


def matmul(ac2, as2, wc, ws, gs, dta, dtw, G, t: GemvTiling, interpret):
    """Activation codes (N, K/2) / scale bytes (N, K/G) x weights (M, K/2) / (M, K/G),
    equal group sizes ``G`` -> float32 (N, M)."""
    return rows.on_codes(gemv_kernel, ac2, as2, wc, ws, gs, dta, dtw, G, t, interpret,
                         name=f"fp4_gemv_{dta}x{dtw}")
