"""Implementations of the ``scmp-jax`` subcommands beyond ``demo``.

``scmp_jax.cli`` only wires argparse; the work lives here, one small module
per concern:

* ``progress``: optional tqdm progress bars (plain prints without tqdm);
* ``bench_cmd``: ``scmp-jax bench``, a thin front for ``python -m bench``;
* ``operands``: operand pairs for ``profile`` (``.npz`` files, or real
  operands captured from the MiniLM example);
* ``profile``: ``scmp-jax profile``, the kernel-level relative-MSE ablation
  grid ``stoc_len x halve x scramble`` (CSV, summary);
* ``plot``: the profile's figure (optional matplotlib);
* ``vectors`` / ``hexio``: ``scmp-jax export-vectors``, golden per-cycle
  streams and counts for an RTL testbench, as ``.npz`` and hex text files.
"""
