"""Shared pieces of the FP4 ``QuantLinear`` layers (SPEC.md section 9).

The layer state (a dict, kept outside the "params" collection so float
casts of params leave it alone):

* ``codes``: uint8 (M, K/2), packed e2m1 weight codes;
* ``scales``: uint8 (M, K/G), the weight scales' bit patterns;
* ``global_scale``: float32 (), the weight's global scale;
* ``act_global_scale``: float32 (), the activations' global scale;
* ``transform`` (optional): float32 (g, g) or (K/g, g, g), applied to the
  activations and (by ``quantize_weight``) to the weight before quantization,
  so an orthogonal transform leaves ``x @ w^T`` unchanged.

Forward: ``fp4.quantized_matmul(x, W, act config, transform)`` (=
``fp4.matmul(fp4.quantize(x, ...), W)``, one pass for the activation where it
can) -> float32 (..., M). Quantization and matmul backends are independent (``None`` |
``"xla"`` | ``"pallas"``). Differentiating it raises ``NotDifferentiableError``;
``forward_ste`` is the training form: a float weight quantized in every call,
the tangent that of the float ``T(x) @ T(w).T`` (straight-through).

Weight-only mode (``act_cfg`` None here): the state has no ``act_global_scale``
and no transform, the forward is ``fp4.weight_only_matmul(x, W)``, and the
gradient w.r.t. ``x`` is the exact ``g @ dequant(W)`` (nothing rounds ``x``);
``forward_ste`` adds the straight-through tangent ``x @ dw.T`` of the float weight.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import fp4
from .._src import grad as GD
from .._src.dispatch import IMPLEMENTATIONS
from ..fp4.linear.api import exact_linear
from ..fp4.matmul.weight_only import WHY as WHY_WEIGHT_ONLY
from ..fp4.matmul.weight_only import exact_weight_only
from ..fp4.quantize.api import ROUNDS_FP4
from ..fp4.tensor import SCALE_TYPES, FP4Tensor

__all__ = ["resolve_config", "check_impl", "quantize_weight", "check_state", "forward",
           "forward_ste", "hadamard", "check_weight", "STATE_KEYS", "state_keys"]

F32 = jnp.float32
STATE_KEYS = ("codes", "scales", "global_scale", "act_global_scale")
_E4M3_MAX = 448.0


def state_keys(weight_only: bool) -> tuple:
    """The entries of a layer's state (weight-only: the weight's alone)."""
    return STATE_KEYS[:3] if weight_only else STATE_KEYS


def resolve_config(fmt, name: str = "fmt") -> fp4.FP4Config:
    """"mxfp4" | "nvfp4" | FP4Config -> FP4Config (ValueError naming ``name``)."""
    if isinstance(fmt, fp4.FP4Config):
        return fmt
    if isinstance(fmt, str) and fmt.lower() in fp4.PRESETS:
        return fp4.PRESETS[fmt.lower()]
    raise ValueError(f"{name} must be an FP4Config or one of {tuple(fp4.PRESETS)}, got {fmt!r}")


def check_impl(impl, name: str):
    """``impl`` (None | "xla" | "pallas"), else ValueError naming ``name``."""
    if impl not in IMPLEMENTATIONS:
        names = tuple(i for i in IMPLEMENTATIONS if i is not None)
        raise ValueError(f"{name} must be None or one of {names}, got {impl!r}")
    return impl


def hadamard(g: int):
    """Orthonormal Hadamard matrix float32 (g, g), ``g`` a power of two."""
    if g < 1 or g & (g - 1):
        raise ValueError(f"transform_size must be a power of two, got {g}")
    h = np.ones((1, 1), np.float32)
    while h.shape[0] < g:
        h = np.block([[h, h], [h, -h]])
    return jnp.asarray(h / np.sqrt(g), F32)


def _weight_global_scale(w, cfg):
    """e4m3 scales: ``amax(|w|) / (scale_scale * 448)`` (the usual NVFP4 per-tensor
    scale, keeps every group scale in e4m3 range); e8m0: the config's."""
    default = jnp.asarray(cfg.global_scale, F32)
    if cfg.scale_dtype != "e4m3":
        return default
    amax = jnp.max(jnp.abs(w.astype(F32)))
    gs = amax / F32(cfg.scale_scale * _E4M3_MAX)
    ok = jnp.isfinite(gs) & (gs > 0) & jnp.isfinite(gs * F32(cfg.scale_scale))
    return jnp.where(ok, gs, default)


def check_weight(w):
    """ValueError unless ``w`` is a float (out_features, in_features) array."""
    if not hasattr(w, "dtype") or not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(f"w must be a float array (out_features, in_features), got {w!r:.80}")
    if w.ndim != 2:
        raise ValueError(f"w must be 2D (out_features, in_features), got shape {w.shape}")
    return w


def quantize_weight(w, cfg, transform, quant_impl, act_cfg) -> dict:
    """float (M, K) weight (rows = output features) -> layer state dict
    (``act_cfg`` None: weight-only, no activation entry)."""
    check_weight(w)
    gs = _weight_global_scale(w, cfg)
    t = None if transform is None else jnp.asarray(transform, F32)
    q = fp4.quantize(w, cfg, global_scale=gs, transform=t, implementation=quant_impl)
    state = {"codes": q.codes, "scales": q.scale_bytes, "global_scale": q.global_scale}
    if act_cfg is not None:
        state["act_global_scale"] = jnp.asarray(act_cfg.global_scale, F32)
    if t is not None:
        state["transform"] = t
    return state


