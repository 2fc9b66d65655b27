"""The SC matmul pipeline shared by both implementations (SPEC.md sections 5-7):
operands -> ``product(a, b, smooth, tabs, st, fin)`` -> float result, the
chunk_d walk, and the float assembly around the granularity's (``assemble``).

An implementation (``xla``, ``pallas``) supplies ``product``; the plain one,
``product(..., quantize=, gather=)`` here, quantizes both operands and counts
(``counts.accumulate``). Everything here is XLA.
"""
from __future__ import annotations

from functools import partial

import jax.numpy as jnp
from jax import lax

from .._src import ieee
from ..quant import xla as QX
from . import counts as CT
from .static import Static
from .tables import EnableTables

__all__ = ["meta", "assemble", "finish", "part", "product", "chunked", "run"]

F32 = jnp.float32


def meta(qa: QX.Quantized, qb: QX.Quantized, bad_a, bad_b):
    """What the float assembly reads: scales, zero points, row sums, bad rows."""
    keep = lambda q: QX.Quantized(None, None, q.scale, None, q.zp, q.rowsum)
    return keep(qa), keep(qb), bad_a, bad_b


def assemble(acc, qa, qb, D, st: Static, f=None):
    """Float assembly (SPEC.md section 6), shapes (..., N, M), by the
    granularity. ``f``: ``st.f``, or per row ``(N, 1)`` (mixed stream lengths)."""
    return st.granularity.assemble(acc, qa, qb, D=D, mode=st.mode, f=st.f if f is None else f)


def part(acc, m, *, D, st: Static):
    """One chunk_d chunk (2D, bipolar): its assembled part and its bad products."""
    qa, qb, bad_a, bad_b = m
    return ieee.separate(assemble(acc, qa, qb, D, st)), bad_a[:, None] | bad_b[None, :]


def finish(acc, m, *, D, st: Static):
    """The float result: assembly, NaN where a row or column is bad (SPEC.md 6, 7)."""
    qa, qb, bad_a, bad_b = m
    out = assemble(acc, qa, qb, D, st)
    return jnp.where(bad_a[..., :, None] | bad_b[..., None, :], F32(jnp.nan), out)


def product(a, b, smooth, tabs: EnableTables, st: Static, fin, *, quantize, gather):
    """``fin(acc, meta(qa, qb, bad rows of a, bad rows of b))``: ``quantize(a, b,
    smooth, st)`` then the counts with the implementation's ``gather``."""
    qa, qb, bad_a, bad_b = quantize(a, b, smooth, st)
    return CT.accumulate(qa, qb, tabs, st, fin, meta(qa, qb, bad_a, bad_b), gather=gather)


def chunked(a, b, smooth, tabs: EnableTables, st: Static, product):
    """chunk_d path: per chunk, per-row reciprocal quantization; ``out = out + part``
    in chunk order. Full chunks run in a ``lax.scan`` (program size independent
    of ``D / chunk_d``), the shorter tail chunk after them."""
    N, D = a.shape
    M = b.shape[0]
    c = st.chunk_d

    def step(carry, abs_):
        out, bad = carry
        ac, bc, sc = abs_
        n = ac.shape[1]
        sub = tabs._replace(sid_a=tabs.sid_a[:n], sid_b=tabs.sid_b[:n])
        part_c, bad_c = product(ac, bc, sc, sub, st, partial(part, D=n, st=st))
        return (out + part_c, bad | bad_c), None

    carry = (jnp.zeros((N, M), F32), jnp.zeros((N, M), bool))
    n_full = D // c
    sm = (lambda lo, hi: None) if smooth is None else (lambda lo, hi: smooth[lo:hi])
    if n_full:
        split = lambda x: jnp.moveaxis(x[..., :n_full * c].reshape(x.shape[:-1] + (n_full, c)),
                                       -2, 0)
        xs = (split(a), split(b), None if smooth is None else split(smooth))
        carry, _ = lax.scan(step, carry, xs)
    if D % c:
        carry, _ = step(carry, (a[:, n_full * c:], b[:, n_full * c:], sm(n_full * c, D)))
    out, bad = carry
    return jnp.where(bad, F32(jnp.nan), out)


def run(a, b, smooth, tabs: EnableTables, st: Static, product):
    """float32 ``(N, M)`` or ``(H, N, M)`` of validated inputs, by ``product``."""
    with ieee.soft_division(st.backend.soft_div):
        a = a.astype(F32)
        b = b.astype(F32)
        if smooth is not None:
            smooth = smooth.astype(F32)
        if st.chunk_d:
            return chunked(a, b, smooth, tabs, st, product)
        return product(a, b, smooth, tabs, st, partial(finish, D=a.shape[-1], st=st))
