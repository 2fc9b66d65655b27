"""FP4 (MXFP4 / NVFP4) quantization, dequantization and quantized matmul (SPEC.md section 9)."""
from .api import (IMPLEMENTATIONS, SCALE_TYPES, FP4Tensor, block_transform, dequantize, matmul,
                  quantize, quantized_matmul, register_implementation)
from .config import MXFP4, NVFP4, PRESETS, FP4Config
from .formats import ROUNDINGS, SCALE_DTYPES

__all__ = ["quantize", "dequantize", "matmul", "quantized_matmul", "block_transform", "FP4Tensor",
           "FP4Config", "MXFP4", "NVFP4", "PRESETS", "ROUNDINGS", "SCALE_DTYPES", "SCALE_TYPES",
           "IMPLEMENTATIONS", "register_implementation"]
