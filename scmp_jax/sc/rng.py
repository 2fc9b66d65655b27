"""Host-side random sources for building tables (SPEC.md section 1).

Vectorized NumPy, written independently of ``golden.rng`` (which steps one
cycle at a time): Sobol in closed form over the Gray code of the index, LFSRs
stepped for many registers at once. The golden tests assert both agree.
"""
from __future__ import annotations

import functools
import itertools
import random

import numpy as np

__all__ = ["sobol_seed", "sobol", "lfsr", "true_random", "lfsr_tap_sets", "default_lfsr_taps"]


def sobol_seed(p: int, side: str = "q") -> tuple[int, ...]:
    """Default seed: all ones for side ``q``; ``[1,1,1,1,9,1,41,255]``-style for ``k``."""
    if side == "q":
        return (1,) * p
    if p == 8:
        return (1, 1, 1, 1, 9, 1, 41, 255)
    return tuple(9 if (i == 4) else 41 if (i == 6) else 1 for i in range(p))


def check_sobol_seed(p: int, seed) -> tuple[int, ...]:
    seed = tuple(int(s) for s in seed)
    ok = len(seed) == p and seed[0] == 1 and all(
        s % 2 == 1 and 0 < s < (2 << i) for i, s in enumerate(seed))
    if not ok:
        raise ValueError(f"config: Sobol seed must have sc_prec={p} odd entries with seed[0]=1 "
                         f"and seed[i] < 2**(i+1), got {list(seed)}")
    return seed


def sobol(p: int, seed) -> np.ndarray:
    """``x[n]`` = XOR of direction numbers ``v[i]`` over the set bits of ``gray(n)``."""
    seed = check_sobol_seed(p, seed)
    v = np.array([s << (p - 1 - i) for i, s in enumerate(seed)], dtype=np.int64)
    n = np.arange(2 ** p, dtype=np.int64)
    gray = n ^ (n >> 1)
    bits = (gray[:, None] >> np.arange(p)) & 1
    out = np.zeros(2 ** p, dtype=np.int64)
    for i in range(p):
        out ^= bits[:, i] * v[i]
    return out


def _run_lfsrs(p: int, seeds: np.ndarray, tapmasks: np.ndarray, n: int) -> np.ndarray:
    """States of many LFSRs at once: ``(n, lanes)``."""
    reg = seeds.astype(np.int64).copy()
    out = np.empty((n, reg.size), dtype=np.int64)
    for t in range(n):
        out[t] = reg
        x = reg & tapmasks
        fb = np.zeros_like(x)
        for i in range(p):
            fb ^= (x >> i) & 1
        reg = (reg >> 1) | (fb << (p - 1))
    return out


def lfsr(p: int, seed: int, taps) -> np.ndarray:
    """Full-length (``2**p``) LFSR register sequence."""
    if int(seed) == 0:
        raise ValueError("config: LFSR seed must be non-zero")
    if not 0 < int(seed) < 2 ** p:
        raise ValueError(f"config: LFSR seed must be in [1, 2**{p}), got {seed}")
    taps = tuple(int(t) for t in taps)
    if not taps or any(not 0 <= t < p for t in taps):
        raise ValueError(f"config: LFSR taps must be bit positions in [0, {p}), got {list(taps)}")
    mask = 0
    for t in taps:          # a repeated tap cancels in the feedback XOR
        mask ^= 1 << t
    return _run_lfsrs(p, np.array([seed]), np.array([mask]), 2 ** p)[:, 0]


def true_random(p: int, seed: int) -> np.ndarray:
    """Python's ``random.Random(seed).randint(0, 2**p - 1)``, ``2**p`` draws."""
    gen = random.Random(seed)
    return np.array([gen.randint(0, 2 ** p - 1) for _ in range(2 ** p)], dtype=np.int64)


@functools.lru_cache(maxsize=None)
def _tap_search(p: int) -> tuple[tuple[int, ...], ...]:
    cands = [tuple(sorted((p - 1,) + c, reverse=True))
             for n in range(2, p + 1, 2) for c in itertools.combinations(range(p - 1), n - 1)]
    masks = np.array([sum(1 << t for t in c) for c in cands], dtype=np.int64)
    states = _run_lfsrs(p, np.ones(len(cands), np.int64), masks, 2 ** p)   # (2**p, C)
    period = 2 ** p - 1
    head = np.sort(states[:period], axis=0)
    distinct = np.all(np.diff(head, axis=0) != 0, axis=0)
    # the reference keeps a tap set when the first repeat comes right after
    # 2**p - 1 distinct values
    repeats = np.any(states[:period] == states[period][None, :], axis=0)
    return tuple(c for c, ok in zip(cands, distinct & repeats) if ok)


def lfsr_tap_sets(p: int) -> list[tuple[int, ...]]:
    """All maximal-length tap sets, in the reference's search order."""
    return list(_tap_search(p))


def default_lfsr_taps(p: int) -> tuple[int, ...]:
    found = _tap_search(p)
    if not found:
        raise ValueError(f"no maximal-length LFSR tap set exists for sc_prec={p}")
    return found[0]
