"""Granularity: how the rows of an operand share a quantization scale, one
strategy object per granularity (SPEC.md sections 5-7).

Each object holds everything that differs between granularities, so adding
one is a new subclass in ``_REGISTRY`` here (plus its golden model):

* validation (``check``): the operand ranks and modes it takes, and whether
  the inner dim may be split in chunks with per-chunk scales (``chunk_d``,
  an option of per_row);
* row parameters (``extremes``, ``divides``, ``lo``, ``spread``): which max /
  min each scale is formed from, ``x / s`` or ``x * (1 / s)``, the lowest
  bipolar level, and the shape the scale is kept in;
* float assembly of the exact SC counts: ``assemble`` in XLA,
  ``kernel_vectors`` / ``kernel_assemble`` for the Pallas assembly kernel;
* shard rules (``check_shards``, ``collective``): the row layouts it allows
  and whether its scale is reduced across shards (one ``pmax`` per operand).

Arguments are duck-typed (``Scheme``, ``Quantized`` of ``quant.xla``; a
kernel-math object of ``_src.kernel_math``): this module imports no op.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from .ieee import max_nan, min_nan, pmax_nan, separate

__all__ = ["Granularity", "PerTensor", "PerRow", "PerHead", "GRANULARITIES", "get",
           "group_reduce"]

F32 = jnp.float32


def group_reduce(v, g, fn):
    """Reduce per-row values ``(..., R)`` over blocks of ``g`` consecutive rows;
    returns the value of each row's block ``(..., R)``."""
    R = v.shape[-1]
    g = min(g, R)
    n = -(-R // g)
    pad = n * g - R
    if pad:
        v = jnp.concatenate([v, jnp.repeat(v[..., -1:], pad, axis=-1)], axis=-1)
    red = fn(v.reshape(v.shape[:-1] + (n, g)), axis=-1)
    return jnp.repeat(red, g, axis=-1, total_repeat_length=n * g)[..., :R]


@dataclasses.dataclass(frozen=True)
class Granularity:
    """Base: one scale per row (``per_row``-like), any rank and mode, no chunks.
    Instances are stateless and compare equal by class (jit static keys)."""
    name: ClassVar[str] = ""
    ranks: ClassVar[tuple] = (2, 3)          # operand ranks it takes
    modes: ClassVar[tuple] = ("bipolar", "unipolar")
    chunks: ClassVar[bool] = False           # chunk_d > 0 (bipolar, 2D) allowed
    collective: ClassVar[bool] = False       # sharded operands reduce the scale over their axes

    def __repr__(self) -> str:
        return self.name

    # validation -----------------------------------------------------------------
    def check(self, *, ndim: int, mode: str, chunk_d: int = 0) -> None:
        """ValueError when this granularity cannot take these operands."""
        if chunk_d and not (self.chunks and mode == "bipolar" and ndim == 2):
            names = " or ".join(f"granularity={g.name!r}" for g in _REGISTRY.values()
                                if g.chunks)
            raise ValueError(f"chunk_d > 0 requires {names}, mode='bipolar' and 2D inputs")
        if ndim not in self.ranks or mode not in self.modes:
            ranks = " or ".join(f"{r}D" for r in self.ranks)
            modes = " or ".join(f"mode={m!r}" for m in self.modes)
            raise ValueError(f"granularity={self.name!r} requires {ranks} inputs and {modes}")

    # row parameters ---------------------------------------------------------------
    def extremes(self, mx, mn, sch):
        """The max / min each row's scale is formed from, from per-row ``mx``/``mn``."""
        return mx, mn

    def divides(self, chunk: bool) -> bool:
        """``x / s`` instead of ``x * (1 / s)``."""
        return False

    def lo(self, q):
        """The lowest bipolar level (``-q``)."""
        return -q

    def spread(self, s, factor, rows):
        """``(scale as kept in Quantized, s per row, factor per row)``."""
        return s, s, factor

    # float assembly -------------------------------------------------------------
    def assemble(self, acc, qa, qb, *, D: int, mode: str, f):
        """float32 ``(..., N, M)`` from the exact int32 counts ``acc`` (SPEC.md
        section 6). ``f``: ``q*q / L``, a scalar or per row ``(N, 1)``."""
        # separate(): XLA would otherwise reorder (acc * f) * sab to pull the
        # constant f outward, and contract the unipolar sums into FMAs
        sep = separate
        raw = sep(acc.astype(F32) * f)
        sab = sep(qa.scale[..., :, None] * qb.scale[..., None, :])
        if mode == "bipolar":
            return raw * sab
        zpa, zpb = qa.zp[..., :, None], qb.zp[..., None, :]
        Sa = qa.rowsum.astype(F32)[..., :, None]
        Sb = qb.rowsum.astype(F32)[..., None, :]
        corr = (sep((-zpb) * Sa) - sep(zpa * Sb)) + sep(sep(np.float32(D) * zpa) * zpb)
        return (raw + corr) * sab

    def kernel_vectors(self, qa, qb, *, mode: str, f, hc: int, N: int):
        """``(rows, cols)``: the per-row ``(hc, N)`` and per-column ``(hc, M)``
        float32 vectors ``kernel_assemble`` reads (Pallas assembly)."""
        if mode == "bipolar":
            return [qa.scale], [qb.scale]
        return ([qa.scale, qa.zp, qa.rowsum.astype(F32)],
                [qb.scale, qb.zp, qb.rowsum.astype(F32)])

    def kernel_assemble(self, c, rows, cols, *, mode: str, f, D: int, m):
        """``assemble``'s arithmetic on one block (``c`` float32 counts), one
        ``m`` operation (``kernel_math``) per written SPEC operation."""
        sab = m.mul(rows[0], cols[0])
        val = m.mul(c, F32(f))
        if mode == "unipolar":
            (zpa, sa_sum), (zpb, sb_sum) = rows[1:3], cols[1:3]
            corr = m.add(m.add(m.mul(-zpb, sa_sum), -m.mul(zpa, sb_sum)),
                         m.mul(m.mul(F32(D), zpa), zpb))
            val = m.add(val, corr)
        return m.mul(val, sab)

    # sharding ---------------------------------------------------------------------
    def check_shards(self, operands, *, chunk_d: int) -> None:
        """ValueError for a row layout this granularity cannot run per shard.
        ``operands``: ``(name, rows sharded?, rows per shard, group)`` of a and b."""


@dataclasses.dataclass(frozen=True, repr=False)
class PerTensor(Granularity):
    """One scale for the whole operand (per shard: one ``pmax`` per operand)."""
    name: ClassVar[str] = "per_tensor"
    collective: ClassVar[bool] = True

    def extremes(self, mx, mn, sch):
        gmx, gmn = max_nan(mx), min_nan(mn)
        if sch.axes:                           # sharded operand: one collective each
            gmx, gmn = pmax_nan(gmx, sch.axes), -pmax_nan(-gmn, sch.axes)
        return jnp.broadcast_to(gmx, mx.shape), jnp.broadcast_to(gmn, mn.shape)


@dataclasses.dataclass(frozen=True, repr=False)
class PerRow(Granularity):
    """One scale per group of ``Scheme.group`` rows (``x / s``); with chunks of
    the inner dim (``chunk_d``) one per row and chunk, ``x * (1 / s)``."""
    name: ClassVar[str] = "per_row"
    chunks: ClassVar[bool] = True

    def extremes(self, mx, mn, sch):
        if sch.chunk:
            return mx, mn
        return group_reduce(mx, sch.group, max_nan), group_reduce(mn, sch.group, min_nan)

    def divides(self, chunk: bool) -> bool:
        return not chunk

    def check_shards(self, operands, *, chunk_d: int) -> None:
        for name, _, local, g in operands:
            if g > 1 and not chunk_d and local % g:
                raise ValueError(f"group_{name}={g} row groups would straddle shards of "
                                 f"{local} rows")


@dataclasses.dataclass(frozen=True, repr=False)
class PerHead(Granularity):
    """One scale per head of a 3D operand (bipolar; levels down to ``-(q + 1)``);
    the scale is kept per head ``(H,)``."""
    name: ClassVar[str] = "per_head"
    ranks: ClassVar[tuple] = (3,)
    modes: ClassVar[tuple] = ("bipolar",)

    def extremes(self, mx, mn, sch):
        return max_nan(mx, axis=-1), min_nan(mn, axis=-1)          # (H,)

    def lo(self, q):
        return -(q + 1)

    def spread(self, s, factor, rows):
        return (s,) + tuple(jnp.broadcast_to(v[:, None], rows) for v in (s, factor))

    @staticmethod
    def _head(qa, qb, f):
        return separate(f * separate(qa.scale * qb.scale))

    def assemble(self, acc, qa, qb, *, D: int, mode: str, f):
        return acc.astype(F32) * self._head(qa, qb, f)[:, None, None]

    def kernel_vectors(self, qa, qb, *, mode: str, f, hc: int, N: int):
        return [jnp.broadcast_to(self._head(qa, qb, f)[:, None], (hc, N))], []

    def kernel_assemble(self, c, rows, cols, *, mode: str, f, D: int, m):
        return m.mul(c, rows[0])

    def check_shards(self, operands, *, chunk_d: int) -> None:
        if any(sharded for _, sharded, _, _ in operands):
            raise ValueError("per_head needs the rows of a and b unsharded (shard the heads)")


_REGISTRY = {g.name: g for g in (PerTensor(), PerRow(), PerHead())}
GRANULARITIES = tuple(_REGISTRY)


def get(granularity) -> Granularity:
    """The strategy of a granularity name (a ``Granularity`` passes through)."""
    if isinstance(granularity, Granularity):
        return granularity
    if not isinstance(granularity, str) or granularity not in _REGISTRY:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    return _REGISTRY[granularity]
