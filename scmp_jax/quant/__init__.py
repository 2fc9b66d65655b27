"""FP -> int quantization to SC boundaries, and SmoothQuant."""
from .api import Quantized, quantize
from .smoothquant import (accumulate_act_scales, apply_smoothing, apply_smoothing_offline,
                          compute_smooth_scales)

__all__ = ["quantize", "Quantized", "accumulate_act_scales", "compute_smooth_scales",
           "apply_smoothing", "apply_smoothing_offline"]
