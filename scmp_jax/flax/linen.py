"""Flax linen ``QuantLinear``: FP4 weights, FP4-quantized activations, no bias (SPEC.md section 9).

Variables live in the ``"fp4"`` collection (see ``_core`` for the entries),
not in ``"params"``: ``jax.tree.map(lambda p: p.astype(bf16), variables["params"])``
leaves them untouched, and nothing is trainable (differentiating through the
layer raises ``NotDifferentiableError``). With ``grad="ste"`` the layer
trains instead: a float ``"params"`` ``kernel`` quantized in every call, with
the straight-through gradient of the exact float matmul.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from .._src import grad as GD
from ..fp4.config import check_weight_only
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
    Hadamard transform) or by ``from_dense`` / ``from_state_dict``.

    ``grad="ste"``: quantization-aware training. The float weight is a
    ``"params"`` entry ``kernel`` (in_features, features) (as ``nn.Dense``),
    quantized in every call (same bits as ``from_dense(kernel.T)``'s packed
    layer); gradients w.r.t. ``x`` and ``kernel`` are those of the exact
    ``T(x) @ T(kernel.T).T``. A transform, if any, is in ``"fp4"``.

    ``weight_only=True``: ``y = fp4.weight_only_matmul(x, W)``, the activation
    never quantized (no ``act_fmt``, no transform; the state has no
    ``act_global_scale``); the gradient w.r.t. ``x`` is exact, and with
    ``grad="ste"`` the kernel's is straight-through, ``x^T g``."""
    features: int
    fmt: Any = "mxfp4"
    act_fmt: Any = None
    quant_impl: Optional[str] = None
    matmul_impl: Optional[str] = None
    transform_size: Optional[int] = None
    kernel_init: Any = nn.initializers.lecun_normal()
    grad: Optional[str] = None
    weight_only: bool = False

    def _configs(self):
        """(weight config, activation config or None in weight-only mode), validated."""
        cfg = _core.resolve_config(self.fmt)
        wo = check_weight_only(self.weight_only, {"act_fmt": self.act_fmt,
                                                  "transform_size": self.transform_size})
        act = (None if wo else cfg if self.act_fmt is None
               else _core.resolve_config(self.act_fmt, "act_fmt"))
        _core.check_impl(self.quant_impl, "quant_impl")
        _core.check_impl(self.matmul_impl, "matmul_impl")
        GD.check_grad(self.grad, "QuantLinear")
        return cfg, act

    @nn.compact
    def __call__(self, x):
        cfg, act = self._configs()
        shape = tuple(getattr(x, "shape", ()))              # an FP4Tensor x fails in _core
        K = shape[-1] if shape else 0
        if act is None and self.has_variable(COLLECTION, "transform"):
            raise ValueError("variables['fp4']['transform'] has no use with weight_only=True "
                             "(the activation is not transformed or quantized)")
        if self.grad == "ste":
            kernel = self.param("kernel", self.kernel_init, (K, self.features), jnp.float32)
            if self.transform_size is not None and not self.has_variable(COLLECTION, "transform"):
                self.variable(COLLECTION, "transform", _core.hadamard, self.transform_size)
            t = (self.get_variable(COLLECTION, "transform")
                 if self.has_variable(COLLECTION, "transform") else None)
            return _core.forward_ste(x, jnp.transpose(kernel), t, cfg, act, self.quant_impl,
                                     self.matmul_impl)

        def build():
            w = self.kernel_init(self.make_rng("params"), (K, self.features), jnp.float32).T
            t = None if self.transform_size is None else _core.hadamard(self.transform_size)
            return _core.quantize_weight(w, cfg, t, self.quant_impl, act)

        state = {}
        if not self.has_variable(COLLECTION, "codes"):
            built = build()
            for k, v in built.items():
                self.variable(COLLECTION, k, lambda v=v: v)
        for k in _core.state_keys(act is None) + ("transform",):
            if self.has_variable(COLLECTION, k):
                state[k] = self.get_variable(COLLECTION, k)
        return _core.forward(x, state, cfg, act, self.quant_impl, self.matmul_impl)

    @classmethod
    def from_dense(cls, w, fmt="mxfp4", transform=None, *, act_fmt=None, quant_impl=None,
                   matmul_impl=None, grad=None, weight_only=False):
        """float weight ``w`` (out_features, in_features) (a linen ``Dense``
        kernel transposed) -> ``(module, variables)``; the weight is quantized
        as ``quantize(transform(w))`` (with ``grad="ste"``: kept float as the
        ``kernel`` ``w.T``, quantized in every call)."""
        m = cls(features=int(jnp.shape(w)[0]) if jnp.ndim(w) == 2 else -1, fmt=fmt,
                act_fmt=act_fmt, quant_impl=quant_impl, matmul_impl=matmul_impl, grad=grad,
                weight_only=weight_only)
        cfg, act = m._configs()
        check_weight_only(weight_only, {"transform": transform})
        if grad == "ste":
            extra = ({} if transform is None else
                     {COLLECTION: {"transform": jnp.asarray(transform, jnp.float32)}})
            return m, {"params": {"kernel": jnp.transpose(_core.check_weight(w))}, **extra}
        return m, {COLLECTION: _core.quantize_weight(w, cfg, transform, quant_impl, act)}

    @classmethod
    def from_state_dict(cls, state: dict, fmt="mxfp4", **kw):
        """Checkpoint entries (``to_state_dict(variables)["fp4"]``, arrays or
        NumPy) -> ``(module, variables)``; shapes checked against ``fmt``
        (``weight_only=True`` needs no ``act_global_scale`` and drops one)."""
        if not isinstance(state, dict) or "codes" not in state:
            raise ValueError("state must be a dict with 'codes', 'scales', 'global_scale', "
                             "'act_global_scale' (and optionally 'transform'; weight-only: "
                             "the first three)")
        if kw.get("grad") is not None:
            raise ValueError("from_state_dict builds the packed layer (grad=None); grad='ste' "
                             "trains a float weight: use from_dense(w, grad='ste')")
        M, Kh = jnp.shape(state["codes"])
        m = cls(features=int(M), fmt=fmt, **kw)
        cfg, act = m._configs()
        return m, {COLLECTION: _core.check_state(state, 2 * Kh, M, cfg, act is None)}
