"""The SC enable-signal matmul, table form and bit level (SPEC.md sections 3-7).

``sc_matmul(a, b, ...)`` computes counts from the tables ``k_table`` and
``cum``; ``sc_matmul_bitlevel(a, b, ...)`` from explicit per-cycle bit
streams. Both return float32 ``(N, M)`` for 2D and ``(H, N, M)`` for 3D
operands and must agree bit for bit.
"""
from __future__ import annotations

import numpy as np

from . import quant as Q
from .errors import InvalidDtypeError, as_float32, check_bool, is_int
from .streams import OWEN_MODES, side_streams

__all__ = ["sc_matmul", "sc_matmul_bitlevel", "resolve", "tables", "GRANULARITIES", "MODES",
           "InvalidDtypeError"]

GRANULARITIES = ("per_tensor", "per_row", "per_head")
MODES = ("bipolar", "unipolar")
F32 = np.float32


def resolve(a, b, granularity, mode, sc_prec, stoc_len, chunk_d, group_a, group_b,
            rng_levels, halve_bipolar_stoc_len, smooth_scales, scramble):
    """Validate every argument (SPEC.md section 7); return float32 operands and
    the resolved ``(L, G)``."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if scramble not in OWEN_MODES:
        raise ValueError(f"scramble must be one of {OWEN_MODES}, got {scramble!r}")
    if not is_int(sc_prec) or not 2 <= sc_prec <= 12:
        raise ValueError(f"sc_prec must be an int in [2, 12], got {sc_prec!r}")
    a = as_float32(a, "a")
    b = as_float32(b, "b")
    if a.ndim not in (2, 3):
        raise ValueError(f"a must be 2D or 3D, got shape {a.shape}")
    if b.ndim not in (2, 3):
        raise ValueError(f"b must be 2D or 3D, got shape {b.shape}")
    if a.ndim != b.ndim:
        raise ValueError(f"a and b must have the same rank, got a {a.shape} and b {b.shape}")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"a and b must share the inner dim D, got a {a.shape} and b {b.shape}")
    if a.ndim == 3 and a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must have the same batch size, got a {a.shape} and b {b.shape}")
    if a.size == 0 or b.size == 0:
        raise ValueError(f"a and b must be non-empty, got a {a.shape} and b {b.shape}")
    for name, g in (("group_a", group_a), ("group_b", group_b)):
        if not is_int(g) or g < 1:
            raise ValueError(f"{name} must be an int >= 1, got {g!r}")
    if not is_int(chunk_d) or chunk_d < 0:
        raise ValueError(f"chunk_d must be an int >= 0, got {chunk_d!r}")
    if chunk_d > 0 and (granularity != "per_row" or mode != "bipolar" or a.ndim != 2):
        raise ValueError("chunk_d > 0 requires granularity='per_row', mode='bipolar' and 2D inputs")
    if granularity == "per_head" and (a.ndim != 3 or mode != "bipolar"):
        raise ValueError("granularity='per_head' requires 3D inputs and mode='bipolar'")
    B = 2 ** sc_prec
    if check_bool(halve_bipolar_stoc_len, "halve_bipolar_stoc_len") and mode == "bipolar":
        stoc_len = B // 2 if stoc_len is None else stoc_len
        rng_levels = B // 2 if rng_levels is None else rng_levels
    L = B if stoc_len is None else stoc_len
    G = B if rng_levels is None else rng_levels
    if not is_int(L) or not 1 <= L <= B:
        raise ValueError(f"stoc_len must be an int in [1, 2**sc_prec={B}], got {L!r}")
    if not is_int(G) or not 1 <= G <= B:
        raise ValueError(f"rng_levels must be an int in [1, 2**sc_prec={B}], got {G!r}")
    if smooth_scales is not None:
        s = as_float32(smooth_scales, "smooth_scales")
        if s.shape != (a.shape[-1],):
            raise ValueError(f"smooth_scales must have shape (D,)=({a.shape[-1]},), got {s.shape}")
        with np.errstate(all="ignore"):
            a = (a / s).astype(np.float32)
            b = (b * s).astype(np.float32)
    return a, b, int(L), int(G)


def tables(ra: np.ndarray, rb: np.ndarray, G: int):
    """``k_table (D, V)`` and ``cum (D, L+1, V)`` from the streams (SPEC.md section 4)."""
    v = np.arange(G + 1)
    k_table = (ra[:, :, None] < v).sum(axis=1)
    ind = (rb[:, :, None] < v).astype(np.int64)
    cum = np.concatenate([np.zeros((rb.shape[0], 1, G + 1), np.int64), np.cumsum(ind, axis=1)],
                         axis=1)
    return k_table, cum


_BLOCK = 1 << 22    # int64 elements of one block's tables (and of its counts)


def _counts_table(ra, rb, ba, bb, G):
    """``(d0, counts[d0:d0 + n])`` (n, N, M) by table lookup, for blocks of ``n``
    inner indices (memory O(_BLOCK))."""
    D, L = ra.shape
    N, M = ba.shape[0], bb.shape[0]
    n = max(1, _BLOCK // max(L * (G + 1), N * M))
    for d0 in range(0, D, n):
        k_table, cum = tables(ra[d0:d0 + n], rb[d0:d0 + n], G)      # (n, V), (n, L+1, V)
        dd = np.arange(k_table.shape[0])
        k = k_table[dd[:, None], ba[:, d0:d0 + n].T]                   # (n, N)
        yield d0, cum[dd[:, None, None], k[:, :, None], bb[:, d0:d0 + n].T[:, None, :]]


def _counts_bits(ra, rb, ba, bb, G):
    """``(d, counts[d:d + 1])`` (1, N, M) from explicit bits: A bits -> popcount
    enable -> B bits."""
    L = ra.shape[1]
    t = np.arange(L)
    for d in range(ra.shape[0]):
        a_bits = ra[d][None, :] < ba[:, d][:, None]            # (N, L)
        k = a_bits.sum(axis=1)                                 # popcount
        enable = t[None, :] < k[:, None]                       # first k cycles
        b_bits = rb[d][None, :] < bb[:, d][:, None]            # (M, L)
        yield d, (enable.astype(np.int64) @ b_bits.T.astype(np.int64))[None]


def _acc(qa, qb, ra, rb, G, counts_fn, bipolar):
    """Exact int64 ``sum_d (sign_a * sign_b) * c`` (N, M)."""
    acc = np.zeros((qa["boundary"].shape[0], qb["boundary"].shape[0]), np.int64)
    for d0, c in counts_fn(ra, rb, qa["boundary"], qb["boundary"], G):
        if bipolar:
            n = c.shape[0]
            c = c * (qa["sign"][:, d0:d0 + n].T[:, :, None] * qb["sign"][:, d0:d0 + n].T[:, None, :])
        acc += c.sum(axis=0)
    return acc


def _assemble(acc, qa, qb, D, f, mode):
    raw = acc.astype(np.float32) * f
    sab = qa["scale"][:, None] * qb["scale"][None, :]
    if mode == "bipolar":
        return raw * sab
    zpa, zpb = qa["zp"][:, None], qb["zp"][None, :]
    Sa = qa["rowsum"].astype(np.float32)[:, None]
    Sb = qb["rowsum"].astype(np.float32)[None, :]
    corr = ((-zpb) * Sa - zpa * Sb) + (F32(D) * zpa) * zpb
    return (raw + corr) * sab


def _bad_rows(x, scale_rows):
    return ~np.isfinite(scale_rows) | ~np.all(np.isfinite(x), axis=-1)


def _run(a, b, granularity, mode, sc_prec, stoc_len, chunk_d, group_a, group_b, rng_levels,
         config, halve_bipolar_stoc_len, smooth_scales, scramble, counts_fn):
    a, b, L, G = resolve(a, b, granularity, mode, sc_prec, stoc_len, chunk_d, group_a, group_b,
                         rng_levels, halve_bipolar_stoc_len, smooth_scales, scramble)
    p = sc_prec
    D = a.shape[-1]
    q = Q.qmax(mode, p)
    f = F32(q * q) / F32(L)
    bipolar = mode == "bipolar"
    with np.errstate(all="ignore"):
        if chunk_d > 0:
            Dt = min(chunk_d, D)
            ra = side_streams(config, "q", Dt, p, L, G, scramble)
            rb = side_streams(config, "k", Dt, p, L, G, scramble)
            out = np.zeros((a.shape[0], b.shape[0]), np.float32)
            bad = np.zeros(out.shape, bool)
            for start in range(0, D, chunk_d):
                ac, bc = a[:, start:start + chunk_d], b[:, start:start + chunk_d]
                n = ac.shape[1]
                qa, qb = Q.quantize_per_row_chunk(ac, p, G), Q.quantize_per_row_chunk(bc, p, G)
                acc = _acc(qa, qb, ra[:n], rb[:n], G, counts_fn, True)
                out = out + _assemble(acc, qa, qb, n, f, "bipolar")
                bad |= _bad_rows(ac, qa["scale"])[:, None] | _bad_rows(bc, qb["scale"])[None, :]
            return np.where(bad, F32(np.nan), out).astype(np.float32)

        ra = side_streams(config, "q", D, p, L, G, scramble)
        rb = side_streams(config, "k", D, p, L, G, scramble)
        if granularity == "per_tensor":
            qa, qb = Q.quantize_per_tensor(a, mode, p, G), Q.quantize_per_tensor(b, mode, p, G)
        elif granularity == "per_row":
            qa, qb = Q.quantize_per_row(a, mode, p, G, group_a), Q.quantize_per_row(b, mode, p, G, group_b)
        else:
            qa, qb = Q.quantize_per_head(a, p, G), Q.quantize_per_head(b, p, G)

        if a.ndim == 2:
            acc = _acc(qa, qb, ra, rb, G, counts_fn, bipolar)
            out = _assemble(acc, qa, qb, D, f, mode)
            bad = _bad_rows(a, qa["scale"])[:, None] | _bad_rows(b, qb["scale"])[None, :]
            return np.where(bad, F32(np.nan), out).astype(np.float32)

        outs = []
        for h in range(a.shape[0]):
            if granularity == "per_head":
                sl_a = {k: v[h] for k, v in qa.items() if k != "scale"}
                sl_b = {k: v[h] for k, v in qb.items() if k != "scale"}
                acc = _acc(sl_a, sl_b, ra, rb, G, counts_fn, True)
                o = acc.astype(np.float32) * (f * (qa["scale"][h] * qb["scale"][h]))
                bad = not (np.isfinite(qa["scale"][h]) and np.isfinite(qb["scale"][h])
                           and np.all(np.isfinite(a[h])) and np.all(np.isfinite(b[h])))
                o = np.full_like(o, np.nan) if bad else o
            else:
                sl_a = {k: v[h] for k, v in qa.items()}
                sl_b = {k: v[h] for k, v in qb.items()}
                acc = _acc(sl_a, sl_b, ra, rb, G, counts_fn, bipolar)
                o = _assemble(acc, sl_a, sl_b, D, f, mode)
                bad = _bad_rows(a[h], sl_a["scale"])[:, None] | _bad_rows(b[h], sl_b["scale"])[None, :]
                o = np.where(bad, F32(np.nan), o)
            outs.append(o.astype(np.float32))
        return np.stack(outs)


def sc_matmul(a, b, granularity: str = "per_row", *, mode: str = "bipolar", sc_prec: int = 8,
              stoc_len=None, chunk_d: int = 0, group_a: int = 1, group_b: int = 1,
              rng_levels=None, config=None, halve_bipolar_stoc_len: bool = False,
              smooth_scales=None, scramble: str = "bitrev") -> np.ndarray:
    """SC matmul ``a @ b.T``, counts by table lookup. float32 out."""
    return _run(a, b, granularity, mode, sc_prec, stoc_len, chunk_d, group_a, group_b,
                rng_levels, config, halve_bipolar_stoc_len, smooth_scales, scramble,
                _counts_table)


def sc_matmul_bitlevel(a, b, granularity: str = "per_row", *, mode: str = "bipolar",
                       sc_prec: int = 8, stoc_len=None, chunk_d: int = 0, group_a: int = 1,
                       group_b: int = 1, rng_levels=None, config=None,
                       halve_bipolar_stoc_len: bool = False, smooth_scales=None,
                       scramble: str = "bitrev") -> np.ndarray:
    """Same as :func:`sc_matmul`, counts from explicit per-cycle bit streams."""
    return _run(a, b, granularity, mode, sc_prec, stoc_len, chunk_d, group_a, group_b,
                rng_levels, config, halve_bipolar_stoc_len, smooth_scales, scramble,
                _counts_bits)
