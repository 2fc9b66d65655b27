"""FP -> integer quantization to SC boundaries (SPEC.md section 5).

Every function takes a float32 ndarray and returns a dict of NumPy arrays:
``x_int`` (float32, integer valued), ``sign`` (int64, bipolar only),
``boundary`` (int64 in ``[0, G]``), ``scale`` (float32, one per row, or one
per leading index for ``per_head``), and for unipolar ``zp`` (float32, per row)
and ``rowsum`` (int64, per row). Float operations are float32, one rounding
each, in the order SPEC.md writes them. Non-finite values flow through the
float math; ``x_int`` of a non-finite row is replaced by 0 so that integer
indices stay in range (the output assembly turns such rows into NaN).
"""
from __future__ import annotations

import numpy as np

from .errors import as_float32

__all__ = ["EPS", "qmax", "quantize_per_tensor", "quantize_per_row",
           "quantize_per_row_chunk", "quantize_per_head"]

EPS = np.float32(1e-5)
F32 = np.float32


def qmax(mode: str, p: int) -> int:
    return 2 ** (p - 1) - 1 if mode == "bipolar" else 2 ** p - 1


def _rne(x):
    return np.rint(x).astype(np.float32)


def _pos0(x):
    """-0 -> +0 (integer codes and zero points carry no signed zero)."""
    return np.where(x == 0, F32(0), x).astype(np.float32)


def _finish(x_int, mode, p, G):
    x_int = _pos0(np.where(np.isnan(x_int), F32(0), x_int))
    q = qmax(mode, p)
    ratio = F32(G) / F32(q)
    mag = np.abs(x_int) if mode == "bipolar" else x_int
    out = {"x_int": x_int, "boundary": _rne(mag * ratio).astype(np.int64)}
    if mode == "bipolar":
        out["sign"] = np.sign(x_int).astype(np.int64)
    else:
        out["rowsum"] = x_int.astype(np.int64).sum(axis=-1)
    return out


def quantize_per_tensor(x, mode: str, p: int, G: int) -> dict:
    """One scale for the whole operand (every batch slice of a 3D operand)."""
    x = as_float32(x, "x")
    q = F32(qmax(mode, p))
    rows_shape = x.shape[:-1]
    if mode == "bipolar":
        amax = np.maximum(np.maximum(np.abs(np.max(x)), np.abs(np.min(x))), EPS)
        s = F32(amax / q)
        inv = F32(F32(1) / s)
        x_int = np.clip(_rne(x * inv), -q, q)
        out = _finish(x_int, mode, p, G)
        out["scale"] = np.full(rows_shape, s, dtype=np.float32)
        return out
    xmax, xmin = np.max(x), np.min(x)
    s = F32(np.maximum(F32(xmax - xmin), EPS) / q)
    inv = F32(F32(1) / s)
    zp = _pos0(np.clip(_rne(-xmin / s), F32(0), q))[()]
    x_int = np.clip(_rne((x * inv).astype(np.float32) + zp), F32(0), q)
    out = _finish(x_int, mode, p, G)
    out["scale"] = np.full(rows_shape, s, dtype=np.float32)
    out["zp"] = np.full(rows_shape, zp, dtype=np.float32)
    return out


def quantize_per_row(x, mode: str, p: int, G: int, group: int = 1) -> dict:
    """Consecutive blocks of ``group`` rows share a scale (per batch slice)."""
    x = as_float32(x, "x")
    if x.ndim == 3:
        parts = [quantize_per_row(xi, mode, p, G, group) for xi in x]
        return {k: np.stack([pt[k] for pt in parts]) for k in parts[0]}
    R = x.shape[0]
    q = F32(qmax(mode, p))
    scale = np.empty(R, np.float32)
    zp = np.zeros(R, np.float32)
    x_int = np.empty_like(x)
    for start in range(0, R, group):
        blk = x[start:start + group]
        if mode == "bipolar":
            amax = np.maximum(np.max(np.abs(blk)), EPS)
            s = F32(amax / q)
            xi = np.clip(_rne(blk / s), -q, q)
        else:
            gmax, gmin = np.max(blk), np.min(blk)
            s = F32(np.maximum(F32(gmax - gmin), EPS) / q)
            z = _pos0(np.clip(_rne(-gmin / s), F32(0), q))[()]
            xi = np.clip(_rne((blk / s).astype(np.float32) + z), F32(0), q)
            zp[start:start + group] = z
        scale[start:start + group] = s
        x_int[start:start + group] = xi
    out = _finish(x_int, mode, p, G)
    out["scale"] = scale
    if mode == "unipolar":
        out["zp"] = zp
    return out


def quantize_per_row_chunk(x, p: int, G: int) -> dict:
    """Bipolar, per row, reciprocal form (one D-chunk of the chunk_d path)."""
    x = as_float32(x, "x")
    q = F32(qmax("bipolar", p))
    amax = np.maximum(np.max(np.abs(x), axis=-1), EPS)
    s = (amax / q).astype(np.float32)
    inv = (F32(1) / s).astype(np.float32)
    x_int = np.clip(_rne(x * inv[:, None]), -q, q)
    out = _finish(x_int, "bipolar", p, G)
    out["scale"] = s
    return out


def quantize_per_head(x, p: int, G: int) -> dict:
    """Bipolar, one scale per leading index ``h`` of a 3D operand."""
    x = as_float32(x, "x")
    q = F32(qmax("bipolar", p))
    amax = np.maximum(np.maximum(np.abs(np.max(x, axis=(1, 2))), np.abs(np.min(x, axis=(1, 2)))),
                      EPS)
    s = (amax / q).astype(np.float32)
    inv = (F32(1) / s).astype(np.float32)
    x_int = np.clip(_rne(x * inv[:, None, None]), -(q + 1), q)
    out = _finish(x_int, "bipolar", p, G)
    out["scale"] = s
    return out
