"""Shared pieces of the fp4 Pallas kernels (SPEC.md section 9): exact float32
multiply and divide inside a kernel, the e2m1 value of a code nibble, the
kernels' scalar operands, padding and the split-K sum.

``interpret``: the kernel runs in interpret mode (off the GPU), where the
products and quotients are ``softfloat`` (integer, exact: XLA CPU would flush
subnormals); compiled they are one PTX ``mul.rn`` / ``div.rn`` each (IEEE,
subnormals kept). Kernels call ``mul`` / ``div`` through this module
(``K.div``), so a test can replace one for every kernel.
"""
from __future__ import annotations

import jax.numpy as jnp

from .._src.kernel_math import PtxMath
from . import softfloat as SF

__all__ = ["mul", "div", "value", "scaled", "alpha", "scalar_operands", "pad2", "split_sum",
           "padded_k"]

F32 = jnp.float32
I32 = jnp.int32
_TWO126 = 2.0 ** 126


def mul(a, b, interpret):
    """IEEE float32 product (subnormals kept)."""
    return SF.mul(a, b) if interpret else PtxMath.mul(a, b)


def div(a, b, interpret):
    """IEEE float32 quotient (subnormals kept)."""
    return SF.div(a, b) if interpret else PtxMath.div(a, b)


def value(c, high: bool, interpret):
    """bytes (int32 0..255) -> float32 e2m1 value of the low (or high) nibble, exact.

    The nibble ``s e e m`` placed at float32 bits 31 and 24..22 is the float
    ``v * 2^-126`` (e = 0: the subnormal ``m * 2^-127``), so one exact multiply by
    2^126 gives ``v``: 5 integer ops instead of the decoder's 12 (IEEE ``mul``,
    so the subnormal is not flushed; interpret mode multiplies bit patterns)."""
    if high:
        b = ((c & 0x70) << 18) | ((c & 0x80) << 24)
    else:
        b = ((c & 7) << 22) | ((c & 8) << 28)
    return mul(SF.from_bits(b), F32(_TWO126), interpret)


def scaled(c, high, s, interpret):
    """bytes (..., h), float32 scales broadcastable -> float32 ``v * s`` of one nibble
    (exact but for the e8m0 scale ``2^127`` times ``|v| >= 2``, which overflows to Inf)."""
    return mul(value(c, high, interpret), s, interpret)


def scalar_operands(*values):
    """float32 scalars -> (1,) float32 kernel operands (reshapes only: no XLA
    computation before the launch; e.g. kernels with a whole K range form
    ``alpha = gs_a * gs_w`` themselves)."""
    return tuple(jnp.asarray(v, F32).reshape(1) for v in values)


def alpha(ga_ref, gw_ref, shape, interpret):
    """``gs_a * gs_w`` (IEEE) broadcast to ``shape``, inside a kernel (a tensor
    operation: the PTX multiply is not used on scalars)."""
    return mul(jnp.full(shape, ga_ref[0], F32), gw_ref[0], interpret)


def pad2(x, r, c):
    """2D ``x`` zero-padded to (r, c) (no op when it has that shape)."""
    return jnp.pad(x, ((0, r - x.shape[0]), (0, c - x.shape[1]))) if x.shape != (r, c) else x


def split_sum(out, gs):
    """float32 (S, N, M) partials of the K ranges -> ``alpha * sum`` (S = 1: the
    kernel applied ``alpha``)."""
    return out[0] if out.shape[0] == 1 else out.sum(axis=0) * SF.mul(gs[0][0], gs[1][0])


def padded_k(K: int, bk: int, split: int) -> int:
    """Padded K of every split schedule: a multiple of ``bk * split``."""
    step = bk * split
    return -(-K // step) * step
