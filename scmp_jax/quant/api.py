"""Public quantizers to SC boundaries (SPEC.md section 5).

``quantize(x, granularity, ...)`` returns a ``Quantized`` pytree (see
``scmp_jax.quant.xla``): integer codes, boundaries in ``[0, G]``, signs,
scales and (unipolar) zero points and row sums. Validation and dispatch
happen here: the implementation is resolved once into a ``Backend``
(``_src.dispatch.resolve``) and the call goes to ``xla.quantize`` or
``pallas.quantize``.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._src import dispatch, ieee
from .._src import grad as GD
from .._src import granularity as GR
from .._src.dispatch import Backend
from .._src.errors import check_bool, check_float, is_int
from . import pallas as QP
from . import xla as QX

__all__ = ["quantize", "Quantized"]

Quantized = QX.Quantized
_WHY = "it rounds to integer codes, so the true gradient is zero almost everywhere"
_HINT = ("for a straight-through estimator differentiate through sc_matmul(..., grad='ste') "
         "instead")


def quantize(x, granularity: str = "per_row", *, mode: str = "bipolar", sc_prec: int = 8,
             rng_levels=None, group: int = 1, chunk: bool = False, implementation=None):
    """Quantize ``x`` (``(R, D)`` or ``(H, R, D)``, float) as one operand of ``sc_matmul``.

    granularity per_tensor | per_row (``group`` rows share a scale; ``chunk=True``
    is the reciprocal form the chunk_d path uses on each D-chunk) | per_head.
    ``implementation``: None (Pallas on GPU, else XLA) | "xla" | "pallas"
    (interpret mode off GPU); identical bits. Not differentiable: differentiating
    w.r.t. ``x`` raises ``NotDifferentiableError`` (``sc_matmul(..., grad="ste")``
    is the straight-through estimator of the whole matmul).
    """
    backend = dispatch.resolve(implementation, op="quantize")
    gran = GR.get(granularity)
    if mode not in ("bipolar", "unipolar"):
        raise ValueError(f"mode must be 'bipolar' or 'unipolar', got {mode!r}")
    if not is_int(sc_prec) or not 2 <= sc_prec <= 12:
        raise ValueError(f"sc_prec must be an int in [2, 12], got {sc_prec!r}")
    G = 2 ** sc_prec if rng_levels is None else rng_levels
    if not is_int(G) or not 1 <= G <= 2 ** sc_prec:
        raise ValueError(f"rng_levels must be an int in [1, 2**sc_prec], got {rng_levels!r}")
    if not is_int(group) or group < 1:
        raise ValueError(f"group must be an int >= 1, got {group!r}")
    if np.ndim(x) not in (2, 3):
        raise ValueError(f"x must be 2D or 3D, got shape {np.shape(x)}")
    x = check_float(x, "x")
    gran.check(ndim=np.ndim(x), mode=mode)
    if check_bool(chunk, "chunk") and mode != "bipolar":
        raise ValueError("chunk=True requires mode='bipolar'")
    QX.check_rowsum(mode, sc_prec, np.shape(x)[-1], "quantize")
    sch = QX.Scheme(gran, mode, int(sc_prec), int(G), int(group), bool(chunk))
    return GD.call(lambda x: _quantize(x, sch, backend), (jnp.asarray(x),), op="quant.quantize",
                   why=_WHY, hint=_HINT)


@partial(jax.jit, static_argnums=(1, 2))
def _quantize(x, sch: QX.Scheme, backend: Backend):
    x = x.astype(jnp.float32)
    with ieee.soft_division(backend.soft_div):
        if backend.pallas:
            return QP.quantize(x, None, sch, interpret=backend.interpret)[0]
        return QX.quantize(x, sch)[0]
