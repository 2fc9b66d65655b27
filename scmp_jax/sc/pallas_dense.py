"""Pallas (Triton backend) int8 matmul with an int32 accumulator, for ``dense``.

``acc[h] + x[h] @ y[h].T`` with x ``(H, N, K)`` int8, y ``(H, M, K)`` int8,
acc ``(H, N, M)`` int32 (updated in place: ``input_output_aliases``). One
program per ``(bn, bm)`` output tile walks K in steps of ``bk``; int8 x int8
dots with ``preferred_element_type=int32`` are exact (K steps >= 32: the
backend's K = 16 int8 dot is wrong, PALLAS_NOTES.md). N and M must be
multiples of the tile (``dense.counts`` pads once). Tiling from
``bench.sc_probe`` on the H200: 128 x 128 tiles, 4 warps, 3 stages.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .._backend import triton_params

__all__ = ["Tiling", "tiling", "matmul_acc"]

I32 = jnp.int32


@dataclasses.dataclass(frozen=True)
class Tiling:
    bn: int
    bm: int
    warps: int = 4
    stages: int = 3


def tiling(N: int, M: int) -> Tiling:
    clamp = lambda v: max(16, min(128, pl.next_power_of_2(max(1, v))))
    return Tiling(clamp(N), clamp(M))


def _kernel(acc_ref, x_ref, y_ref, o_ref, *, steps, bk):
    def step(i, acc):
        k0 = pl.multiple_of(i * bk, bk)
        return acc + lax.dot_general(x_ref[:, pl.ds(k0, bk)], y_ref[:, pl.ds(k0, bk)],
                                     (((1,), (1,)), ((), ())), preferred_element_type=I32)

    o_ref[...] = lax.fori_loop(0, steps, step, acc_ref[...])


@functools.partial(jax.jit, static_argnames=("tile", "interpret"), donate_argnums=(0,))
def matmul_acc(acc, x, y, *, tile: Tiling, interpret: bool):
    H, N, K = x.shape
    M = y.shape[1]
    bn, bm = tile.bn, tile.bm
    if N % bn or M % bm:
        raise ValueError(f"matmul_acc: (N, M) = {(N, M)} must be multiples of the tile "
                         f"{(bn, bm)}")
    bk = next(b for b in (128, 64, 32) if K % b == 0)
    return pl.pallas_call(
        functools.partial(_kernel, steps=K // bk, bk=bk),
        grid=(H, N // bn, M // bm),
        in_specs=[pl.BlockSpec((None, bn, bm), lambda h, i, j: (h, i, j)),
                  pl.BlockSpec((None, bn, K), lambda h, i, j: (h, i, 0)),
                  pl.BlockSpec((None, bm, K), lambda h, i, j: (h, j, 0))],
        out_specs=pl.BlockSpec((None, bn, bm), lambda h, i, j: (h, i, j)),
        out_shape=jax.ShapeDtypeStruct(acc.shape, I32),
        input_output_aliases={0: 0},
        interpret=interpret,
        **triton_params(interpret, tile.warps, tile.stages),
    )(acc, x, y)
