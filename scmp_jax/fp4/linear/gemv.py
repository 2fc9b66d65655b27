"""``matmul(quantize(x), w)`` for few activation rows in one launch (Pallas;
SPEC.md section 9; same bits as the two steps): ``linear_gemv`` quantizes the
activation inside the decode-rows kernel of the ``"gemv"`` / ``"dp4a"``
schedule (``matmul.schedules.rows``), no activation codes written."""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import pallas as pl

from ..._src.dispatch import Backend
from .. import formats as FM
from .. import kernel as K
from ..matmul import heuristic
from ..matmul.pallas import unsupported
from ..matmul.schedules import dp4a, gemv, rows
from ..matmul.tilings import Dp4aTiling, GemvTiling
from ..quantize import encode as E
from ..quantize import params as PR
from ..quantize.pallas import prologue

__all__ = ["linear_gemv"]

_ROW_KERNELS = {"gemv": gemv.row_kernel, "dp4a": dp4a.row_kernel}


def linear_gemv(x, scale_scale, global_scale, w, *, group_size: int, scale_dtype: str,
                rounding, backend: Backend, tiling: GemvTiling | Dp4aTiling | None = None):
    """float activations (..., N, K) (few rows) quantized with these settings (no
    transform) times fp4 weights ``w`` = (codes (M, K/2), scale bytes, global scale,
    scale dtype) with the same group size -> float32 (..., N, M): the gemv / dp4a
    schedule of ``matmul(quantize(x), w)`` with the activation quantized inside
    the matmul kernel (one launch, no activation codes); the same bits as
    ``matmul`` with the same ``tiling`` on ``quantize_fused``'s output."""
    x, rounding = prologue(x, rounding)
    interpret = backend.interpret
    Kx, M = x.shape[-1], w[0].shape[0]
    G = group_size
    Gw = Kx // w[1].shape[-1]
    why = unsupported(G, Gw)
    if why or Gw != G:
        raise ValueError(why or f"linear_gemv needs the weight's group size {G}, got {Gw}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, Kx)
    N, H = x2.shape[0], G // 2
    t = tiling or heuristic.choose(N, M, Kx, G, G, gpu=backend.gpu)[1]
    if t.schedule not in _ROW_KERNELS:
        raise ValueError(f"linear_gemv needs a GemvTiling or Dp4aTiling, got {t}")
    Kp = K.padded_k(Kx, t.bk, t.split)
    x3, kind = E.group_view(K.pad2(x2, N, Kp), G)
    inner, ng = x3.shape[-1], t.bk // G

    known = _known(scale_scale, global_scale, rounding, scale_dtype)
    thresholds = known is not None and bool(known.c)

    def act(refs, n, s):                # e2m1 values and decoded scales of row n, step s
        lo, hi = E.halves(refs[0], kind, H, (pl.ds(n, 1), pl.ds(s * ng, ng)))
        scales, run = E.codes_of(lo, hi, E.params_in_kernel(refs[1:], interpret), scale_dtype,
                                 interpret, thresholds, known)
        v_lo, v_hi = run(lambda c_lo, c_hi: (K.value(c_lo, False, interpret),
                                             K.value(c_hi, False, interpret)))
        sa = FM.decode_scale(scales, scale_dtype).reshape(ng)
        return v_lo.reshape(ng, H), v_hi.reshape(ng, H), sa

    one = pl.BlockSpec((1,), lambda j, s: (0,))
    specs = lambda ng_s: [pl.BlockSpec((N, ng_s, inner), lambda j, s: (0, s, 0)), one, one, one]
    y = rows.rows_call(_ROW_KERNELS[t.schedule](interpret),
                       (x3,) + E.scalars(scale_scale, global_scale, rounding), specs, act,
                       w[0], w[1], K.scalar_operands(global_scale, w[2]), N, Kx, G, w[3], t,
                       interpret, name=f"fp4_linear_{t.schedule}_{kind}_{scale_dtype}x{w[3]}")
    return y.reshape(lead + (M,))


def _known(scale_scale, global_scale, rounding, scale_dtype):
    """``quantize.params.Known`` for the in-kernel quantization: a concrete rounding
    index is static (no branch on it); with concrete scalars and e8m0 scales also
    the thresholds (``c_i`` as constants: codes by a multiply and comparisons
    where a block allows, as in the quantize kernel; the kernel's ``p`` tuple
    holds the bits of ``gs`` they need). Traced scalars: None."""
    if not isinstance(rounding, (int, np.integer)):
        return None
    rounding = int(rounding)
    if scale_dtype != "e8m0" or any(isinstance(v, jax.core.Tracer)
                                    for v in (scale_scale, global_scale)):
        return PR.Known(rounding, ())
    return PR.known(PR.params(scale_scale, global_scale, rounding, True))
