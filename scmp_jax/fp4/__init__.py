"""FP4 (MXFP4 / NVFP4) quantization, dequantization and quantized matmul (SPEC.md section 9).

One folder per op: ``quantize/``, ``matmul/`` (schedules in
``matmul/schedules/``), ``linear/`` (``quantized_matmul``); shared pieces at
this level (``config``, ``formats``, ``softfloat``, ``tensor``, ``kernel``,
``backend``, ``sharding``)."""
from .config import MXFP4, NVFP4, PRESETS, FP4Config
from .formats import ROUNDINGS, SCALE_DTYPES
from .linear.api import quantized_matmul
from .matmul.api import matmul
from .matmul.weight_only import weight_only_matmul
from .quantize.api import block_transform, quantize
from .tensor import SCALE_TYPES, FP4Tensor, dequantize

__all__ = ["quantize", "dequantize", "matmul", "quantized_matmul", "weight_only_matmul",
           "block_transform", "FP4Tensor", "FP4Config", "MXFP4", "NVFP4", "PRESETS", "ROUNDINGS",
           "SCALE_DTYPES", "SCALE_TYPES"]
