"""scmp_jax: stochastic-computing and low-bit arithmetic, simulated exactly in JAX."""
# mp before flax: mp.calibrate drives flax.simulate, whose MP path reads mp.config
from . import mp, flax, fp4, quant, sc  # noqa: I001
from ._src.platform import on_gpu
from .fp4 import FP4Config, FP4Tensor, MXFP4, NVFP4
from .quant import (accumulate_act_scales, apply_smoothing, apply_smoothing_offline,
                    compute_smooth_scales)
from .sc import RNG, SNG, SCConfig, clear_caches, sc_matmul

__version__ = "0.1.0"

__all__ = ["sc_matmul", "clear_caches", "SCConfig", "RNG", "SNG", "quant", "sc", "fp4", "mp", "flax",
           "FP4Config", "FP4Tensor", "MXFP4", "NVFP4", "on_gpu", "accumulate_act_scales",
           "compute_smooth_scales", "apply_smoothing", "apply_smoothing_offline", "__version__"]
