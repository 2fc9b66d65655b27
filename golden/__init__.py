"""Bit-level NumPy golden model of scmp_jax: the executable form of SPEC.md.

Imports only NumPy and the standard library; never imports jax or scmp_jax.
"""
from . import configs, errors, fp4, mp, quant, rng, streams
from .errors import FLOAT_DTYPES
from .mp import sc_matmul_mixed
from .rng import (default_lfsr_taps, lfsr_sequence, lfsr_tap_sets, sobol_default_seed,
                  sobol_sequence, true_random_sequence)
from .sc import InvalidDtypeError, sc_matmul, sc_matmul_bitlevel, tables
from .smoothquant import (accumulate_act_scales, apply_smoothing, apply_smoothing_offline,
                          compute_smooth_scales)
from .streams import apply_scramble, owen_masks, side_streams

__all__ = [
    "configs", "errors", "fp4", "mp", "quant", "rng", "streams", "sc_matmul_mixed", "FLOAT_DTYPES",
    "sc_matmul", "sc_matmul_bitlevel", "tables", "InvalidDtypeError",
    "sobol_sequence", "sobol_default_seed", "lfsr_sequence", "lfsr_tap_sets",
    "default_lfsr_taps", "true_random_sequence",
    "apply_scramble", "owen_masks", "side_streams",
    "accumulate_act_scales", "compute_smooth_scales", "apply_smoothing",
    "apply_smoothing_offline",
]