def check_state(state, in_features, out_features, cfg, weight_only=False) -> dict:
    """ValueError naming the entry when a (loaded) state does not fit the layer;
    the entries the layer keeps, as arrays (weight-only: an ``act_global_scale``
    is dropped, a transform refused)."""
    want = {"codes": ((out_features, in_features // 2), jnp.uint8),
            "scales": ((out_features, in_features // cfg.group_size), jnp.uint8),
            "global_scale": ((), F32), "act_global_scale": ((), F32)}
    if weight_only:
        del want["act_global_scale"]
        if "transform" in state:
            raise ValueError("state['transform'] has no use with weight_only=True (the "
                             "activation is not transformed or quantized)")
    for k, (shape, dtype) in want.items():
        if k not in state:
            raise ValueError(f"state is missing {k!r}")
        v = state[k]
        if tuple(np.shape(v)) != shape or np.asarray(v).dtype != dtype:
            raise ValueError(f"state[{k!r}] must be {np.dtype(dtype).name} {shape}, got "
                             f"{np.asarray(v).dtype} {tuple(np.shape(v))}")
    return {k: jnp.asarray(v) for k, v in state.items()
            if not (weight_only and k == "act_global_scale")}


def _as_rows(x, K):
    """``x`` checked (float, last axis K) and at least 2D; whether it was 1D."""
    if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a float array (..., {K}), got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != K:
        raise ValueError(f"x must have last axis in_features={K}, got shape {x.shape}")
    return (x[None], True) if x.ndim == 1 else (x, False)


def _tensor(state, cfg) -> FP4Tensor:
    """The weight of a layer state as an ``FP4Tensor``."""
    codes = state["codes"]
    M, K = codes.shape[0], 2 * codes.shape[1]
    scales = jax.lax.bitcast_convert_type(state["scales"], SCALE_TYPES[cfg.scale_dtype])
    return FP4Tensor(codes, scales, state["global_scale"], cfg.group_size, cfg.scale_dtype,
                     cfg.rounding, (M, K))


def _linear(x, state, cfg, act_cfg, quant_impl, matmul_impl):
    w = _tensor(state, cfg)
    if act_cfg is None:
        return fp4.weight_only_matmul(x, w, implementation=matmul_impl)
    return fp4.quantized_matmul(x, w, act_cfg, global_scale=state["act_global_scale"],
                                transform=state.get("transform"), quant_implementation=quant_impl,
                                matmul_implementation=matmul_impl)


def forward(x, state, cfg, act_cfg, quant_impl, matmul_impl, op="QuantLinear"):
    """float (..., K) -> float32 (..., M); differentiating raises, naming ``op``."""
    x, squeeze = _as_rows(x, 2 * state["codes"].shape[1])
    hint = (f"construct {op}(..., grad='ste') to train it (a float weight quantized in every "
            "call, the straight-through gradient of the exact float matmul)")
    run = lambda x, s: _linear(x, s, cfg, act_cfg, quant_impl, matmul_impl)  # noqa: E731
    if act_cfg is None:                 # weight-only: exact in x, the packed state not trainable
        y = GD.call(run, (x, state), op=op, why=WHY_WEIGHT_ONLY, hint=hint, exact_in=(0,),
                    exact=lambda x, s: exact_weight_only(x, _tensor(s, cfg)))
    else:
        y = GD.call(run, (x, state), op=op, why=ROUNDS_FP4, hint=hint)
    return y[0] if squeeze else y


def forward_ste(x, w, transform, cfg, act_cfg, quant_impl, matmul_impl, op="QuantLinear"):
    """float (..., K), float weight ``w`` (M, K) -> float32 (..., M): the value of
    ``forward`` with ``quantize_weight(w, ...)`` (same bits), the tangent of
    ``T(x) @ T(w).T`` in ``x``, ``w`` and the transform."""
    x, squeeze = _as_rows(x, w.shape[1])
    if act_cfg is None:
        # weight-only: quantized once, outside the estimator (no tangent of its own);
        # the tangent is the exact one in x plus the straight-through x @ dw.T
        q = quantize_weight(jax.lax.stop_gradient(w), cfg, None, quant_impl, None)
        y = GD.call(lambda x, w, q: _linear(x, q, cfg, None, quant_impl, matmul_impl),
                    (x, w, q), op=op, grad="ste",
                    exact=lambda x, w, q: (exact_weight_only(x, _tensor(q, cfg))
                                           + GD.exact_matmul(jax.lax.stop_gradient(x), w)))
        return y[0] if squeeze else y

    def run(x, w, t):
        return _linear(x, quantize_weight(w, cfg, t, quant_impl, act_cfg), cfg, act_cfg,
                       quant_impl, matmul_impl)

    def exact(x, w, t):
        return exact_linear(x, w if t is None else fp4.block_transform(w, t), t)
    y = GD.call(run, (x, w, transform), op=op, grad="ste", exact=exact)
    return y[0] if squeeze else y
