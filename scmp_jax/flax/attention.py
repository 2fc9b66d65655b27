"""``sc_attention_fn``: dot-product attention with both matmuls in SC.

Usable as ``attention_fn`` of linen ``nn.MultiHeadDotProductAttention`` and
nnx ``nnx.MultiHeadAttention``. Follows flax's ``dot_product_attention``:
query scaled by ``1/sqrt(head_dim)`` (in the compute dtype) before QK^T,
``bias`` added, ``mask`` (and nnx's ``is_causal``) filled with
``finfo(dtype).min``, softmax in float32 (cast back to the compute dtype),
dropout as flax when not deterministic, grouped-query heads repeated.
QK^T and PV run as ``sc_matmul(a, b, granularity, **sc_kwargs)`` with
``(batch*heads)`` as the leading dim of 3D operands:
``a = q (BH, Tq, d)``, ``b = k (BH, Tk, d)``; then ``a = P (BH, Tq, Tk)``,
``b = v^T (BH, d_v, Tk)``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ..sc.api import sc_matmul
from ._contract import INTERNAL_SCOPE

__all__ = ["sc_attention_fn"]


def _heads_first(x):
    """(..., T, H, d) -> (prod(...) * H, T, d)."""
    *b, T, H, d = x.shape
    x = x.reshape((math.prod(b), T, H, d)).transpose(0, 2, 1, 3)
    return x.reshape((-1, T, d))


def _sow(module, w):
    if module is None:
        return
    try:
        import flax.nnx as nnx
        if isinstance(module, nnx.Module):
            module.sow(nnx.Intermediate, "attention_weights", w)
            return
    except ImportError:                            # pragma: no cover
        pass
    module.sow("intermediates", "attention_weights", w)


def sc_attention_fn(granularity: str = "per_head", **sc_kwargs):
    """An ``attention_fn`` running QK^T and PV through ``sc_matmul``."""
    def mm(a, b):
        with jax.named_scope(INTERNAL_SCOPE):
            return sc_matmul(a, b, granularity, **sc_kwargs)

    def attention_fn(query, key, value, bias=None, mask=None, broadcast_dropout=True,
                     dropout_rng=None, dropout_rate=0.0, deterministic=False, dtype=None,
                     precision=None, module=None, force_fp32_for_softmax=False,
                     is_causal=False, **kwargs):
        del precision, force_fp32_for_softmax, kwargs       # softmax is always float32
        dtype = dtype or jnp.result_type(query, key, value)
        query, key, value = (jnp.asarray(x, dtype) for x in (query, key, value))
        *batch, Tq, H, d = query.shape
        Tk, Hk = key.shape[-3], key.shape[-2]
        if H != Hk:                                          # grouped-query attention
            if H % Hk:
                raise ValueError(f"query heads ({H}) must be a multiple of key heads ({Hk})")
            key = jnp.repeat(key, H // Hk, axis=-2)
            value = jnp.repeat(value, H // Hk, axis=-2)
        query = query / jnp.sqrt(d).astype(dtype)
        logits = mm(_heads_first(query), _heads_first(key))          # (BH, Tq, Tk)
        w = logits.reshape((*batch, H, Tq, Tk)).astype(dtype)
        if bias is not None:
            w = w + bias
        if mask is not None or is_causal:
            keep = jnp.ones((), bool) if mask is None else mask.astype(bool)
            if is_causal:
                keep = keep & jnp.tril(jnp.ones((Tq, Tk), bool))
            w = jnp.where(keep, w, jnp.finfo(dtype).min)
        w = jax.nn.softmax(w.astype(jnp.float32)).astype(dtype)
        _sow(module, w)
        if not deterministic and dropout_rate > 0.0:
            keep_prob = 1.0 - dropout_rate
            shape = ((1,) * (len(batch) + 1) + w.shape[-2:]) if broadcast_dropout else w.shape
            keep = jax.random.bernoulli(dropout_rng, keep_prob, shape)
            w = w * (keep.astype(dtype) / jnp.asarray(keep_prob, dtype))
        vt = _heads_first(value).transpose(0, 2, 1)                   # (BH, d_v, Tk)
        out = mm(w.reshape((-1, Tq, Tk)), vt)                         # (BH, Tq, d_v)
        out = out.reshape((*batch, H, Tq, -1))
        return jnp.moveaxis(out, -3, -2).astype(dtype)

    attention_fn.__name__ = attention_fn.__qualname__ = "sc_attention_fn"
    attention_fn.arithmetic = ("sc", dict(granularity=granularity, **sc_kwargs))
    return attention_fn
