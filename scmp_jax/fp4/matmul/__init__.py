"""``fp4.matmul``: ``api`` (the public function, dispatch), ``xla`` (the
reference), ``pallas`` (the kernel entry), ``tilings`` (one per schedule),
``heuristic`` (the schedule by shape), ``schedules`` (one module each),
``weight_only`` (``fp4.weight_only_matmul``: float activations, fp4 weights).
Re-exports nothing: ``scmp_jax.fp4.matmul`` is the function."""
