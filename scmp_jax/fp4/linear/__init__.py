"""``fp4.quantized_matmul`` (quantize the activation, then matmul): ``api``
(the public function), ``gemv`` and ``dequant`` (its one-pass kernels)."""
