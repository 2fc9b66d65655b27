"""Stream configurations as frozen, hashable values (SPEC.md section 2).

``SCConfig`` holds an RNG pool and, per side (``q`` feeds operand a, ``k``
operand b), either one ``SNG`` used by every inner index ``d`` or a tuple with
one ``SNG`` per ``d``. It is static under ``jax.jit``. ``as_config`` also
accepts the reference package's dict form.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Optional, Union

from . import rng as _rng

__all__ = ["RNG", "SNG", "SCConfig", "as_config"]

_KINDS = ("sobol", "lfsr", "true_random")


@dataclasses.dataclass(frozen=True)
class RNG:
    """One random source. ``kind``: sobol | lfsr | true_random.

    sobol: ``seed`` (tuple of p ints) or None for the default of ``side``;
    lfsr: ``seed`` (int, non-zero) and ``taps`` (tuple, None = default taps);
    true_random: ``seed`` (int) for ``random.Random``.
    """
    kind: str = "sobol"
    seed: Union[int, tuple, None] = None
    taps: Optional[tuple] = None
    side: str = "q"

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"config: unknown RNG type {self.kind!r}; expected one of {_KINDS}")
        if self.side not in ("q", "k"):
            raise ValueError(f"config: RNG side must be 'q' or 'k', got {self.side!r}")
        if isinstance(self.seed, list):
            object.__setattr__(self, "seed", tuple(int(s) for s in self.seed))
        if self.taps is not None:
            object.__setattr__(self, "taps", tuple(int(t) for t in self.taps))
        if self.kind in ("lfsr", "true_random") and self.seed is None:
            raise ValueError(f"config: an RNG of type {self.kind!r} needs a seed")
        if self.kind == "lfsr" and int(self.seed) == 0:
            raise ValueError("config: LFSR seed must be non-zero")

    def sequence(self, p: int):
        """Full-length (``2**p``) int64 sequence."""
        if self.kind == "sobol":
            return _rng.sobol(p, _rng.sobol_seed(p, self.side) if self.seed is None else self.seed)
        if self.kind == "lfsr":
            taps = _rng.default_lfsr_taps(p) if self.taps is None else self.taps
            return _rng.lfsr(p, int(self.seed), taps)
        return _rng.true_random(p, int(self.seed))

    def to_dict(self) -> dict:
        if self.kind == "sobol":
            d = {"type": "sobol", "seed_type": self.side}
            if self.seed is not None:
                d["seed"] = list(self.seed)
            return d
        d = {"type": self.kind, "seed": int(self.seed)}
        if self.kind == "lfsr":
            d["taps"] = None if self.taps is None else list(self.taps)
        return d


@dataclasses.dataclass(frozen=True)
class SNG:
    """A comparator input: pool entry ``rng_id``, optional bit permutation
    ``scramble`` (output bit i = input bit scramble[i]) and ``complement``."""
    rng_id: int = 0
    scramble: Optional[tuple] = None
    complement: bool = False

    def __post_init__(self):
        if self.scramble is not None:
            object.__setattr__(self, "scramble", tuple(int(s) for s in self.scramble))
        object.__setattr__(self, "rng_id", int(self.rng_id))
        object.__setattr__(self, "complement", bool(self.complement))


Side = Union[SNG, tuple]


@dataclasses.dataclass(frozen=True)
class SCConfig:
    rng_pool: tuple
    q: Side
    k: Side

    def __post_init__(self):
        object.__setattr__(self, "rng_pool", tuple(self.rng_pool))
        for name in ("q", "k"):
            side = getattr(self, name)
            if isinstance(side, list):
                object.__setattr__(self, name, tuple(side))
        for side in (self.q, self.k):
            for e in (side,) if isinstance(side, SNG) else side:
                if not isinstance(e, SNG):
                    raise ValueError(f"config: side entries must be SNG, got {type(e).__name__}")
                if not 0 <= e.rng_id < len(self.rng_pool):
                    raise ValueError(f"config: rng_id {e.rng_id} out of range for a pool of "
                                     f"{len(self.rng_pool)}")
        object.__setattr__(self, "_hash", hash((self.rng_pool, self.q, self.k)))

    def __hash__(self):
        return self._hash

    def entries(self, side: str, D: int) -> tuple:
        """The ``SNG`` of each ``d < D`` on ``side``; ValueError if too few."""
        s = self.q if side == "q" else self.k
        if isinstance(s, SNG):
            return (s,) * D
        if len(s) < D:
            raise ValueError(f"config: side {side!r} has {len(s)} entries, fewer than D={D}")
        return tuple(s[:D])

    # ----------------------------------------------------------- conversions
    @classmethod
    def from_dict(cls, d: dict) -> "SCConfig":
        """The reference's ``{"rng_pool": [...], "sng": {"q": [...], "k": [...]}}``."""
        if not isinstance(d, dict) or "rng_pool" not in d or "sng" not in d:
            raise ValueError("config dict needs 'rng_pool' and 'sng' keys")
        pool = []
        for r in d["rng_pool"]:
            kind = r.get("type", "lfsr")
            pool.append(RNG(kind=kind, seed=r.get("seed"), taps=r.get("taps"),
                            side=r.get("seed_type", "q")))
        sides = {}
        for name in ("q", "k"):
            if name not in d["sng"]:
                raise ValueError(f"config dict needs sng[{name!r}]")
            sides[name] = tuple(SNG(int(e["rng_id"]), e.get("scramble"),
                                    bool(e.get("complement", False))) for e in d["sng"][name])
        return cls(tuple(pool), sides["q"], sides["k"])

    def to_dict(self, D: int) -> dict:
        """The reference's dict form with ``D`` entries per side."""
        def side(name):
            return [{"rng_id": e.rng_id, "scramble": None if e.scramble is None else list(e.scramble),
                     "complement": e.complement} for e in self.entries(name, D)]
        return {"rng_pool": [r.to_dict() for r in self.rng_pool],
                "sng": {"q": side("q"), "k": side("k")}}

    # ----------------------------------------------------- reference shapes
    @classmethod
    def sobol_simple(cls) -> "SCConfig":
        """Default: A-side Sobol for a, B-side Sobol for b, any D."""
        return cls((RNG("sobol", side="q"), RNG("sobol", side="k")), SNG(0), SNG(1))

    @classmethod
    def sobol_antithetic(cls) -> "SCConfig":
        """``sobol_simple`` with b's values complemented."""
        return cls((RNG("sobol", side="q"), RNG("sobol", side="k")), SNG(0), SNG(1, None, True))

    @classmethod
    def shared_lfsr(cls, sc_prec: int, seed=None, taps=None) -> "SCConfig":
        """One LFSR; b reads it through the reversed-bit scramble. Seed default:
        the reference's 125 where it fits in ``sc_prec`` bits, else 1."""
        seed = _default_lfsr_seed(sc_prec) if seed is None else seed
        taps = _rng.default_lfsr_taps(sc_prec) if taps is None else tuple(taps)
        return cls((RNG("lfsr", seed, taps),), SNG(0),
                   SNG(0, tuple(range(sc_prec - 1, -1, -1))))

    @classmethod
    def independent_lfsr(cls, q_taps, k_taps, q_seed: int, k_seed: int,
                         q_scramble=None, k_scramble=None) -> "SCConfig":
        """One LFSR per side."""
        return cls((RNG("lfsr", q_seed, tuple(q_taps)), RNG("lfsr", k_seed, tuple(k_taps))),
                   SNG(0, q_scramble), SNG(1, k_scramble))

    @classmethod
    def per_element_scramble(cls, D: int, sc_prec: int, taps=None, seed=None,
                             k_reverse_of_q: bool = True, rng_seed: int = 0) -> "SCConfig":
        """Shared LFSR, a random bit permutation per d (b: the reverse of a's).
        Draws like the reference after ``random.seed(rng_seed)``."""
        seed = _default_lfsr_seed(sc_prec) if seed is None else seed
        taps = _rng.default_lfsr_taps(sc_prec) if taps is None else tuple(taps)
        gen = random.Random(rng_seed)
        q, k = [], []
        for _ in range(D):
            perm = list(range(sc_prec))
            gen.shuffle(perm)
            if k_reverse_of_q:
                perm_k = perm[::-1]
            else:
                perm_k = list(range(sc_prec))
                gen.shuffle(perm_k)
            q.append(SNG(0, tuple(perm)))
            k.append(SNG(0, tuple(perm_k)))
        return cls((RNG("lfsr", seed, taps),), tuple(q), tuple(k))

    @classmethod
    def fully_independent(cls, D: int, sc_prec: int, rng_seed: int = 0,
                          taps_choices=None) -> "SCConfig":
        """Every d of each side has its own LFSR with random maximal taps and seed."""
        choices = _rng.lfsr_tap_sets(sc_prec) if taps_choices is None else [
            tuple(t) for t in taps_choices]
        gen = random.Random(rng_seed)
        pool = []
        for _ in range(2 * D):
            taps = gen.choice(choices)
            pool.append(RNG("lfsr", gen.randint(1, 2 ** sc_prec - 1), tuple(taps)))
        return cls(tuple(pool), tuple(SNG(i) for i in range(D)),
                   tuple(SNG(D + i) for i in range(D)))


def _default_lfsr_seed(p: int) -> int:
    return 125 if 125 < 2 ** p else 1


def as_config(config) -> SCConfig:
    """None -> ``SCConfig.sobol_simple()``; dict -> converted; SCConfig as is."""
    if config is None:
        return SCConfig.sobol_simple()
    if isinstance(config, SCConfig):
        return config
    if isinstance(config, dict):
        return SCConfig.from_dict(config)
    raise ValueError(f"config must be None, an SCConfig or a dict, got {type(config).__name__}")
