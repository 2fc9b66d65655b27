"""FP -> int quantization to SC boundaries, pure jnp (SPEC.md section 5).

Three stages, shared with the Pallas kernels (``quant.pallas``):

1. ``row_stats``: per row ``max``, ``min`` and a non-finite flag;
2. ``row_params``: per-row scale, the factor each element is divided by
   (``s``, per_row) or multiplied by (``1 / s``, the reciprocal forms), zero
   point, and the rows whose outputs must be NaN (tiny arrays, XLA);
3. ``encode``: element-wise ``x_int``, boundary and sign, written once over an
   arithmetic object (``kernel_math.XlaMath`` here, ``kernel_math(interpret)`` in kernels).

Float math is float32, one rounding per written operation, in SPEC order;
``separate`` and ``div`` (``scmp_jax._src.ieee``) keep XLA from contracting,
reassociating or approximating it.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .._src import granularity as GR
from .._src.granularity import Granularity
from .._src import softfloat as SF
from .._src.ieee import div, max_nan, min_nan, separate
from .._src.kernel_math import XlaMath

__all__ = ["Quantized", "Scheme", "Stats", "Params", "XlaMath", "EPS", "qmax", "INT32_MAX",
           "check_rowsum", "smooth", "separate",
           "div", "row_stats", "row_params", "encode", "quantize"]

EPS = np.float32(1e-5)
F32 = jnp.float32
I32 = jnp.int32


class Quantized(NamedTuple):
    """``x_int`` float32 (..., R, D); ``boundary`` int32 in [0, G]; ``sign`` int32
    in {-1, 0, 1} (bipolar) ; ``scale`` float32 per row (..., R) or per head (H,);
    ``zp`` float32 per row and ``rowsum`` int32 per row (unipolar)."""
    x_int: jax.Array
    boundary: jax.Array
    scale: jax.Array
    sign: Optional[jax.Array] = None
    zp: Optional[jax.Array] = None
    rowsum: Optional[jax.Array] = None


def qmax(mode: str, p: int) -> int:
    return 2 ** (p - 1) - 1 if mode == "bipolar" else 2 ** p - 1


INT32_MAX = 2 ** 31 - 1


def check_rowsum(mode: str, p: int, D: int, op: str) -> None:
    """ValueError when the exact int32 unipolar row sums ``sum_d x_int``, up to
    ``D * q``, could exceed int32 (SPEC.md section 4.3)."""
    q = qmax(mode, p)
    if mode == "unipolar" and D * q > INT32_MAX:
        raise ValueError(f"{op}: the exact int32 row sum can reach D * (2**sc_prec - 1) = "
                         f"{D} * {q} = {D * q} > 2**31 - 1 = {INT32_MAX}; the largest D "
                         f"allowed here is {INT32_MAX // q}")


@dataclasses.dataclass(frozen=True)
class Scheme:
    """Static description of one operand's quantization (hashable)."""
    granularity: Granularity    # the strategy (``_src.granularity``), or its name
    mode: str                   # bipolar | unipolar
    p: int
    G: int
    group: int = 1              # per_row: rows sharing a scale
    chunk: bool = False         # per_row reciprocal form (one chunk of chunk_d)
    axes: tuple = ()            # mesh axes the operand is sharded over (per_tensor collectives)

    def __post_init__(self):
        object.__setattr__(self, "granularity", GR.get(self.granularity))

    @property
    def q(self) -> np.float32:
        return np.float32(qmax(self.mode, self.p))

    @property
    def divides(self) -> bool:
        """``x / s`` (per_row groups) instead of ``x * (1 / s)``."""
        return self.granularity.divides(self.chunk)

    @property
    def lo(self) -> np.float32:
        if self.mode == "unipolar":
            return np.float32(0)
        return self.granularity.lo(self.q)

    @property
    def ratio(self) -> np.float32:
        return np.float32(self.G) / self.q


