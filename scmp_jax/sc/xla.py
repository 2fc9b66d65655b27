"""The XLA (pure jnp/lax) SC enable-signal matmul: the reference every kernel
is tested against (SPEC.md sections 4-7). It never imports a Pallas module.

Operands are quantized by ``quant.xla`` (SmoothQuant ``(a / s, b * s)``
first), counted exactly by ``gather`` (one table lookup per product, the inner
dim walked in chunks with ``lax.scan``, so memory is ``O(N*M + tables)``:
never an ``(N, M, D)`` array) or by ``dense`` (``Static.counts``), and
assembled by the granularity (``pipeline``).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from ..quant import xla as QX
from . import counts as CT
from . import mixed, pipeline
from .static import Static
from .tables import EnableTables

__all__ = ["quantize_operands", "gather", "product", "sc_matmul", "sc_matmul_mixed"]

_GATHER_BUDGET = 1 << 22       # elements of one (dc, N, M) gather chunk


def quantize_operands(a, b, smooth, st: Static):
    """``(qa, qb, bad rows of a, bad rows of b)`` of float32 a, b (2D or 3D);
    SmoothQuant ``(a / s, b * s)`` first."""
    sa, sb = st.schemes()
    if smooth is not None:
        a, b = QX.smooth(a, b, smooth)
    (qa, bad_a), (qb, bad_b) = QX.quantize(a, sa), QX.quantize(b, sb)
    return qa, qb, bad_a, bad_b


def gather(ro, co, table, st: Static):
    """``acc[h, n, m] = sum_d table[ro[h, d, n] ^ co[h, d, m]]`` int32, exact:
    ``lax.scan`` over chunks of ``d`` of at most ``_GATHER_BUDGET`` lookups."""
    del st
    H, D, N = ro.shape
    M = co.shape[2]
    dc = int(max(1, min(D, _GATHER_BUDGET // max(1, H * N * M))))

    def body(acc, x):
        idx = x[0][:, :, :, None] ^ x[1][:, :, None, :]                  # (dc, H, N, M)
        c = jnp.take(table, idx, mode="clip").astype(jnp.int32)
        return acc + jnp.sum(c, axis=0, dtype=jnp.int32), None

    xs = (CT.chunks(jnp.moveaxis(ro, 1, 0), dc), CT.chunks(jnp.moveaxis(co, 1, 0), dc))
    acc, _ = lax.scan(body, jnp.zeros((H, N, M), jnp.int32), xs)
    return acc


def product(a, b, smooth, tabs: EnableTables, st: Static, fin):
    """``fin(acc, pipeline.meta(...))`` of float32 a, b."""
    return pipeline.product(a, b, smooth, tabs, st, fin, quantize=quantize_operands,
                            gather=gather)


@partial(jax.jit, static_argnames=("st",))
def sc_matmul(a, b, smooth, tabs: EnableTables, st: Static):
    """float32 ``(N, M)`` or ``(H, N, M)``; inputs already validated."""
    return pipeline.run(a, b, smooth, tabs, st, product)


@partial(jax.jit, static_argnames=("st", "levels", "shift", "vp", "has_col"))
def sc_matmul_mixed(a, b, smooth, row_len, col_len, mt: mixed.MixedTables, *, st: Static,
                    levels, shift, vp, has_col):
    """float32 ``(N, M)`` with per-row / per-column stream lengths (``mixed``)."""
    return mixed.run(a, b, smooth, row_len, col_len, mt, st=st, levels=levels, shift=shift,
                     vp=vp, has_col=has_col, quantize=quantize_operands, gather=gather)
