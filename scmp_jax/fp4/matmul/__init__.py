"""``fp4.matmul``: ``api`` (the public function, dispatch), ``xla`` (the
reference), ``pallas`` (the kernel entry), ``tilings`` (one per schedule),
``heuristic`` (the schedule by shape), ``schedules`` (one module each).
Re-exports nothing: ``scmp_jax.fp4.matmul`` is the function."""
