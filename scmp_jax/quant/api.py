"""Public quantizers to SC boundaries (SPEC.md section 5).

``quantize(x, granularity, ...)`` returns a ``Quantized`` pytree (see
``scmp_jax.quant.xla``): integer codes, boundaries in ``[0, G]``, signs,
scales and (unipolar) zero points and row sums.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._src import ieee as _ieee
from .._src.platform import on_gpu
from .._src.dispatch import resolve_implementation
from . import xla as QX

__all__ = ["quantize", "Quantized"]

Quantized = QX.Quantized


def quantize(x, granularity: str = "per_row", *, mode: str = "bipolar", sc_prec: int = 8,
             rng_levels=None, group: int = 1, chunk: bool = False, implementation=None):
    """Quantize ``x`` (``(R, D)`` or ``(H, R, D)``, float) as one operand of ``sc_matmul``.

    granularity per_tensor | per_row (``group`` rows share a scale; ``chunk=True``
    is the reciprocal form the chunk_d path uses on each D-chunk) | per_head.
    ``implementation``: None (Pallas on GPU, else XLA) | "xla" | "pallas"
    (interpret mode off GPU); identical bits.
    """
    impl = resolve_implementation(implementation, pallas_ready=True)
    if granularity not in ("per_tensor", "per_row", "per_head"):
        raise ValueError(f"granularity must be per_tensor, per_row or per_head, got {granularity!r}")
    if mode not in ("bipolar", "unipolar"):
        raise ValueError(f"mode must be 'bipolar' or 'unipolar', got {mode!r}")
    if not isinstance(sc_prec, (int, np.integer)) or not 2 <= sc_prec <= 12:
        raise ValueError(f"sc_prec must be an int in [2, 12], got {sc_prec!r}")
    G = 2 ** sc_prec if rng_levels is None else rng_levels
    if not isinstance(G, (int, np.integer)) or not 1 <= G <= 2 ** sc_prec:
        raise ValueError(f"rng_levels must be an int in [1, 2**sc_prec], got {rng_levels!r}")
    if not isinstance(group, (int, np.integer)) or group < 1:
        raise ValueError(f"group must be an int >= 1, got {group!r}")
    if np.ndim(x) not in (2, 3):
        raise ValueError(f"x must be 2D or 3D, got shape {np.shape(x)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"x must be a float array, got dtype {jnp.result_type(x)}")
    if granularity == "per_head" and (np.ndim(x) != 3 or mode != "bipolar"):
        raise ValueError("per_head requires a 3D x and mode='bipolar'")
    if chunk and mode != "bipolar":
        raise ValueError("chunk=True requires mode='bipolar'")
    sch = QX.Scheme(granularity, mode, int(sc_prec), int(G), int(group), bool(chunk))
    return _quantize(jnp.asarray(x), sch, impl, not on_gpu(), _ieee.use_soft())


@partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _quantize(x, sch, impl, interpret, soft):
    x = x.astype(jnp.float32)
    with _ieee.soft_division(soft):
        if impl == "xla":
            return QX.quantize(x, sch)[0]
        from . import pallas as QP
        q, _ = QP.quantize(x if x.ndim == 3 else x[None], None, sch, interpret=interpret)
        if x.ndim == 2:
            q = jax.tree_util.tree_map(lambda v: v[0], q)      # per_head is 3D only
        return q
