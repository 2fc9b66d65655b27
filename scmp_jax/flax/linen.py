"""Flax linen ``QuantLinear``: FP4 weights, FP4-quantized activations, no bias (SPEC.md section 9).

Variables live in the ``"fp4"`` collection (see ``_core`` for the entries),
not in ``"params"``: ``jax.tree.map(lambda p: p.astype(bf16), variables["params"])``
leaves them untouched, and nothing is trainable.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from . import _core

__all__ = ["QuantLinear"]

COLLECTION = "fp4"


class QuantLinear(nn.Module):
    """``y = fp4.matmul(fp4.quantize(T(x)), W)``: x float (..., K) -> float32 (..., features).

    ``fmt``: weight format ("mxfp4" | "nvfp4" | FP4Config); ``act_fmt``:
    activation format (default ``fmt``). ``quant_impl`` / ``matmul_impl``:
    backend of the activation quantizer / the matmul (None | "xla" |
    "pallas"). Built by ``init`` (a ``kernel_init`` weight (features, K) drawn
    from the "params" rng, quantized; ``transform_size=g`` adds an orthonormal
    Hadamard transform) or by ``from_dense`` / ``from_state_dict``."""
    features: int
    fmt: Any = "mxfp4"
    act_fmt: Any = None
    quant_impl: Optional[str] = None
    matmul_impl: Optional[str] = None
    transform_size: Optional[int] = None
    kernel_init: Any = nn.initializers.lecun_normal()

    def _configs(self):
        cfg = _core.resolve_config(self.fmt)
        act = cfg if self.act_fmt is None else _core.resolve_config(self.act_fmt, "act_fmt")
        _core.check_impl(self.quant_impl, "quant_impl")
        _core.check_impl(self.matmul_impl, "matmul_impl")
        return cfg, act

    @nn.compact
    def __call__(self, x):
        cfg, act = self._configs()
        K = jnp.shape(x)[-1] if jnp.ndim(x) else 0

        def build():
            w = self.kernel_init(self.make_rng("params"), (K, self.features), jnp.float32).T
            t = None if self.transform_size is None else _core.hadamard(self.transform_size)
            return _core.quantize_weight(w, cfg, t, self.quant_impl, act)

        state = {}
        if not self.has_variable(COLLECTION, "codes"):
            built = build()
            for k, v in built.items():
                self.variable(COLLECTION, k, lambda v=v: v)
        for k in _core.STATE_KEYS + ("transform",):
            if self.has_variable(COLLECTION, k):
                state[k] = self.get_variable(COLLECTION, k)
        return _core.forward(x, state, cfg, act, self.quant_impl, self.matmul_impl)

    @classmethod
    def from_dense(cls, w, fmt="mxfp4", transform=None, *, act_fmt=None, quant_impl=None,
                   matmul_impl=None):
        """float weight ``w`` (out_features, in_features) (a linen ``Dense``
        kernel transposed) -> ``(module, variables)``; the weight is quantized
        as ``quantize(transform(w))``."""
        m = cls(features=int(jnp.shape(w)[0]) if jnp.ndim(w) == 2 else -1, fmt=fmt,
                act_fmt=act_fmt, quant_impl=quant_impl, matmul_impl=matmul_impl)
        cfg, act = m._configs()
        state = _core.quantize_weight(w, cfg, transform, quant_impl, act)
        return m, {COLLECTION: state}

    @classmethod
    def from_state_dict(cls, state: dict, fmt="mxfp4", **kw):
        """Checkpoint entries (``to_state_dict(variables)["fp4"]``, arrays or
        NumPy) -> ``(module, variables)``; shapes checked against ``fmt``."""
        if not isinstance(state, dict) or "codes" not in state:
            raise ValueError("state must be a dict with 'codes', 'scales', 'global_scale', "
                             "'act_global_scale' (and optionally 'transform')")
        M, Kh = jnp.shape(state["codes"])
        m = cls(features=int(M), fmt=fmt, **kw)
        cfg, _ = m._configs()
        _core.check_state(state, 2 * Kh, M, cfg)
        return m, {COLLECTION: {k: jnp.asarray(v) for k, v in state.items()}}
