"""SmoothQuant (SPEC.md section 8): calibration and the diagonal rescaling.
Maxima compare integer images and the rescaling is integer IEEE arithmetic,
so subnormals are kept exactly on every backend (SPEC.md section 7.8)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._src import dispatch
from .._src import softfloat as SF
from .._src.errors import check_float
from .._src.ieee import abs_max_exact, div, max_nan, maximum_exact, sqrt
from .pallas import col_absmax

__all__ = ["accumulate_act_scales", "compute_smooth_scales", "apply_smoothing",
           "apply_smoothing_offline"]

F32 = jnp.float32


def _pow(x, e: float):
    """``x ** e`` in float32; IEEE-exact for e in {0, 0.5, 1} (sqrt), pow otherwise."""
    if e == 0.0:
        return jnp.ones_like(x)
    if e == 1.0:
        return x
    if e == 0.5:
        return sqrt(x)
    return jnp.power(x, np.float32(e))


def _check_d(name, arr, D):
    arr = check_float(arr, name)
    if np.ndim(arr) != 1 or np.shape(arr)[0] != D:
        raise ValueError(f"{name} must have shape (D,)=({D},), got {np.shape(arr)}")


def accumulate_act_scales(x, running=None, *, implementation=None):
    """``(D,)`` running per-channel max |x| over every leading dim of ``x (..., D)``.

    ``implementation``: None (Pallas on GPU, else XLA) | "xla" | "pallas"
    (interpret mode off GPU). NaN propagates.
    """
    x = jnp.asarray(check_float(x, "x"))
    if x.ndim < 1:
        raise ValueError(f"x must have at least one dim, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"x must be non-empty, got shape {x.shape}")
    backend = dispatch.resolve(implementation, op="accumulate_act_scales")
    x2 = x.reshape(-1, x.shape[-1])
    if backend.pallas:
        cur = col_absmax(x2, interpret=backend.interpret)
    else:
        cur = abs_max_exact(x2, axis=0)
    if running is None:
        return cur
    _check_d("running", running, x.shape[-1])
    return maximum_exact(jnp.asarray(running, cur.dtype), cur)


def compute_smooth_scales(act_scales, weight, alpha: float = 0.5, eps: float = 1e-5):
    """``s = clip(clip(act, eps)^alpha / clip(max_m |w[m, :]|, eps)^(1-alpha), eps)``.

    act_scales: (D,); weight: (M, D). Computed in float32, returned in
    weight's dtype.
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    weight = jnp.asarray(check_float(weight, "weight"))
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2D (M, D), got shape {weight.shape}")
    _check_d("act_scales", act_scales, weight.shape[1])
    a = jnp.maximum(jnp.asarray(act_scales).astype(F32), np.float32(eps))
    wmax = jnp.maximum(max_nan(jnp.abs(weight.astype(F32)), axis=0), np.float32(eps))
    s = jnp.maximum(div(_pow(a, alpha), _pow(wmax, 1.0 - alpha)), np.float32(eps))
    return s.astype(weight.dtype)


def apply_smoothing(a, b, smooth_scales):
    """``(a / s, b * s)`` along the shared last dim D."""
    a, b = check_float(a, "a"), check_float(b, "b")
    _check_d("smooth_scales", smooth_scales, np.shape(a)[-1])
    if np.shape(b)[-1] != np.shape(a)[-1]:
        raise ValueError(f"a and b must share the last dim, got {np.shape(a)} and {np.shape(b)}")
    b_dtype = jnp.result_type(b, smooth_scales)
    return SF.div(a, smooth_scales), SF.mul(b, smooth_scales).astype(b_dtype)


def apply_smoothing_offline(weight, smooth_scales):
    """``weight * s``: bake the scales into a weight once."""
    weight = check_float(weight, "weight")
    _check_d("smooth_scales", smooth_scales, np.shape(weight)[-1])
    return SF.mul(weight, smooth_scales).astype(jnp.result_type(weight, smooth_scales))
