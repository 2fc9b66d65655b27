"""Host-side enable tables, keyed by distinct stream (SPEC.md sections 3-4).

Many inner indices ``d`` share one stream (at full length the default config
has ONE stream per side; bitrev masks give at most ``2**p``), so tables are
built once per distinct stream and each ``d`` carries a stream id:

* ``k_table``: ``(Sa, V)`` int32, ``#{t < L : r'_a[s, t] < v}``
* ``cum``:     ``(Sb, L+1, V)`` int16, ``#{i < k : r'_b[s, i] < v}``, stored
  with its negation as one flat signed table (``Layout``), so a signed count
  ``sign_a * sign_b * c`` is one lookup at ``ro ^ co``.

Results are cached per ``(config, p, L, G, scramble, D)`` (host NumPy, then
one device copy). The table is only built when it fits ``cap_bytes``;
otherwise the caller builds it chunk by chunk of ``d`` from ``streams_b``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .config import SCConfig

__all__ = ["OWEN_MODES", "owen_masks", "side_streams", "EnableTables", "enable_tables",
           "cum_bytes", "Layout", "layout", "signed_table"]

OWEN_MODES = ("bitrev", "counter", "off", "random")
_RANDOM_MASK_SEED = 0x5A5A5A5A


def owen_masks(mode: str, D: int, p: int) -> np.ndarray:
    """XOR mask per inner index (SPEC.md section 3)."""
    B = 2 ** p
    d = np.arange(D, dtype=np.int64) % B
    if mode == "bitrev":
        rev = np.array([int(format(i, f"0{p}b")[::-1], 2) for i in range(B)], dtype=np.int64)
        return rev[d]
    if mode == "counter":
        return d
    if mode == "off":
        return np.zeros(D, np.int64)
    if mode == "random":
        return np.random.Generator(np.random.PCG64(_RANDOM_MASK_SEED)).integers(0, B, D).astype(
            np.int64)
    raise ValueError(f"scramble must be one of {OWEN_MODES}, got {mode!r}")


def _permute_bits(seq: np.ndarray, perm, p: int) -> np.ndarray:
    if sorted(perm) != list(range(p)):
        raise ValueError(f"config: scramble must be a permutation of range({p}), got {list(perm)}")
    weights = np.zeros(p, dtype=np.int64)
    weights[np.asarray(perm)] = 1 << np.arange(p)     # input bit perm[i] -> output bit i
    bits = (seq[:, None] >> np.arange(p)) & 1
    return bits @ weights


@functools.lru_cache(maxsize=256)
def side_streams(config: SCConfig, side: str, D: int, p: int, L: int, G: int,
                 scramble: str) -> tuple[np.ndarray, np.ndarray]:
    """Distinct prefix streams ``(S, L)`` int32 and the stream id of each ``d`` ``(D,)``."""
    B = 2 ** p
    use_mask = G != B or L < B
    masks = owen_masks(scramble, D, p) if use_mask else np.zeros(D, np.int64)
    keys: dict = {}
    sid = np.empty(D, np.int32)
    for d, e in enumerate(config.entries(side, D)):
        key = (e.rng_id, e.scramble, e.complement, int(masks[d]))
        sid[d] = keys.setdefault(key, len(keys))
    base: dict = {}
    rows = np.empty((len(keys), L), np.int64)
    for (rid, perm, comp, mask), s in keys.items():
        if rid not in base:
            base[rid] = config.rng_pool[rid].sequence(p)
        seq = base[rid]
        if perm is not None:
            seq = _permute_bits(seq, perm, p)
        if comp:
            seq = (B - 1) - seq
        r = seq[:L] ^ mask
        rows[s] = r if G == B else (r * G) // B
    return rows.astype(np.int32), sid


class Layout(NamedTuple):
    """Index layout of the signed count table (all static ints).

    ``cum[s, k, v]`` lives at ``s * row_s + k * vp + v`` (``vp`` = next power of
    two >= V, so ``v`` occupies the low bits); the negated copy starts at
    ``1 << shift`` (>= the positive part), so a product's index is
    ``ro ^ co`` with ``ro = s * row_s + k * vp | neg_a << shift`` and
    ``co = v | neg_b << shift``: the XOR of the two sign bits picks the copy.
    """
    vp: int
    row_s: int
    shift: int
    size: int              # entries of the flat table

    # decoders of the two index kinds (int arrays; tests/sc/test_config.py checks them)
    def row(self, ro):
        """``s * (L + 1) + k`` of an a-side index ``ro``."""
        return (ro & ((1 << self.shift) - 1)) >> (self.vp.bit_length() - 1)

    def level(self, co):
        """``v`` of a b-side index ``co``."""
        return co & ((1 << self.shift) - 1)

    def neg(self, idx):
        """The sign bit of either index."""
        return idx >> self.shift


def layout(n_streams: int, L: int, G: int) -> Layout:
    vp = 1 << (G + 1 - 1).bit_length()
    row_s = (L + 1) * vp
    pos = n_streams * row_s
    shift = max(1, (pos - 1).bit_length())
    return Layout(vp, row_s, shift, (1 << shift) + pos)


def cum_bytes(n_streams: int, L: int, G: int) -> int:
    return 2 * layout(n_streams, L, G).size


def signed_table(rb, G: int):
    """Flat int16 ``[cum, 0..., -cum]`` (see ``Layout``) from streams ``(S, L)``;
    jnp ops, usable on host constants and inside a trace (chunked path)."""
    S, L = rb.shape
    lay = layout(S, L, G)
    v = jnp.arange(lay.vp, dtype=jnp.int32)
    below = (jnp.asarray(rb, jnp.int32)[:, :, None] < v).astype(jnp.int16)   # (S, L, vp)
    cum = jnp.concatenate([jnp.zeros((S, 1, lay.vp), jnp.int16),
                           jnp.cumsum(below, axis=1, dtype=jnp.int16)], axis=1)
    cum = jnp.where(v <= G, cum, jnp.int16(0)).reshape(-1)               # v > G never read
    gap = jnp.zeros(((1 << lay.shift) - cum.shape[0],), jnp.int16)
    return jnp.concatenate([cum, gap, -cum])


class EnableTables(NamedTuple):
    """Device arrays for one ``(config, p, L, G, scramble, D)``."""
    ktab: jax.Array            # (Sa * V,) int32, flat
    sid_a: jax.Array           # (D,) int32
    sid_b: jax.Array           # (D,) int32
    table: Optional[jax.Array]  # flat int16 signed table (Layout), or None (chunked path)
    streams_b: jax.Array       # (Sb, L) int32


def _k_table(ra: np.ndarray, G: int) -> np.ndarray:
    srt = np.sort(ra, axis=1)
    v = np.arange(G + 1)
    return np.stack([np.searchsorted(row, v, side="left") for row in srt]).astype(np.int32)


@functools.lru_cache(maxsize=64)
def enable_tables(config: SCConfig, D: int, p: int, L: int, G: int, scramble: str,
                  cap_bytes: int) -> EnableTables:
    ra, sid_a = side_streams(config, "q", D, p, L, G, scramble)
    rb, sid_b = side_streams(config, "k", D, p, L, G, scramble)
    with_cum = cum_bytes(rb.shape[0], L, G) <= cap_bytes
    # concrete device arrays even when first called under a jit trace (the
    # cache outlives the trace)
    with jax.ensure_compile_time_eval():
        return EnableTables(jnp.asarray(_k_table(ra, G).reshape(-1)), jnp.asarray(sid_a),
                            jnp.asarray(sid_b), signed_table(rb, G) if with_cum else None,
                            jnp.asarray(rb))
