"""Stream configurations in the reference's dict form (SPEC.md section 2).

A config is ``{"rng_pool": [rng, ...], "sng": {"q": [sng, ...], "k": [sng, ...]}}``
with ``rng = {"type": "sobol"|"lfsr"|"true_random", "seed": ..., "taps": ...,
"seed_type": "q"|"k"}`` and ``sng = {"rng_id": int, "scramble": list|None,
"complement": bool}``; side ``q`` feeds operand a, side ``k`` operand b.

The builders draw their random choices from ``random.Random(rng_seed)`` in the
order the reference draws from the global ``random`` module, so
``random.seed(s); make_x(...)`` there equals ``x(..., rng_seed=s)`` here.
"""
from __future__ import annotations

import random

from .rng import default_lfsr_taps, lfsr_tap_sets

__all__ = [
    "sobol_simple",
    "sobol_antithetic",
    "shared_lfsr",
    "independent_lfsr",
    "per_element_scramble",
    "fully_independent",
    "normalize",
]


def _side(n, rng_id, scramble=None, complement=False):
    return [{"rng_id": rng_id, "scramble": None if scramble is None else list(scramble),
             "complement": complement} for _ in range(n)]


def sobol_simple(D: int) -> dict:
    """Default: A-side Sobol for every d of a, B-side Sobol for every d of b."""
    return {"rng_pool": [{"type": "sobol", "seed_type": "q"}, {"type": "sobol", "seed_type": "k"}],
            "sng": {"q": _side(D, 0), "k": _side(D, 1)}}


def sobol_antithetic(D: int) -> dict:
    """``sobol_simple`` with the b side complemented (``x -> 2**p - 1 - x``)."""
    cfg = sobol_simple(D)
    cfg["sng"]["k"] = _side(D, 1, complement=True)
    return cfg


def _seed(seed, p):
    # the reference's default 125 where it fits in p bits, else 1
    return (125 if 125 < 2 ** p else 1) if seed is None else seed


def shared_lfsr(D: int, p: int, seed=None, taps=None) -> dict:
    """One LFSR for both sides; b reads it through the reversed-bit scramble."""
    seed = _seed(seed, p)
    taps = default_lfsr_taps(p) if taps is None else list(taps)
    return {"rng_pool": [{"type": "lfsr", "seed": seed, "taps": taps}],
            "sng": {"q": _side(D, 0), "k": _side(D, 0, list(range(p - 1, -1, -1)))}}


def independent_lfsr(D: int, p: int, q_taps, k_taps, q_seed: int, k_seed: int,
                     q_scramble=None, k_scramble=None) -> dict:
    """Two LFSRs: every d of a uses the first, every d of b the second."""
    return {"rng_pool": [{"type": "lfsr", "seed": q_seed, "taps": list(q_taps)},
                         {"type": "lfsr", "seed": k_seed, "taps": list(k_taps)}],
            "sng": {"q": _side(D, 0, q_scramble), "k": _side(D, 1, k_scramble)}}


def per_element_scramble(D: int, p: int, taps=None, seed=None,
                         k_reverse_of_q: bool = True, rng_seed: int = 0) -> dict:
    """One shared LFSR; each d gets a random bit permutation (b: its reverse)."""
    seed = _seed(seed, p)
    taps = default_lfsr_taps(p) if taps is None else list(taps)
    gen = random.Random(rng_seed)
    q, k = [], []
    for _ in range(D):
        perm_q = list(range(p))
        gen.shuffle(perm_q)
        if k_reverse_of_q:
            perm_k = perm_q[::-1]
        else:
            perm_k = list(range(p))
            gen.shuffle(perm_k)
        q.append({"rng_id": 0, "scramble": perm_q, "complement": False})
        k.append({"rng_id": 0, "scramble": perm_k, "complement": False})
    return {"rng_pool": [{"type": "lfsr", "seed": seed, "taps": taps}], "sng": {"q": q, "k": k}}


def fully_independent(D: int, p: int, rng_seed: int = 0, taps_choices=None) -> dict:
    """Every d of each side has its own LFSR (random maximal taps and seed)."""
    choices = lfsr_tap_sets(p) if taps_choices is None else [list(t) for t in taps_choices]
    gen = random.Random(rng_seed)
    pool = []
    for _ in range(2 * D):
        taps = gen.choice(choices)
        pool.append({"type": "lfsr", "seed": gen.randint(1, 2 ** p - 1), "taps": list(taps)})
    return {"rng_pool": pool,
            "sng": {"q": [{"rng_id": i, "scramble": None, "complement": False} for i in range(D)],
                    "k": [{"rng_id": D + i, "scramble": None, "complement": False}
                          for i in range(D)]}}


def normalize(config: dict | None, D: int) -> dict:
    """Validate a dict config for ``D`` inner indices (default: ``sobol_simple``)."""
    if config is None:
        return sobol_simple(D)
    if not isinstance(config, dict) or "rng_pool" not in config or "sng" not in config:
        raise ValueError("config must be a dict with 'rng_pool' and 'sng' keys")
    pool = list(config["rng_pool"])
    for side in ("q", "k"):
        entries = config["sng"].get(side)
        if entries is None or len(entries) < D:
            raise ValueError(f"config side {side!r} needs at least D={D} entries, "
                             f"got {0 if entries is None else len(entries)}")
        for e in entries[:D]:
            if not 0 <= int(e["rng_id"]) < len(pool):
                raise ValueError(f"config rng_id {e['rng_id']} out of range for a pool of {len(pool)}")
    return config
