"""Per-dimension streams: scramble, complement, prefix, Owen mask, grid
rescale (SPEC.md sections 2 and 3).

``side_streams(config, side, D, p, L, G, scramble)`` returns the ``(D, L)``
int64 values ``r'[d, t]`` that the comparators of inner index ``d`` see.
"""
from __future__ import annotations

import numpy as np

from .configs import normalize
from .rng import lfsr_sequence, sobol_sequence, true_random_sequence

__all__ = ["apply_scramble", "rng_sequence", "owen_masks", "side_streams", "OWEN_MODES",
           "RANDOM_MASK_SEED"]

OWEN_MODES = ("bitrev", "counter", "off", "random")
RANDOM_MASK_SEED = 0x5A5A5A5A


def apply_scramble(values: np.ndarray, perm, p: int) -> np.ndarray:
    """Bit permutation: output bit ``i`` = input bit ``perm[i]``."""
    perm = [int(s) for s in perm]
    if sorted(perm) != list(range(p)):
        raise ValueError(f"scramble must be a permutation of range({p}), got {perm}")
    values = np.asarray(values, dtype=np.int64)
    out = np.zeros_like(values)
    for i, src in enumerate(perm):
        out |= ((values >> src) & 1) << i
    return out


def rng_sequence(rng: dict, p: int) -> np.ndarray:
    """Full-length (``2**p``) sequence of one RNG pool entry."""
    kind = rng.get("type", "lfsr")
    if kind == "sobol":
        return sobol_sequence(p, rng.get("seed"), rng.get("seed_type", "q"))
    if kind == "lfsr":
        return lfsr_sequence(p, rng["seed"], rng["taps"])
    if kind == "true_random":
        return true_random_sequence(p, rng["seed"])
    raise ValueError(f"unknown RNG type {kind!r}")


def owen_masks(mode: str, D: int, p: int) -> np.ndarray:
    """Per-dimension XOR masks ``m[d]`` for ``d < D``."""
    B = 2 ** p
    d = np.arange(D, dtype=np.int64) % B
    if mode == "bitrev":
        out = np.zeros(D, dtype=np.int64)
        for i in range(p):
            out |= ((d >> i) & 1) << (p - 1 - i)
        return out
    if mode == "counter":
        return d
    if mode == "off":
        return np.zeros(D, dtype=np.int64)
    if mode == "random":
        gen = np.random.Generator(np.random.PCG64(RANDOM_MASK_SEED))
        return gen.integers(0, B, D).astype(np.int64)
    raise ValueError(f"scramble must be one of {OWEN_MODES}, got {mode!r}")


def side_streams(config, side: str, D: int, p: int, L: int, G: int,
                 scramble: str = "bitrev") -> np.ndarray:
    """``r'[d, t]`` for ``d < D``, ``t < L`` (SPEC.md section 3)."""
    B = 2 ** p
    config = normalize(config, D)
    pool = config["rng_pool"]
    # one prefix per distinct (pool entry, scramble, complement); rows index them
    prefix: dict[tuple, int] = {}
    seqs: dict[int, np.ndarray] = {}
    rows_of = np.empty(D, dtype=np.int64)
    prefixes = []
    for d, entry in enumerate(config["sng"][side][:D]):
        perm = entry.get("scramble")
        key = (int(entry["rng_id"]), None if perm is None else tuple(int(v) for v in perm),
               bool(entry.get("complement", False)))
        if key not in prefix:
            rid, perm, comp = key
            if rid not in seqs:
                seqs[rid] = rng_sequence(pool[rid], p)
            seq = seqs[rid]
            if perm is not None:
                seq = apply_scramble(seq, perm, p)
            if comp:
                seq = (B - 1) - seq
            prefix[key] = len(prefixes)
            prefixes.append(np.asarray(seq[:L], dtype=np.int64))
        rows_of[d] = prefix[key]
    r = np.stack(prefixes)[rows_of] if D else np.empty((0, L), np.int64)
    masks = owen_masks(scramble, D, p)[:, None]
    if G == B:
        return r ^ masks if L < B else r
    return ((r ^ masks) * G) // B
