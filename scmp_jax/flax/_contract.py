"""Map a ``lax.dot_general`` contraction onto a row x row matmul ``a @ b.T``.

Any dot_general is a matmul after transposes and reshapes (no arithmetic):
lhs -> ``(N, D)`` (free dims to rows, contracting dims to D), rhs -> ``(M, D)``,
and with batch dims ``(H, N, D)`` / ``(H, M, D)`` (batch dims flattened to H,
the layout of ``sc_matmul(..., "per_head")``). The result is reshaped back to
dot_general's layout ``batch + lhs_free + rhs_free``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

#: name-stack scope around our own arithmetic: the interceptor never enters it
INTERNAL_SCOPE = "scmp_internal"


def _norm(dims, ndim):
    return tuple(int(d) % ndim if ndim else int(d) for d in dims)


def out_aval(lhs, rhs, dimension_numbers, preferred_element_type=None):
    """Shape and dtype ``lax.dot_general`` gives (also validates the dims)."""
    return jax.eval_shape(
        lambda a, b: lax.dot_general(a, b, dimension_numbers,
                                     preferred_element_type=preferred_element_type),
        jax.ShapeDtypeStruct(jnp.shape(lhs), jnp.result_type(lhs)),
        jax.ShapeDtypeStruct(jnp.shape(rhs), jnp.result_type(rhs)))


def contract(matmul2d, matmul3d, lhs, rhs, dimension_numbers, out_dtype):
    """dot_general(lhs, rhs, dimension_numbers) computed as ``matmul2d(a, b)``
    (``a (N,D)``, ``b (M,D)`` -> ``(N,M)``) or, with batch dims, ``matmul3d``
    (``(H,N,D)``, ``(H,M,D)`` -> ``(H,N,M)``); result cast to ``out_dtype``."""
    (lc, rc), (lb, rb) = dimension_numbers
    ln, rn = jnp.ndim(lhs), jnp.ndim(rhs)
    lc, lb, rc, rb = _norm(lc, ln), _norm(lb, ln), _norm(rc, rn), _norm(rb, rn)
    ls, rs = jnp.shape(lhs), jnp.shape(rhs)
    lf = tuple(i for i in range(ln) if i not in lc and i not in lb)
    rf = tuple(i for i in range(rn) if i not in rc and i not in rb)
    bshape = tuple(ls[i] for i in lb)
    lfs, rfs = tuple(ls[i] for i in lf), tuple(rs[i] for i in rf)
    H, N, M = math.prod(bshape), math.prod(lfs), math.prod(rfs)
    D = math.prod(ls[i] for i in lc)
    out_shape = bshape + lfs + rfs
    if 0 in (H, N, M, D):                      # empty: the exact result is zeros
        return jnp.zeros(out_shape, out_dtype)
    a = jnp.transpose(lhs, lb + lf + lc)
    b = jnp.transpose(rhs, rb + rf + rc)
    with jax.named_scope(INTERNAL_SCOPE):
        if lb:
            y = matmul3d(a.reshape(H, N, D), b.reshape(H, M, D))
        else:
            y = matmul2d(a.reshape(N, D), b.reshape(M, D))
    return jnp.reshape(y, out_shape).astype(out_dtype)
