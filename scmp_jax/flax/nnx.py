"""Flax nnx ``NNXQuantLinear``: FP4 weights, FP4-quantized activations, no bias (SPEC.md section 9).

The FP4 entries (see ``_core``) are ``FP4State`` variables, not ``nnx.Param``:
``nnx.state(model, nnx.Param)`` does not hold them, so casts of params leave
them untouched. Checkpoints: ``nnx.to_pure_dict(nnx.state(model))`` and
``nnx.replace_by_pure_dict`` / ``load_state_dict``. Differentiating through the
layer raises ``NotDifferentiableError``; ``grad="ste"`` trains a float
``nnx.Param`` ``kernel`` instead (see ``NNXQuantLinear``).
"""
from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
from flax import nnx

from .._src import grad as GD
from ..fp4.config import check_weight_only
from . import _core

__all__ = ["NNXQuantLinear", "FP4State"]


class FP4State(nnx.Variable):
    """A quantized-weight entry (codes, scale bytes, global scales, transform)."""


class NNXQuantLinear(nnx.Module):
    """x float (..., in_features) -> float32 (..., out_features); see ``linen.QuantLinear``.

    Built from a float ``weight`` (out_features, in_features) if given, else from
    ``kernel_init`` with ``rngs``; ``transform`` ((g, g) or (K/g, g, g)) is
    applied to activations and weight. ``grad="ste"``: quantization-aware
    training, the weight kept as ``nnx.Param`` ``kernel`` (in_features,
    out_features) (as ``nnx.Linear``) and quantized in every call (same bits as
    the packed layer of that weight), gradients those of the exact float
    ``T(x) @ T(kernel.T).T``; ``state_dict()`` then returns the packed entries.
    ``weight_only=True``: as ``QuantLinear``'s (``fp4.weight_only_matmul``, no
    ``act_fmt``, no transform, no ``act_global_scale`` entry)."""

    def __init__(self, in_features: int, out_features: int, *, fmt: Any = "mxfp4",
                 act_fmt: Any = None, transform=None, quant_impl: Optional[str] = None,
                 matmul_impl: Optional[str] = None, weight=None, rngs: nnx.Rngs | None = None,
                 kernel_init=nnx.initializers.lecun_normal(), grad: Optional[str] = None,
                 weight_only: bool = False):
        self.cfg = _core.resolve_config(fmt)
        self.weight_only = check_weight_only(weight_only, {"act_fmt": act_fmt,
                                                           "transform": transform})
        self.act_cfg = (None if self.weight_only else self.cfg if act_fmt is None
                        else _core.resolve_config(act_fmt, "act_fmt"))
        self.quant_impl = _core.check_impl(quant_impl, "quant_impl")
        self.matmul_impl = _core.check_impl(matmul_impl, "matmul_impl")
        self.grad = GD.check_grad(grad, "NNXQuantLinear")
        self.in_features, self.out_features = int(in_features), int(out_features)
        if weight is None:
            if rngs is None:
                raise ValueError("rngs is required when no weight is given")
            weight = kernel_init(rngs.params(), (in_features, out_features), jnp.float32).T
        if tuple(jnp.shape(weight)) != (self.out_features, self.in_features):
            raise ValueError(f"weight must have shape (out_features, in_features) = "
                             f"{(self.out_features, self.in_features)}, got {jnp.shape(weight)}")
        if grad == "ste":
            self.kernel = nnx.Param(jnp.transpose(_core.check_weight(jnp.asarray(weight))))
            self.transform = (None if transform is None
                              else FP4State(jnp.asarray(transform, jnp.float32)))
            return
        state = _core.quantize_weight(weight, self.cfg, transform, quant_impl, self.act_cfg)
        self._set(state)

    def _set(self, state):
        self.codes = FP4State(state["codes"])
        self.scales = FP4State(state["scales"])
        self.global_scale = FP4State(state["global_scale"])
        self.act_global_scale = (None if self.weight_only
                                 else FP4State(state["act_global_scale"]))
        self.transform = FP4State(state["transform"]) if "transform" in state else None

    @classmethod
    def from_dense(cls, w, fmt="mxfp4", transform=None, **kw):
        """float ``w`` (out_features, in_features) -> layer (weight = quantize(transform(w)))."""
        if jnp.ndim(w) != 2:
            raise ValueError(f"w must be 2D (out_features, in_features), got shape {jnp.shape(w)}")
        M, K = jnp.shape(w)
        return cls(K, M, fmt=fmt, transform=transform, weight=w, **kw)

    def _transform(self):
        return None if self.transform is None else self.transform[...]

    def state_dict(self) -> dict:
        """The FP4 entries as a plain dict of arrays (``grad="ste"``: of the
        kernel quantized now)."""
        if self.grad == "ste":
            return _core.quantize_weight(jnp.transpose(self.kernel[...]), self.cfg,
                                         self._transform(), self.quant_impl, self.act_cfg)
        d = {k: getattr(self, k)[...] for k in _core.state_keys(self.weight_only)}
        if self.transform is not None:
            d["transform"] = self.transform[...]
        return d

    def load_state_dict(self, state: dict) -> None:
        """Replace the FP4 entries (checked against this layer's shapes and format)."""
        if self.grad == "ste":
            raise ValueError("load_state_dict needs the packed layer (grad=None); this layer "
                             "trains a float kernel (grad='ste')")
        self._set(_core.check_state(state, self.in_features, self.out_features, self.cfg,
                                    self.weight_only))

    def __call__(self, x):
        if self.grad == "ste":
            return _core.forward_ste(x, jnp.transpose(self.kernel[...]), self._transform(),
                                     self.cfg, self.act_cfg, self.quant_impl, self.matmul_impl,
                                     op="NNXQuantLinear")
        return _core.forward(x, self.state_dict(), self.cfg, self.act_cfg, self.quant_impl,
                             self.matmul_impl, op="NNXQuantLinear")
