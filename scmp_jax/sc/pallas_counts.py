"""Pallas (Triton backend) kernel for the SC count accumulation (SPEC.md section 4).

``acc[h, n, m] = sum_d table[ro[h, d, n] ^ co[h, d, m]]``: one int16 lookup
per product in the signed count table (``tables.Layout``: the XOR of the two
sign bits selects ``cum`` or ``-cum``), exact int32 accumulation. One program
per ``(bn, bm)`` output tile and slice of the inner dim (``splits`` slices are
summed by XLA, exact); the inner loop is a ``fori_loop`` unrolled by hand
(``unroll=`` is not supported by this backend). Off GPU the same kernel runs
with ``interpret=True``.

Indices are in range by construction: ``ro`` and ``co`` come from boundaries
clipped to ``[0, G]`` and ``k <= L``; padding uses index 0 (``cum[0, 0, 0] = 0``).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .._src.dispatch import triton_params

__all__ = ["Tiling", "tiling", "accumulate"]

I32 = jnp.int32
_SMS = 132            # streaming multiprocessors the heuristic fills (H100 SXM / H200)


@dataclasses.dataclass(frozen=True)
class Tiling:
    bn: int
    bm: int
    splits: int       # slices of the inner dim (split-K), summed afterwards
    warps: int
    unroll: int = 8


def _pow2_clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, pl.next_power_of_2(max(1, n))))


def tiling(H: int, N: int, M: int, D: int) -> Tiling:
    """Shape heuristic (``python -m bench.tune``; docs/decisions.md, "count
    kernel tiling"): 64x64 tiles with 4 warps, rows halved to 32 while the grid
    has fewer than two programs per SM, then the inner dim split."""
    bn, bm = _pow2_clamp(N, 16, 64), _pow2_clamp(M, 16, 64)
    count = lambda: H * pl.cdiv(N, bn) * pl.cdiv(M, bm)
    while count() < 2 * _SMS and bn > 32:
        bn //= 2
    splits = 1
    while count() * splits < 3 * _SMS // 2 and D // (2 * splits) >= 64:
        splits *= 2
    return Tiling(bn, bm, splits, 4)


def _kernel(ro_ref, co_ref, t_ref, out_ref, *, n_steps, unroll):
    def step(j, acc):
        for u in range(unroll):
            d = j * unroll + u
            idx = ro_ref[d, :][:, None] ^ co_ref[d, :][None, :]
            acc = acc + t_ref[idx].astype(I32)
        return acc

    bn, bm = out_ref.shape
    out_ref[...] = lax.fori_loop(0, n_steps, step, jnp.zeros((bn, bm), I32))


def _pad(x, sizes):
    widths = [(0, s - n) for n, s in zip(x.shape, sizes)]
    return jnp.pad(x, widths) if any(w for _, w in widths) else x


@functools.partial(jax.jit, static_argnames=("interpret", "tile"))
def accumulate(ro, co, table, *, interpret: bool, tile: Tiling | None = None):
    """ro: (H, D, N) int32; co: (H, D, M) int32; table: flat int16.
    Returns (H, N, M) int32."""
    H, D, N = ro.shape
    M = co.shape[2]
    t = tile or tiling(H, N, M, D)
    bn, bm, S, U = t.bn, t.bm, t.splits, t.unroll
    Np, Mp = pl.cdiv(N, bn) * bn, pl.cdiv(M, bm) * bm
    Ds = pl.cdiv(pl.cdiv(D, S), U) * U                # inner indices per split
    ro = _pad(ro, (H, S * Ds, Np)).reshape(H, S, Ds, Np)
    co = _pad(co, (H, S * Ds, Mp)).reshape(H, S, Ds, Mp)
    T = table.shape[0]
    out = pl.pallas_call(
        functools.partial(_kernel, n_steps=Ds // U, unroll=U),
        grid=(H * S, Np // bn, Mp // bm),
        in_specs=[
            pl.BlockSpec((None, None, Ds, bn), lambda g, i, j: (g // S, g % S, 0, i)),
            pl.BlockSpec((None, None, Ds, bm), lambda g, i, j: (g // S, g % S, 0, j)),
            pl.BlockSpec((T,), lambda g, i, j: (0,)),
        ],
        out_specs=pl.BlockSpec((None, None, bn, bm), lambda g, i, j: (g // S, g % S, i, j)),
        out_shape=jax.ShapeDtypeStruct((H, S, Np, Mp), I32),
        interpret=interpret,
        name=f"sc_counts_{bn}x{bm}_s{S}_u{U}",
        **triton_params(interpret, t.warps),
    )(ro, co, table)
    out = out[:, :, :N, :M]
    return out[:, 0] if S == 1 else jnp.sum(out, axis=1, dtype=I32)
