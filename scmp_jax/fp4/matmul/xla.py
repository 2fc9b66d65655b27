"""FP4 x FP4 matmul in pure jnp (SPEC.md section 9): the XLA implementation
behind ``fp4.matmul.api`` and the reference the Pallas schedules are tested
against (no Pallas here)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import formats as FM
from .. import softfloat as SF

__all__ = ["matmul"]

F32 = jnp.float32


def matmul(a, w):
    """``alpha * (A @ W^T)`` with ``A = v_a * s_a``, ``W = v_w * s_w`` (group scales),
    ``alpha = gs_a * gs_w``; float32, in an order that does not depend on N or M.

    ``a``, ``w``: (codes, scale bytes, global scale, scale_dtype) of activations
    (..., N, K) and weights (M, K) -> float32 (..., N, M). K runs in chunks of
    ``c = min(G_a, G_w)`` elements (one scale per row and chunk): each chunk's dot
    of raw e2m1 values is exact in float32 (multiples of 1/4 below 36 c), so
    XLA's choice of dot algorithm cannot change it; chunk sums are scaled
    ``(S * s_a) * s_w`` (exact) and added in chunk order, then ``* alpha``. So
    the bits are the same for any row subset (sharded calls equal unsharded
    ones). On CPU, XLA flushes subnormal scales (e8m0 byte 0) in the products."""
    (ac, sab, gsa, dta), (wc, swb, gsw, dtw) = a, w
    lead, M = ac.shape[:-1], wc.shape[0]
    K = 2 * ac.shape[-1]
    c = min(K // sab.shape[-1], K // swb.shape[-1])

    def chunks(codes, sbytes, dtype):
        v = FM.e2m1_decode(FM.unpack(codes.reshape(-1, K // 2)))        # (R, K)
        s = FM.decode_scale(sbytes.reshape(v.shape[0], -1), dtype)      # (R, K/G)
        s = jnp.repeat(s, (K // s.shape[-1]) // c, axis=-1)            # (R, K/c)
        return v.reshape(v.shape[0], K // c, c).transpose(1, 0, 2), s.T

    va, sa = chunks(ac, sab, dta)
    vw, sw = chunks(wc, swb, dtw)

    def step(acc, x):
        xa, xw, ta, tw = x
        S = jnp.einsum("nk,mk->nm", xa, xw, preferred_element_type=F32)
        return acc + (S * ta[:, None]) * tw[None, :], None

    acc = jax.lax.scan(step, jnp.zeros((va.shape[1], M), F32), (va, vw, sa, sw))[0]
    return SF.mul(acc, SF.mul(gsa, gsw)).reshape(lead + (M,))
