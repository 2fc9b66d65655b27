"""Host-side enable tables, keyed by distinct stream (SPEC.md sections 3-4).

Many inner indices ``d`` share one stream (at full length the default config
has ONE stream per side; bitrev masks give at most ``2**p``), so tables are
built once per distinct stream and each ``d`` carries a stream id:

* ``k_table``: ``(Sa, V)`` int32, ``#{t < L : r'_a[s, t] < v}``
* ``cum``:     ``(Sb, L+1, V)`` int16, ``#{i < k : r'_b[s, i] < v}``

Results are cached per ``(config, p, L, G, scramble, D)`` (host NumPy, then
one device copy). ``cum`` is only built when it fits ``cap_bytes``; otherwise
the caller runs the stream path on ``streams_b`` (no ``cum`` at all).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .config import SCConfig

__all__ = ["OWEN_MODES", "owen_masks", "side_streams", "EnableTables", "enable_tables",
           "cum_bytes"]

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


def cum_bytes(n_streams: int, L: int, G: int) -> int:
    return n_streams * (L + 1) * (G + 1) * 2


class EnableTables(NamedTuple):
    """Device arrays for one ``(config, p, L, G, scramble, D)``."""
    ktab: jax.Array            # (Sa * V,) int32, flat
    sid_a: jax.Array           # (D,) int32
    sid_b: jax.Array           # (D,) int32
    cum: Optional[jax.Array]   # (Sb * (L+1) * V,) int16 flat, or None (stream path)
    streams_b: Optional[jax.Array]  # (Sb, L) int32 when cum is None


def _k_table(ra: np.ndarray, G: int) -> np.ndarray:
    srt = np.sort(ra, axis=1)
    v = np.arange(G + 1)
    return np.stack([np.searchsorted(row, v, side="left") for row in srt]).astype(np.int32)


def _cum(rb: np.ndarray, G: int) -> np.ndarray:
    S, L = rb.shape
    out = np.zeros((S, L + 1, G + 1), np.int16)
    for s in range(S):
        # row i+1 = row i + [v > r[i]]
        np.cumsum(rb[s][:, None] < np.arange(G + 1)[None, :], axis=0, out=out[s, 1:])
    return out


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
                            jnp.asarray(sid_b),
                            jnp.asarray(_cum(rb, G).reshape(-1)) if with_cum else None,
                            None if with_cum else jnp.asarray(rb))
