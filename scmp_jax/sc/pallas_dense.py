"""Pallas (Triton backend) kernel of ``dense``: the expansion of table rows.

``expand_rows(words, idx)`` = ``words[idx]``: each (n, d) gets the int32
words of its table row (W int8 values, ``dense._row_tables``), one gather per
word from a table small enough for L1/L2. On the H200 it writes at the copy
rate (3.0-3.2 TB/s, like XLA's ``take``; ``bench.sc_probe``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .._backend import triton_params

__all__ = ["expand_rows"]

I32 = jnp.int32


def _expand_kernel(idx_ref, w_ref, o_ref):
    bn, dcb, q = o_ref.shape
    lane = lax.broadcasted_iota(I32, (bn, dcb, q), 2)
    o_ref[...] = w_ref[idx_ref[...][:, :, None] * q + lane]


@functools.partial(jax.jit, static_argnames=("interpret",))
def expand_rows(words, idx, *, interpret: bool):
    """words: (R, Q) int32 (Q a power of two); idx: (H, N, C) int32 in [0, R),
    N a multiple of 16, C of 32. Returns (H, N, C, Q) int32 ``words[idx]``:
    one gather per word from the table (small, read through L1/L2)."""
    H, N, C = idx.shape
    Q = words.shape[1]
    bn, dcb = min(16, N), min(32, C)
    return pl.pallas_call(
        _expand_kernel,
        grid=(H, N // bn, C // dcb),
        in_specs=[pl.BlockSpec((None, bn, dcb), lambda h, i, j: (h, i, j)),
                  pl.BlockSpec((words.size,), lambda h, i, j: (0,))],
        out_specs=pl.BlockSpec((None, bn, dcb, Q), lambda h, i, j: (h, i, j, 0)),
        out_shape=jax.ShapeDtypeStruct((H, N, C, Q), I32),
        interpret=interpret,
        **triton_params(interpret, 4),
    )(idx, words.reshape(-1))
