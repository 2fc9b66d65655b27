"""The fp4 Pallas matmul schedules, one module each (``matmul.tilings`` names
them): ``gemv``, ``dp4a`` (both on the decode-rows grid of ``rows``),
``fused`` and ``dequant``."""
