"""FP -> int quantization to SC boundaries, pure jnp (SPEC.md section 5).

All functions take float32 arrays ``(..., R, D)`` and return a ``Quantized``
pytree. Float math is float32, one rounding per written operation, in SPEC
order; ``separate`` and ``div`` (``scmp_jax._ieee``) keep XLA from
contracting, reassociating or approximating it.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .._ieee import div, separate

__all__ = ["Quantized", "EPS", "qmax", "separate", "div", "boundary", "per_tensor", "per_row",
           "per_row_chunk", "per_head", "bad_rows"]

EPS = np.float32(1e-5)
F32 = jnp.float32


class Quantized(NamedTuple):
    """``x_int`` float32 (..., R, D); ``boundary`` int32 in [0, G]; ``sign`` int32
    in {-1, 0, 1} (bipolar) ; ``scale`` float32 per row (..., R) or per head (H,);
    ``zp`` float32 per row and ``rowsum`` int32 per row (unipolar)."""
    x_int: jax.Array
    boundary: jax.Array
    scale: jax.Array
    sign: Optional[jax.Array] = None
    zp: Optional[jax.Array] = None
    rowsum: Optional[jax.Array] = None


def qmax(mode: str, p: int) -> int:
    return 2 ** (p - 1) - 1 if mode == "bipolar" else 2 ** p - 1


def _pos0(x):
    """-0 -> +0 (a select: XLA may fold ``x + 0`` away)."""
    return jnp.where(x == 0, F32(0), x)


def _finish(x_int, mode, p, G, scale, zp=None) -> Quantized:
    x_int = _pos0(jnp.where(jnp.isnan(x_int), F32(0), x_int))
    ratio = np.float32(G) / np.float32(qmax(mode, p))
    mag = jnp.abs(x_int) if mode == "bipolar" else x_int
    bnd = jnp.round(mag * ratio).astype(jnp.int32)
    if mode == "bipolar":
        return Quantized(x_int, bnd, scale, sign=jnp.sign(x_int).astype(jnp.int32))
    rowsum = jnp.sum(x_int.astype(jnp.int32), axis=-1, dtype=jnp.int32)
    return Quantized(x_int, bnd, scale, zp=zp, rowsum=rowsum)


def boundary(x_int, mode: str, p: int, G: int):
    """``rne(|x_int| * (G / q))`` (``x_int`` for unipolar), int32."""
    return _finish(jnp.asarray(x_int, F32), mode, p, G, None).boundary


def per_tensor(x, mode: str, p: int, G: int) -> Quantized:
    """One scale for the whole operand (all batch slices of a 3D operand)."""
    q = np.float32(qmax(mode, p))
    rows = x.shape[:-1]
    if mode == "bipolar":
        amax = jnp.maximum(jnp.maximum(jnp.abs(jnp.max(x)), jnp.abs(jnp.min(x))), EPS)
        s = div(amax, q)
        inv = div(1, s)
        x_int = jnp.clip(jnp.round(x * inv), -q, q)
        return _finish(x_int, mode, p, G, jnp.broadcast_to(s, rows))
    xmax, xmin = jnp.max(x), jnp.min(x)
    s = div(jnp.maximum(xmax - xmin, EPS), q)
    inv = div(1, s)
    zp = _pos0(jnp.clip(jnp.round(div(-xmin, s)), F32(0), q))
    x_int = jnp.clip(jnp.round(separate(x * inv) + zp), F32(0), q)
    return _finish(x_int, mode, p, G, jnp.broadcast_to(s, rows), jnp.broadcast_to(zp, rows))


def _group_reduce(x, g, fn, pad_value):
    """Reduce ``fn`` over blocks of ``g`` consecutive rows (and all columns) of
    ``(..., R, D)``; returns the per-row value ``(..., R)``."""
    R = x.shape[-2]
    g = min(g, R)
    n = -(-R // g)
    pad = n * g - R
    if pad:
        widths = [(0, 0)] * (x.ndim - 2) + [(0, pad), (0, 0)]
        x = jnp.pad(x, widths, constant_values=pad_value)
    xb = x.reshape(x.shape[:-2] + (n, g * x.shape[-1]))
    red = fn(xb, axis=-1)                                   # (..., n)
    return jnp.repeat(red, g, axis=-1, total_repeat_length=n * g)[..., :R]


def per_row(x, mode: str, p: int, G: int, group: int = 1) -> Quantized:
    """Blocks of ``group`` rows share a scale; division form ``x / s``."""
    q = np.float32(qmax(mode, p))
    if mode == "bipolar":
        amax = jnp.maximum(_group_reduce(jnp.abs(x), group, jnp.max, 0.0), EPS)
        s = div(amax, q)
        x_int = jnp.clip(jnp.round(div(x, s[..., None])), -q, q)
        return _finish(x_int, mode, p, G, s)
    gmax = _group_reduce(x, group, jnp.max, -np.inf)
    gmin = _group_reduce(x, group, jnp.min, np.inf)
    s = div(jnp.maximum(gmax - gmin, EPS), q)
    zp = _pos0(jnp.clip(jnp.round(div(-gmin, s)), F32(0), q))
    x_int = jnp.clip(jnp.round(separate(div(x, s[..., None])) + zp[..., None]), F32(0), q)
    return _finish(x_int, mode, p, G, s, zp)


def per_row_chunk(x, p: int, G: int) -> Quantized:
    """Bipolar, per row, reciprocal form (one chunk of the chunk_d path)."""
    q = np.float32(qmax("bipolar", p))
    amax = jnp.maximum(jnp.max(jnp.abs(x), axis=-1), EPS)
    s = div(amax, q)
    inv = div(1, s)
    x_int = jnp.clip(jnp.round(x * inv[..., None]), -q, q)
    return _finish(x_int, "bipolar", p, G, s)


def per_head(x, p: int, G: int) -> Quantized:
    """Bipolar, one scale per leading index of ``(H, R, D)``; clip to [-(q+1), q]."""
    q = np.float32(qmax("bipolar", p))
    amax = jnp.maximum(jnp.maximum(jnp.abs(jnp.max(x, axis=(1, 2))),
                                   jnp.abs(jnp.min(x, axis=(1, 2)))), EPS)
    s = div(amax, q)
    inv = div(1, s)
    x_int = jnp.clip(jnp.round(x * inv[:, None, None]), -(q + 1), q)
    return _finish(x_int, "bipolar", p, G, s)


def bad_rows(x, scale_rows):
    """Rows whose output must be NaN: a non-finite scale or a non-finite input."""
    return ~jnp.isfinite(scale_rows) | ~jnp.all(jnp.isfinite(x), axis=-1)
