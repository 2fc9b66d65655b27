"""Random number sources, bit level (SPEC.md section 1).

Pure Python/NumPy. Every generator returns an int64 ndarray of ``n`` values
(default ``2**p``) in ``[0, 2**p)``, computed step by step exactly as the
hardware would: a Sobol generator XORs one direction number per cycle, an
LFSR shifts one bit per cycle.
"""
from __future__ import annotations

import functools
import itertools
import random

import numpy as np

__all__ = [
    "sobol_default_seed",
    "sobol_direction_numbers",
    "sobol_sequence",
    "lfsr_sequence",
    "true_random_sequence",
    "lfsr_tap_sets",
    "default_lfsr_taps",
]


def _check_prec(p: int) -> None:
    if not isinstance(p, (int, np.integer)) or isinstance(p, bool) or not 1 <= p <= 16:
        raise ValueError(f"sc_prec must be an int in [1, 16], got {p!r}")


def sobol_default_seed(p: int, side: str = "q") -> list[int]:
    """Default Sobol seed: all ones (side ``q``); the B-side (``k``) seed."""
    _check_prec(p)
    if side not in ("q", "k"):
        raise ValueError(f"side must be 'q' or 'k', got {side!r}")
    if side == "q":
        return [1] * p
    if p == 8:
        return [1, 1, 1, 1, 9, 1, 41, 255]
    seed = [1] * p
    if p >= 5:
        seed[4] = 9
    if p >= 7:
        seed[6] = 41
    return seed


def sobol_direction_numbers(p: int, seed) -> list[int]:
    """``v[i] = s[i] * 2**(p-1-i)`` after validating the seed."""
    _check_prec(p)
    seed = [int(s) for s in seed]
    if len(seed) != p:
        raise ValueError(f"Sobol seed must have sc_prec={p} entries, got {len(seed)}")
    if seed[0] != 1:
        raise ValueError(f"Sobol seed[0] must be 1, got {seed[0]}")
    for i, s in enumerate(seed):
        if s % 2 != 1 or not 0 < s < 2 ** (i + 1):
            raise ValueError(f"Sobol seed[{i}] must be odd and < 2**{i + 1}, got {s}")
    return [s << (p - 1 - i) for i, s in enumerate(seed)]


def sobol_sequence(p: int, seed=None, side: str = "q", n: int | None = None) -> np.ndarray:
    """Gray-code Sobol: output ``x``, then ``x ^= v[lowest zero bit of step]``."""
    if seed is None:
        seed = sobol_default_seed(p, side)
    v = sobol_direction_numbers(p, seed)
    n = 2 ** p if n is None else int(n)
    out = np.empty(n, dtype=np.int64)
    x = 0
    for step in range(n):
        out[step] = x
        c = 0
        while (step >> c) & 1:
            c += 1
        if c < p:
            x ^= v[c]
    return out


def _check_lfsr(p: int, seed: int, taps) -> list[int]:
    _check_prec(p)
    if int(seed) == 0:
        raise ValueError("LFSR seed must be non-zero")
    if not 0 < int(seed) < 2 ** p:
        raise ValueError(f"LFSR seed must be in [1, 2**{p}), got {seed}")
    taps = [int(t) for t in taps]
    if not taps or any(not 0 <= t < p for t in taps):
        raise ValueError(f"LFSR taps must be bit positions in [0, {p}), got {taps}")
    return taps


def lfsr_sequence(p: int, seed: int, taps, n: int | None = None) -> np.ndarray:
    """Fibonacci LFSR, right shift: output ``r``; ``r = (r >> 1) | (fb << (p-1))``."""
    taps = _check_lfsr(p, seed, taps)
    n = 2 ** p if n is None else int(n)
    out = np.empty(n, dtype=np.int64)
    r = int(seed)
    for step in range(n):
        out[step] = r
        fb = 0
        for t in taps:
            fb ^= (r >> t) & 1
        r = (r >> 1) | (fb << (p - 1))
    return out


def true_random_sequence(p: int, seed: int, n: int | None = None) -> np.ndarray:
    """``random.Random(seed).randint(0, 2**p - 1)`` drawn ``n`` times."""
    _check_prec(p)
    n = 2 ** p if n is None else int(n)
    gen = random.Random(seed)
    return np.array([gen.randint(0, 2 ** p - 1) for _ in range(n)], dtype=np.int64)


def _is_maximal(p: int, taps: list[int]) -> bool:
    # The reference's criterion, literally: step from seed 1, stop at the
    # first repeated value, maximal iff exactly 2**p - 1 distinct values
    # were seen (at most 2**p steps).
    period = 2 ** p - 1
    seen = set()
    r = 1
    for _ in range(period + 1):
        val = r
        fb = 0
        for t in taps:
            fb ^= (r >> t) & 1
        r = (r >> 1) | (fb << (p - 1))
        if val in seen:
            return len(seen) == period
        seen.add(val)
    return len(seen) == period


@functools.lru_cache(maxsize=None)
def _tap_sets(p: int, first_only: bool) -> tuple[tuple[int, ...], ...]:
    found = []
    for n_taps in range(2, p + 1, 2):
        for combo in itertools.combinations(range(p - 1), n_taps - 1):
            taps = sorted((p - 1,) + combo, reverse=True)
            if _is_maximal(p, taps):
                found.append(tuple(taps))
                if first_only:
                    return tuple(found)
    return tuple(found)


def lfsr_tap_sets(p: int) -> list[list[int]]:
    """Every maximal-length tap set for ``p`` bits, in the reference's search order."""
    _check_prec(p)
    return [list(t) for t in _tap_sets(p, False)]


def default_lfsr_taps(p: int) -> list[int]:
    """The first maximal-length tap set found (SPEC.md section 1)."""
    _check_prec(p)
    found = _tap_sets(p, True)
    if not found:
        raise ValueError(f"no maximal-length LFSR tap set exists for sc_prec={p}")
    return list(found[0])
