"""scmp_jax: stochastic-computing and low-bit arithmetic, simulated exactly in JAX."""
from . import quant, sc
from .quant import (accumulate_act_scales, apply_smoothing, apply_smoothing_offline,
                    compute_smooth_scales)
from .sc import RNG, SNG, SCConfig, clear_caches, sc_matmul

__version__ = "0.1.0"

__all__ = ["sc_matmul", "clear_caches", "SCConfig", "RNG", "SNG", "quant", "sc", "accumulate_act_scales",
           "compute_smooth_scales", "apply_smoothing", "apply_smoothing_offline", "__version__"]
