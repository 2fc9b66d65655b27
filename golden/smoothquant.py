"""SmoothQuant helpers (SPEC.md section 8), float32 NumPy."""
from __future__ import annotations

import numpy as np

from .errors import check_float

__all__ = ["accumulate_act_scales", "compute_smooth_scales", "apply_smoothing",
           "apply_smoothing_offline", "pow_f32"]

F32 = np.float32


def pow_f32(x: np.ndarray, e: float) -> np.ndarray:
    """``x ** e`` in float32; exact (IEEE) for e in {0, 0.5, 1}, libm pow otherwise."""
    x = np.asarray(x, np.float32)
    if e == 0.0:
        return np.ones_like(x)
    if e == 1.0:
        return x.copy()
    if e == 0.5:
        return np.sqrt(x)
    return np.power(x, F32(e)).astype(np.float32)


def accumulate_act_scales(x, running=None) -> np.ndarray:
    """Element-wise max of ``running`` and max |x| over all leading dims."""
    x = check_float(x, "x")
    cur = np.max(np.abs(x.reshape(-1, x.shape[-1])), axis=0)
    if running is None:
        return cur
    return np.maximum(check_float(running, "running").astype(cur.dtype), cur)


def compute_smooth_scales(act, w, alpha: float = 0.5, eps: float = 1e-5) -> np.ndarray:
    """``clip(clip(act, eps)^alpha / clip(max_m |w|, eps)^(1-alpha), eps)`` in float32."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    w = check_float(w, "w")
    a = np.maximum(check_float(act, "act").astype(np.float32), F32(eps))
    wmax = np.maximum(np.max(np.abs(w.astype(np.float32)), axis=0), F32(eps))
    s = np.maximum(pow_f32(a, alpha) / pow_f32(wmax, 1.0 - alpha), F32(eps))
    return s.astype(w.dtype)


def apply_smoothing(a, b, s):
    """``(a / s, b * s)`` along the last axis (IEEE: overflow to Inf, subnormals kept)."""
    s = check_float(s, "s")
    a, b = check_float(a, "a"), check_float(b, "b")
    with np.errstate(all="ignore"):
        return a / s, b * s


def apply_smoothing_offline(w, s):
    """``w * s``: bake the scales into a weight once."""
    return check_float(w, "w") * check_float(s, "s")
