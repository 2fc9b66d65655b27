"""SC counts as an exact int8 matmul for tensor cores (SPEC.md section 4).

Same integers as the table lookups (``table[ro ^ co]``, ``tables.Layout``), a
different algorithm: each product is ``s_a * s_b * c`` with
``c = cum[sid_b, k, bb]`` in ``[0, L]``, and ``bb`` takes at most ``W`` values
(the boundaries of the quantization levels; ``W``: their count rounded up
to a power of two >= 32).
With one column per boundary,

    acc[n, m] = sum_d sum_j X[n, d, j] * Y[m, d, j]  +  correction[n, m]

* ``Y[m, d, j] = s_b * [bb == bnd_j]`` (one-hot, int8);
* ``X[n, d, j]`` = the table row of ``(sid_b, k)`` at the boundaries, moved
  into int8: ``c - 128`` when ``s_a = +1``, ``127 - c`` when ``s_a = -1``,
  0 when ``k = 0`` (then ``c = 0``: ``s_a`` counts as 0);
* only ``c = 256`` (``L = 256``) leaves int8: it is clamped, and it happens
  only on the product set ``k = L`` x ``cum[L, bb] = L``, so
  ``correction = sum_d 127 s_a s_b + [s_a = 1] s_b + (s_a [k = L]) (s_b [cum[L, bb] = 256])``
  (one more matmul with three columns per ``d``, bfloat16 in / float32 out,
  exact: see ``_correction``) restores the exact sum.

int8 x int8 products summed in int32 are exact, so ``acc`` equals the gather's
bit for bit. Cost: ``W`` multiply-adds per product on the tensor cores instead
of one table lookup; it pays on GPUs for large ``N * M`` (``bench.sc_probe``).
Needs ``L <= 256`` and ``W <= 128`` (``eligible``). The inner dim is walked in
chunks of ``dc`` so one chunk's expanded operands, ``H * (N + M) * dc * W``
bytes, stay under twice the table cap. The matmuls are
``lax.dot_general`` (cuBLAS on GPU) and the row expansion is XLA's ``take``
(3.1 TB/s of int32 words on the H200) in both implementations: a Pallas int8
GEMM (128 x 128 tiles, 4 warps) measured slower on the H200 (per_row 11.1 ms
vs 8.7 ms end to end, session 7) and was dropped, as was a Pallas row
expansion kernel (no faster, and its GPU golden run failed, cause not found).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["columns", "eligible", "counts"]

I8, I32, BF16 = jnp.int8, jnp.int32, jnp.bfloat16
_MAX_W = 128
_MIN_OUTPUTS = 1 << 20        # auto mode: below this many outputs the gather wins


@functools.lru_cache(maxsize=64)
def columns(mode: str, p: int, G: int) -> tuple[int, ...]:
    """The distinct boundaries in ``[1, G]`` of ``rne(level * (G / q))``
    (float32, as ``quant.xla.encode``). Any other ``bb`` (0, or above G, whose
    table entries are 0) gets ``s_b = 0``: no count, as in the table."""
    q = 2 ** (p - 1) - 1 if mode == "bipolar" else 2 ** p - 1
    top = q + 1 if mode == "bipolar" else q
    ratio = np.float32(G) / np.float32(q)
    b = np.rint(np.arange(top + 1, dtype=np.float32) * ratio).astype(np.int64)
    return tuple(int(v) for v in np.unique(b) if 0 < v <= G)


def width(mode: str, p: int, G: int) -> int:
    """Columns per d: the column count rounded up to a power of two >= 32 (the
    int8 GEMM's K per d stays aligned; 127 bipolar p=8 columns -> 128)."""
    return max(32, 1 << (len(columns(mode, p, G)) - 1).bit_length())


def eligible(mode: str, p: int, L: int, G: int) -> bool:
    return L <= 256 and width(mode, p, G) <= _MAX_W


def worth_it(H: int, N: int, M: int) -> bool:
    """Auto mode's shape rule (GPU): enough outputs to fill the tensor cores."""
    return H * N * M >= _MIN_OUTPUTS


def _row_tables(table, lay, L: int, cols: tuple, W: int):
    """int32 words ``(2 * R, W // 4)``: row ``2 * (sid_b * (L + 1) + k) + neg_a``
    holds that row's int8 ``X`` values (little-endian bytes)."""
    R = (table.shape[0] - (1 << lay.shift)) // lay.vp          # rows of the positive part
    pos = jnp.arange(R, dtype=I32)[:, None] * lay.vp + jnp.asarray(cols, I32)[None, :]
    c = jnp.take(table, pos, mode="clip").astype(I32)          # (R, ncols)
    c = jnp.pad(c, ((0, 0), (0, W - len(cols))))
    live = (jnp.arange(R) % (L + 1) != 0)[:, None] & (jnp.arange(W) < len(cols))[None, :]
    xp = jnp.where(live, jnp.clip(c - 128, -128, 127), 0)
    xn = jnp.where(live, jnp.clip(127 - c, -128, 127), 0)
    x = jnp.stack([xp, xn], axis=1).astype(I8).reshape(2 * R, W // 4, 4)
    return lax.bitcast_convert_type(x, I32)


def _pad_to(x, axis, n):
    if x.shape[axis] == n:
        return x
    w = [(0, 0)] * x.ndim
    w[axis] = (0, n - x.shape[axis])
    return jnp.pad(x, w)


def chunk_size(H: int, N: int, M: int, D: int, W: int, cap: int) -> int:
    """Inner indices per chunk, a power of two in [32, next_pow2(D)]: one
    chunk's expanded operands stay under ``2 * cap`` bytes unless even 32
    exceeds it (few, long chunks: 4 chunks ran per_row in 8.7 ms, 32 in 11.5)."""
    dc = max(1, (2 * cap) // max(1, H * (N + M) * W))
    dc = max(32, 1 << (dc.bit_length() - 1))
    return min(dc, max(32, 1 << (D - 1).bit_length()))


def _dot(x, y):
    """(H, N, K) int8 x (H, M, K) int8 -> (H, N, M) int32, exact (cuBLAS on GPU).
    K is a multiple of 1024 here (``dc * W``, both >= 32): see ``_correction``
    for what XLA's int8 GEMM did with other K."""
    assert x.shape[-1] % 32 == 0, x.shape
    return lax.dot_general(x, y, (((2,), (2,)), ((0,), (0,))), preferred_element_type=I32)


class _Decoded(NamedTuple):
    row: jax.Array       # a: sid_b * (L + 1) + k
    neg: jax.Array       # a: sign bit
    sa: jax.Array        # a: -1 / 0 / +1 (0 when k = 0)
    j: jax.Array         # b: column of bb, -1 if none
    sb: jax.Array        # b: -1 / 0 / +1 (0 when bb has no column)
    bb: jax.Array


def _decode(r, c, lay, L, inv):
    row, neg, bb = lay.row(r), lay.neg(r), lay.level(c)
    sa = jnp.where(row % (L + 1) == 0, 0, 1 - 2 * neg)
    j = jnp.take(inv, bb, mode="clip")
    sb = jnp.where(j < 0, 0, 1 - 2 * lay.neg(c))
    return _Decoded(row, neg, sa, j, sb, bb)


_CORR_SLICE = 1 << 16      # d per correction dot: |partial sums| <= 129 * 2^16 < 2^24


def _correction(r, c, table, lay, sid, L, inv):
    """``sum_d 127 s_a s_b + [s_a = 1] s_b + (s_a [k = L]) (s_b [cum[L, bb] = 256])``
    as one matmul over all d (r: (H, N, D), c: (H, M, D)).

    bfloat16 operands (``s`` in {-1, 0, 1} and ``127 s``: exact) with float32
    accumulation: every partial sum is an integer below ``129 * 2^16 < 2^24``
    per slice of ``_CORR_SLICE`` d, so exact; slices are added in int32. Not
    int8: XLA's int8 GEMM on the H200 (jax 0.11.2) returned doubled sums when
    K was not a multiple of 32 (session 8; ``tests/test_dense.py``
    ``test_correction_any_d``; PALLAS_NOTES: Triton's int8 dot is wrong at
    K = 16), which a zero-padded d can become once XLA drops the padding."""
    e = _decode(r, c, lay, L, inv)
    if L == 256:                                    # c = 256 only then
        full = jnp.take(table, (sid * (L + 1) + L) * lay.vp + e.bb, mode="clip") == 256
        ea, eb = e.sa * (e.row % (L + 1) == L), e.sb * full
    else:
        ea, eb = jnp.zeros_like(e.sa), jnp.zeros_like(e.sb)
    D = r.shape[-1]
    acc = None
    for lo in range(0, D, _CORR_SLICE):
        s = slice(lo, min(D, lo + _CORR_SLICE))
        xe = jnp.concatenate([e.sa[..., s], (e.sa[..., s] > 0).astype(I32), ea[..., s]], axis=-1)
        ye = jnp.concatenate([127 * e.sb[..., s], e.sb[..., s], eb[..., s]], axis=-1)
        part = lax.dot_general(xe.astype(BF16), ye.astype(BF16), (((2,), (2,)), ((0,), (0,))),
                               preferred_element_type=jnp.float32).astype(I32)
        acc = part if acc is None else acc + part
    return acc


def counts(ro, co, table, lay, sid_b, *, mode: str, p: int, L: int, G: int, cap: int):
    """ro: (H, D, N) int32; co: (H, D, M) int32 (``tables.Layout`` indices);
    table: the flat signed int16 table they index; sid_b: (D,) int32 stream id
    of each d. Returns (H, N, M) int32, equal to ``sum_d table[ro ^ co]``."""
    cols = columns(mode, p, G)
    W = width(mode, p, G)
    H, D, N = ro.shape
    M = co.shape[2]
    words = _row_tables(table, lay, L, cols, W)
    inv = np.full(lay.vp, -1, np.int32)                       # -1: not a column, no count
    inv[np.asarray(cols)] = np.arange(len(cols))
    inv = jnp.asarray(inv)
    dc = chunk_size(H, N, M, D, W, cap)
    n = -(-D // dc)
    # d-last from here on; padding index 0 is k = 0 and bb = 0: no count
    ro = _pad_to(jnp.swapaxes(ro, 1, 2), 2, n * dc)                       # (H, N, n*dc)
    co = _pad_to(jnp.swapaxes(co, 1, 2), 2, n * dc)                       # (H, M, n*dc)
    sid = _pad_to(sid_b.astype(I32), 0, n * dc)

    def body(acc, i):
        r = lax.dynamic_slice_in_dim(ro, i * dc, dc, axis=2)        # (H, N, dc)
        c = lax.dynamic_slice_in_dim(co, i * dc, dc, axis=2)        # (H, M, dc)
        e = _decode(r, c, lay, L, inv)
        x = jnp.take(words, 2 * e.row + e.neg, axis=0, mode="clip")          # (H, N, dc, W/4)
        x = lax.bitcast_convert_type(x, I8).reshape(H, N, dc * W)
        y = jnp.where(e.j[..., None] == jnp.arange(W, dtype=I32), e.sb[..., None], 0)
        return acc + _dot(x, y.astype(I8).reshape(H, M, dc * W)), None

    acc0 = _correction(ro, co, table, lay, sid, L, inv)
    acc, _ = lax.scan(body, acc0, jnp.arange(n))
    return acc
