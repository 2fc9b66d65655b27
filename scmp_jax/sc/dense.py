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
  restores the exact sum. Its three terms are three more int8 columns per ``d``
  of the same matmul (``W + 4`` columns per ``d`` in all).

int8 x int8 products summed in int32 are exact, so ``acc`` equals the gather's
bit for bit. Cost: ``W`` multiply-adds per product on the tensor cores instead
of one table lookup; it pays on GPUs for large ``N * M`` (``bench.sc_probe``).
Needs ``L <= 256`` and ``W <= 128`` (``eligible``). Heads, or else the inner
dim, are walked in chunks (``plan``) so one chunk's expanded operands,
``hc * (N + M) * dc * (W + 4)`` bytes, stay under ``budget(cap)`` (four times
the table cap: 1 GiB by default); both are
written as int32 words. The matmuls are
``lax.dot_general`` (cuBLAS on GPU) and the row expansion is XLA's ``take``
in both implementations: Pallas GEMM and row-expansion kernels measured no
faster (docs/decisions.md, "Dense counts").
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["columns", "width", "eligible", "worth_it", "counts", "plan", "budget", "y_table",
           "y_codes", "row_offsets", "Post", "IDENTITY", "NEG_SHIFT"]

I8, I32 = jnp.int8, jnp.int32
_MAX_W = 128
NEG_SHIFT = 8      # b-side code (y_table): column j (bits 0-6) | live (7) | neg_b (8) | full (9)
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
    """int32 words: ``(2 * R, W // 4)`` and ``(2 * R,)``; row ``2 * (sid_b * (L + 1) + k)
    + neg_a`` holds that row's int8 ``X`` values, then its correction bytes
    ``[s_a, [s_a = 1], s_a [k = L = 256], 0]`` (little-endian bytes)."""
    R = (table.shape[0] - (1 << lay.shift)) // lay.vp          # rows of the positive part
    pos = jnp.arange(R, dtype=I32)[:, None] * lay.vp + jnp.asarray(cols, I32)[None, :]
    c = jnp.take(table, pos, mode="clip").astype(I32)          # (R, ncols)
    c = jnp.pad(c, ((0, 0), (0, W - len(cols))))
    k = jnp.arange(R) % (L + 1)
    live = (k != 0)[:, None] & (jnp.arange(W) < len(cols))[None, :]
    xp = jnp.where(live, jnp.clip(c - 128, -128, 127), 0)
    xn = jnp.where(live, jnp.clip(127 - c, -128, 127), 0)
    x = jnp.stack([xp, xn], axis=1).astype(I8).reshape(2 * R, W // 4, 4)
    sa = (k != 0).astype(I32)                                  # s_a of the positive row
    top = sa * ((k == L) & (L == 256))
    zero = jnp.zeros_like(sa)
    e = jnp.stack([jnp.stack([sa, sa, top, zero], -1), jnp.stack([-sa, zero, -top, zero], -1)],
                  axis=1).astype(I8).reshape(2 * R, 4)
    return lax.bitcast_convert_type(x, I32), lax.bitcast_convert_type(e, I32)


def _pad_to(x, axis, n):
    if x.shape[axis] == n:
        return x
    w = [(0, 0)] * x.ndim
    w[axis] = (0, n - x.shape[axis])
    return jnp.pad(x, w)


def budget(cap: int) -> int:
    """Bytes of one chunk's expanded operands: ``4 * cap``. Fewer, larger chunks
    pay: each chunk costs launches and a GEMM tail, and per_row's d chunks add
    int32 partial sums (docs/decisions.md, "chunk budget")."""
    return 4 * cap


def chunk_size(H: int, N: int, M: int, D: int, W: int, cap: int) -> int:
    """Inner indices per chunk, a power of two in [32, next_pow2(D)]: one
    chunk's expanded operands (``W`` bytes per index and row) stay under
    ``budget(cap)`` bytes unless even 32 exceeds it (few, long chunks win:
    docs/decisions.md, "chunk budget")."""
    dc = max(1, budget(cap) // max(1, H * (N + M) * W))
    dc = max(32, 1 << (dc.bit_length() - 1))
    return min(dc, max(32, 1 << (D - 1).bit_length()))


def plan(H: int, N: int, M: int, D: int, Wb: int, cap: int) -> tuple[int, int]:
    """(heads, inner indices) per chunk, ``Wb`` bytes per index and row, budget
    ``budget(cap)`` bytes of expanded operands per chunk:

    * all of it fits: one matmul, ``(H, Dp)`` (``Dp``: D rounded up to 8, so
      ``K = Dp * Wb`` is a multiple of 32);
    * one head's whole D fits: chunks of ``hc`` heads (the largest divisor of H
      that fits), each one matmul over all of D: no partial sums to add (chunks
      of d instead pay for int32 additions: docs/decisions.md, "chunk budget");
    * else chunks of ``chunk_size`` d over all heads, partial sums added."""
    most = budget(cap)
    Dp = -(-D // 8) * 8
    one = (N + M) * Dp * Wb
    if H * one <= most:
        return H, Dp
    if one <= most:
        return max(h for h in range(1, H + 1) if H % h == 0 and h * one <= most), Dp
    return H, chunk_size(H, N, M, D, Wb, cap)


def _dot(x, y):
    """(H, N, K) int8 x (H, M, K) int8 -> (H, N, M) int32, exact (cuBLAS on GPU).
    K is ``dc * (W + 4)``, a multiple of 32 (``plan``: dc a multiple of 8): XLA's
    int8 GEMM has returned doubled sums on a GPU for other K (docs/decisions.md)."""
    assert x.shape[-1] % 32 == 0, x.shape
    return lax.dot_general(x, y, (((2,), (2,)), ((0,), (0,))), preferred_element_type=I32)


def _bytes(words):
    """int32 words (..., n) -> their int8 bytes (..., 4 n), little-endian order."""
    b = lax.bitcast_convert_type(words, I8)
    return b.reshape(*b.shape[:-2], -1)


def _x_operand(i, words, corr):
    """a-side X rows (H, N, dc) -> X (H, N, dc * (W + 4)) int8: each d's table row,
    then all the chunk's correction bytes (gathers of int32 words; the int8
    view is a bitcast)."""
    x = jnp.take(words, i, axis=0, mode="clip")                        # (H, N, dc, W/4)
    x = jnp.concatenate([x.reshape(*i.shape[:2], -1), jnp.take(corr, i, mode="clip")], -1)
    return _bytes(x)


def _y_operand(code, W):
    """b-side codes (H, M, dc) (``y_codes``) -> Y (H, M, dc * (W + 4)) int8: each
    d's one-hot ``s_b`` at its boundary's column, then the chunk's correction
    bytes ``[127 s_b, s_b, s_b [cum[L, bb] = 256], 0]``; built as int32 words
    (bytes write slower: docs/decisions.md). Shifts and selects only: the level
    -> column lookup happened when the codes were written."""
    j = code & (_MAX_W - 1)
    sb = ((code >> 7) & 1) * (1 - 2 * ((code >> NEG_SHIFT) & 1))
    eb = sb * ((code >> 9) & 1)
    byte = (sb & 255) << (8 * (j & 3))
    hot = jnp.where(jnp.arange(W // 4, dtype=I32) == (j >> 2)[..., None], byte[..., None], 0)
    extra = ((127 * sb) & 255) | ((sb & 255) << 8) | ((eb & 255) << 16)
    return _bytes(jnp.concatenate([hot.reshape(*code.shape[:2], -1), extra], -1))


def y_table(table, lay, *, mode: str, p: int, L: int, G: int):
    """(S * vp,) int32: the b-side code of (stream s, level v) at ``s * vp + v``
    without its sign: ``j | 1 << 7`` when v is boundary column ``j`` (else 0:
    no count), ``| 1 << 9`` when ``cum[s, L, v] = 256`` (only with ``L = 256``,
    the correction's third term). A code is ``y_table[sid_b * vp + bb] | neg_b
    << NEG_SHIFT`` (``y_codes``; the Pallas b-side index kernel gathers the
    same entry)."""
    cols = columns(mode, p, G)
    base = np.zeros(lay.vp, np.int32)
    base[np.asarray(cols)] = np.arange(len(cols)) | 128
    S = (table.shape[0] - (1 << lay.shift)) // lay.row_s
    code = jnp.broadcast_to(jnp.asarray(base), (S, lay.vp))
    if L == 256:
        top = lax.slice(table, (0,), (S * lay.row_s,)).reshape(S, L + 1, lay.vp)[:, L]
        code = code | jnp.where((top == 256) & (code != 0), 512, 0)
    return code.reshape(-1)


def y_codes(bb, neg, sid_b, ytab, lay):
    """b-side codes of boundaries ``bb`` (..., D) and signs ``neg`` (0 / 1, or
    None: unipolar), ``sid_b`` (D,)."""
    code = jnp.take(ytab, sid_b * lay.vp + bb, mode="clip")
    return code if neg is None else code | neg << NEG_SHIFT


class Post(NamedTuple):
    """What ``counts`` applies to the int32 counts: ``fn(counts, meta)``, where
    every leaf of the pytree ``meta`` has the lead dim H; ``into(out, h0, counts,
    meta)`` (``pallas_assemble.into``), if given, does it for the head walk
    in place instead."""
    fn: Callable
    meta: Any = None
    into: Optional[Callable] = None


IDENTITY = Post(lambda acc, meta: acc)


def row_offsets(sid_b, L: int):
    """``2 * sid_b * (L + 1)``: the X row of ``(sid_b, k = 0, s_a = +1)``; a-side
    indices are ``row_offsets + 2 * k + neg_a`` (the rows of ``_row_tables``)."""
    return 2 * (L + 1) * sid_b


def _heads(meta, H: int, hc: int):
    """Each leaf ``(H, ...)`` -> ``(H // hc, hc, ...)``: the head walk's chunks."""
    def split(v):
        if v.shape[:1] != (H,):
            raise ValueError(f"post's per-head leaves need the lead dim H={H}, got {v.shape}")
        return v.reshape(H // hc, hc, *v.shape[1:])
    return jax.tree_util.tree_map(split, meta)


def counts(ro, co, table, lay, *, mode: str, p: int, L: int, G: int, cap: int,
           post: Post = IDENTITY):
    """ro: (H, N, D) int32, the X rows ``row_offsets(sid_b, L) + 2 * k + neg_a``;
    co: (H, M, D) int32, the b-side codes (``y_codes``); table: the flat
    signed int16 table. Returns
    ``post.fn(acc, post.meta)`` of the (H, N, M) int32 ``acc = sum_d
    table[ro ^ co]``. The head walk applies it per chunk of heads, to that
    chunk's counts and meta slices, so the int32 counts never exist whole:
    ``fn`` as the ``lax.map`` body, or ``post.into``, which writes the chunk's
    heads of ``out`` in place (a ``fori_loop``; the first chunk's call creates
    ``out``)."""
    fn, meta, into = post
    cols = columns(mode, p, G)
    W = width(mode, p, G)
    H, N, D = ro.shape
    M = co.shape[1]
    words, corr = _row_tables(table, lay, L, cols, W)
    hc, dc = plan(H, N, M, D, W + 4, cap)
    n = -(-D // dc)
    # padding: X row 0 (k = 0) and code 0 (no column): no count, correction bytes 0
    ro, co = _pad_to(ro, 2, n * dc), _pad_to(co, 2, n * dc)

    def counts_at(h0, d0, hs):
        """int32 counts of heads ``h0 .. h0 + hs``, inner indices ``d0 .. d0 + dc``."""
        r = lax.dynamic_slice(ro, (h0, 0, d0), (hs, N, dc))
        c = lax.dynamic_slice(co, (h0, 0, d0), (hs, M, dc))
        return _dot(_x_operand(r, words, corr), _y_operand(c, W))

    if hc < H:                  # head chunks, all of D in each; a loop: one chunk live
        metas = _heads(meta, H, hc)
        if into is not None:
            def step(k, out):
                m = jax.tree_util.tree_map(lambda v: v[k], metas)
                return into(out, k * hc, counts_at(k * hc, 0, hc), m)
            return lax.fori_loop(1, H // hc, step, step(0, None))
        out = lax.map(lambda v: fn(counts_at(v[0] * hc, 0, hc), v[1]),
                      (jnp.arange(H // hc, dtype=I32), metas))
        return jax.tree_util.tree_map(lambda y: y.reshape(H, *y.shape[2:]), out)

    acc = counts_at(0, 0, H)                        # no zero-filled accumulator to add to
    if n > 1:
        acc, _ = lax.scan(lambda a, i: (a + counts_at(0, i * dc, H), None), acc,
                          jnp.arange(1, n, dtype=I32))
    return fn(acc, meta)
