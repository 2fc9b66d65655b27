"""``fp4.quantize``: ``api`` (the public function, dispatch), ``xla`` (the
reference), ``pallas`` (the kernels), ``encode`` (quantization inside a
kernel), ``params`` / ``thresholds`` (the kernels' parameters). Re-exports
nothing: ``scmp_jax.fp4.quantize`` is the function."""