def smooth(a, b, s):
    """SmoothQuant ``(a / s, b * s)`` (s along the last axis), float32, exact
    IEEE with subnormal operands and results on every backend (integer
    arithmetic: XLA's CPU flushes them; SPEC.md sections 7.3 and 7.8)."""
    return SF.div(a, s), SF.mul(b, s)


class Stats(NamedTuple):
    """Per row of ``(..., R, D)``: ``max``, ``min`` (NaN if the row holds a NaN),
    ``nonfinite`` (bool)."""
    max: jax.Array
    min: jax.Array
    nonfinite: jax.Array


class Params(NamedTuple):
    """Per row ``(..., R)``: ``factor`` (``s`` or ``1 / s``), ``zp`` (unipolar),
    ``bad`` (outputs must be NaN); ``scale`` as ``Quantized.scale``."""
    scale: jax.Array
    factor: jax.Array
    zp: Optional[jax.Array]
    bad: jax.Array


def row_stats(x) -> Stats:
    return Stats(max_nan(x, axis=-1), min_nan(x, axis=-1), ~jnp.all(jnp.isfinite(x), axis=-1))


def _pos0(x):
    """-0 -> +0 (a select: XLA may fold ``x + 0`` away)."""
    return jnp.where(x == 0, F32(0), x)


def row_params(stats: Stats, sch: Scheme) -> Params:
    """Scales, factors and zero points per row (SPEC.md section 5); which
    extremes a scale is formed from is the granularity's (``extremes``)."""
    q = sch.q
    mx, mn = sch.granularity.extremes(stats.max, stats.min, sch)
    if sch.mode == "bipolar":
        amax = jnp.maximum(jnp.maximum(jnp.abs(mx), jnp.abs(mn)), EPS)
        s = div(amax, q)
        zp = None
    else:
        s = div(jnp.maximum(mx - mn, EPS), q)
        zp = _pos0(jnp.clip(jnp.round(div(-mn, s)), F32(0), q))
    factor = s if sch.divides else div(1, s)
    scale, s, factor = sch.granularity.spread(s, factor, stats.max.shape)
    bad = ~jnp.isfinite(s) | stats.nonfinite
    return Params(scale, factor, zp, bad)


def encode(x, factor, zp, sch: Scheme, m=XlaMath):
    """Element-wise ``(x_int, boundary, sign)``; ``factor``/``zp`` broadcast
    against ``x``. ``x_int``: float32 (+0 for zero, 0 for NaN); ``boundary``
    int32 in [0, G]; ``sign`` int32 (bipolar) or None."""
    v = m.div(x, factor) if sch.divides else m.mul(x, factor)
    if sch.mode == "unipolar":
        v = m.add(v, zp)
    r = m.rne(v)
    r = jnp.where(jnp.isnan(r), F32(0), r)
    x_int = _pos0(jnp.minimum(jnp.maximum(r, sch.lo), sch.q))
    mag = jnp.abs(x_int) if sch.mode == "bipolar" else x_int
    bnd = m.rne(m.mul(mag, sch.ratio)).astype(I32)
    sign = None
    if sch.mode == "bipolar":
        sign = (x_int > 0).astype(I32) - (x_int < 0).astype(I32)
    return x_int, bnd, sign


def quantize(x, sch: Scheme) -> tuple[Quantized, jax.Array]:
    """``(Quantized, bad rows (..., R))`` of a float32 ``(..., R, D)``."""
    prm = row_params(row_stats(x), sch)
    zp = None if prm.zp is None else prm.zp[..., None]
    x_int, bnd, sign = encode(x, prm.factor[..., None], zp, sch)
    rowsum = None
    if sch.mode == "unipolar":
        rowsum = jnp.sum(x_int.astype(I32), axis=-1, dtype=I32)
    return Quantized(x_int, bnd, prm.scale, sign, prm.zp, rowsum), prm.bad
