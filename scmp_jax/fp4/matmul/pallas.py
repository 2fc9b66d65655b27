"""FP4 x FP4 matmul as Pallas (Triton) kernels, the ``"pallas"`` implementation
of ``fp4.matmul`` (SPEC.md section 9).

activation codes/scales (N, K) x weight codes/scales (M, K) -> float32 (N, M)
``= alpha * sum_k (v_a s_a)(v_w s_w)``, ``alpha = gs_a * gs_w``. Every product
``v * s`` (e2m1 value times its group scale) is exact in float32 (<= 6
significant bits; e4m3 scales are normal; e8m0 bytes 0 and 1 give exact
float32 subnormals; only the e8m0 scale ``2^127`` times ``|v| >= 2`` overflows, to
Inf). The schedule comes
from the tiling's type (``matmul.tilings``; by default ``matmul.heuristic``
picks one by shape), one module each in ``matmul.schedules``. All are within
float32 accumulation error of the float64 reference (not bit equal to one
another: summation order); ``alpha`` multiplies the accumulated sum last.
"""
from __future__ import annotations

from ..._src.dispatch import Backend
from .. import softfloat as SF
from ..config import pow2
from ..kernel import scalar_operands
from . import heuristic
from .schedules import dequant, dp4a, fused, gemv
from .tilings import ROW_SCHEDULES, Tiling

__all__ = ["matmul", "unsupported", "check_rows"]

_ROWS = {"gemv": gemv, "dp4a": dp4a}


def unsupported(group_a: int | None, group_w: int):
    """Why ``matmul`` cannot run as a kernel (a message naming the argument), or None;
    ``group_a`` None: a float activation (only the weight is decoded)."""
    for name, g in (("a", group_a), ("w", group_w)):
        if g is not None and (not pow2(g) or g < 2):
            return (f"{name}.group_size must be a power of two >= 2 for the fp4 Pallas matmul, "
                    f"got {g}")
    return None


def check_rows(t: Tiling, N: int, Ga: int, Gw: int) -> None:
    """ValueError unless a decode-rows schedule (``gemv`` / ``dp4a``) can take N
    activation rows with these group sizes."""
    if t.schedule in ROW_SCHEDULES and (Ga != Gw or N > 16):
        raise ValueError(f"schedule {t.schedule!r} ({type(t).__name__}) needs equal group "
                         f"sizes and N <= 16, got groups {Ga}/{Gw}, N={N}")


def matmul(a, w, *, backend: Backend, tiling: Tiling | None = None):
    """``a``, ``w``: (codes uint8, scale bytes uint8, global scale, scale_dtype) of
    activations (..., N, K) and weights (M, K) -> float32 (..., N, M). ``tiling``
    forces its schedule (default: ``heuristic.choose`` for ``backend.gpu``);
    ``backend.interpret``: run the kernels interpreted."""
    ac, as_, gsa, dta = a
    wc, ws, gsw, dtw = w
    K = 2 * ac.shape[-1]
    Ga, Gw = K // as_.shape[-1], K // ws.shape[-1]
    why = unsupported(Ga, Gw)
    if why:
        raise ValueError(why)
    lead = ac.shape[:-1]
    ac2, as2 = ac.reshape(-1, K // 2), as_.reshape(-1, K // Ga)
    N, M = ac2.shape[0], wc.shape[0]
    t = tiling or heuristic.choose(N, M, K, Ga, Gw, gpu=backend.gpu)[1]
    schedule, interpret = getattr(t, "schedule", None), backend.interpret
    if schedule == "dequant":
        y = dequant.matmul(ac2, as2, wc, ws, SF.mul(gsa, gsw).reshape(1), dta, dtw, t, interpret)
        return y.reshape(lead + (M,))
    gs = scalar_operands(gsa, gsw)
    if schedule in _ROWS:
        check_rows(t, N, Ga, Gw)
        y = _ROWS[schedule].matmul(ac2, as2, wc, ws, gs, dta, dtw, Ga, t, interpret)
    elif schedule == "fused":
        y = fused.matmul(ac2, as2, wc, ws, gs, dta, dtw, Ga, Gw, t, interpret)
    else:
        raise TypeError(f"tiling must be one of GemvTiling, Dp4aTiling, FusedTiling, "
                        f"DequantTiling, got {t!r}")
    return y.reshape(lead + (M,))
