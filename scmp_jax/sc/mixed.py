"""Per-row / per-column stream lengths in one SC matmul (SPEC.md section 7,
``row_stoc_len`` and ``col_stoc_len``). 2D, per_row, chunk_d = 0.

Quantization does not depend on ``L`` (G is fixed), so operands are quantized
once. The count tables of every level are laid side by side in ONE signed
table (``MixedTables``): row ``n`` reads its level's part through a per-row
offset in ``ro``, so all rows of all levels take a single count pass (the
implementation's ``gather``: XLA or the Pallas kernel; ``run`` takes it and
the implementation's ``quantize`` as arguments). Element ``(n, m)`` uses ``min(L_row[n], L_col[m])``; with
``col_stoc_len`` there is one pass per distinct column level, the row lengths
clipped to it. ``L = 0`` gives +0.0 (pruned: not computed, even for NaN
inputs); a length outside the static ``levels`` gives NaN.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._src import ieee
from .config import SCConfig
from .pipeline import assemble
from .tables import enable_tables, layout

__all__ = ["MixedTables", "mixed_tables", "run"]

F32 = jnp.float32
I32 = jnp.int32


class MixedTables(NamedTuple):
    """Per level index ``i`` (``levels[i]``; the last index is the pruned level 0)."""
    table: jax.Array       # flat int16: positive parts of every level, gap, negated copy
    ktab: jax.Array        # flat int32: every level's k tables
    kbase: jax.Array       # (nlev + 1, D) int32: ktab offset of (level, d) (+ boundary)
    rbase: jax.Array       # (nlev + 1, D) int32: table offset of (level, d) (+ k * vp)
    f: jax.Array           # (nlev + 1,) float32: float32(q*q) / float32(L); 0 for L = 0


@functools.lru_cache(maxsize=32)
def mixed_tables(config: SCConfig, D: int, p: int, levels: tuple, G: int, scramble: str,
                 cap_bytes: int, q: int) -> tuple[MixedTables, int, int]:
    """Tables for positive ``levels``; returns (tables, sign shift, vp)."""
    parts, kparts = [], []
    kbase, rbase = [], []
    pos = koff = 0
    vp = layout(1, 1, G).vp
    for L in levels:
        t = enable_tables(config, D, p, L, G, scramble, cap_bytes)
        if t.table is None:
            raise ValueError(f"row_stoc_len / col_stoc_len: the count tables of level {L} "
                             f"exceed table_cap_bytes={cap_bytes}; raise it")
        lay = layout(t.streams_b.shape[0], L, G)
        n_pos = t.streams_b.shape[0] * lay.row_s
        parts.append(np.asarray(t.table)[:n_pos])
        kparts.append(np.asarray(t.ktab))
        kbase.append(koff + np.asarray(t.sid_a) * (G + 1))
        rbase.append(pos + np.asarray(t.sid_b) * lay.row_s)
        pos += n_pos
        koff += kparts[-1].shape[0]
    # pruned level (L = 0): k_table is all zero -> every lookup reads cum[., 0, .] = 0
    kparts.append(np.zeros(G + 1, np.int32))
    kbase.append(np.full(D, koff, np.int64))
    rbase.append(np.zeros(D, np.int64))
    shift = max(1, (pos - 1).bit_length())
    if 2 * ((1 << shift) + pos) > cap_bytes:
        raise ValueError(f"row_stoc_len / col_stoc_len: the tables of levels {levels} "
                         f"exceed table_cap_bytes={cap_bytes}; raise it")
    pos_tab = np.concatenate(parts)
    table = np.concatenate([pos_tab, np.zeros((1 << shift) - pos, np.int16), -pos_tab])
    f = [np.float32(q * q) / np.float32(L) for L in levels] + [np.float32(0)]
    with jax.ensure_compile_time_eval():
        mt = MixedTables(jnp.asarray(table), jnp.asarray(np.concatenate(kparts)),
                         jnp.asarray(np.stack(kbase).astype(np.int32)),
                         jnp.asarray(np.stack(rbase).astype(np.int32)),
                         jnp.asarray(np.array(f, np.float32)))
    return mt, shift, vp


def _level_index(lengths, levels):
    """Index into ``levels + (0,)`` per entry; -1 when not a level."""
    idx = jnp.full(lengths.shape, -1, I32)
    for i, L in enumerate(tuple(levels) + (0,)):
        idx = jnp.where(lengths == L, i, idx)
    return idx


def _counts(qa, qb, li, mt: MixedTables, shift, vp, st, gather):
    """Exact int32 ``(N, M)``. Rows are grouped by level for the count pass (an
    output tile then reads one level's table: faster than interleaved levels,
    docs/decisions.md) and put back in order afterwards."""
    order = jnp.argsort(li, stable=True)
    lv = jnp.maximum(li[order], 0)
    k = jnp.take(mt.ktab, mt.kbase[lv] + qa.boundary[order], mode="clip")     # (N, D)
    ro = mt.rbase[lv] + k * vp
    co = qb.boundary
    if st.mode == "bipolar":
        ro = ro | (qa.sign[order] < 0).astype(I32) << shift
        co = co | (qb.sign < 0).astype(I32) << shift
    acc = gather(ro.T[None], co.T[None], mt.table, st)[0]
    return jnp.zeros_like(acc).at[order].set(acc)


def run(a, b, smooth, row_len, col_len, mt: MixedTables, *, st, levels, shift, vp, has_col,
        quantize, gather):
    """float32 ``(N, M)``. ``row_len (N,)``/``col_len (M,)`` int32 (missing:
    2**p); ``quantize(a, b, smooth, st)`` and ``gather(ro, co, table, st)`` are
    the implementation's."""
    with ieee.soft_division(st.backend.soft_div):
        a, b = a.astype(F32), b.astype(F32)
        if smooth is not None:
            smooth = smooth.astype(F32)
        qa, qb, bad_a, bad_b = quantize(a, b, smooth, st)
        D = a.shape[-1]

        def one_pass(lens):
            li = _level_index(lens, levels)
            acc = _counts(qa, qb, li, mt, shift, vp, st, gather)
            return assemble(acc, qa, qb, D, st, f=mt.f[jnp.maximum(li, 0)][:, None]), li

        if not has_col:
            out, li = one_pass(row_len)
            unknown = jnp.broadcast_to(li[:, None] < 0, out.shape)
            eff = jnp.broadcast_to(row_len[:, None], out.shape)
        else:
            out = jnp.zeros((a.shape[0], b.shape[0]), F32)
            eff = jnp.minimum(row_len[:, None], col_len[None, :])
            for Lc in tuple(levels):
                part, _ = one_pass(jnp.minimum(row_len, Lc))
                out = jnp.where(col_len[None, :] == Lc, part, out)
            unknown = (_level_index(eff, levels) < 0) | (_level_index(col_len, levels) < 0)[None, :]
        bad = bad_a[:, None] | bad_b[None, :]
        out = jnp.where(bad, F32(jnp.nan), out)
        out = jnp.where(eff == 0, F32(0), out)
        return jnp.where(unknown, F32(jnp.nan), out)
