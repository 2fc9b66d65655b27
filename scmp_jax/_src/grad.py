"""Differentiation through the simulated ops, explicit both ways (SPEC.md "Differentiation").

The simulated ops round (quantizers, fp4 codes, integer counts), so their
true derivative is zero almost everywhere and autodiff through the kernels
would return zeros (or fail inside Pallas). Each public op therefore runs its
computation through ``call``: one ``jax.custom_jvp`` at the API boundary whose
rule either raises ``NotDifferentiableError`` (``grad=None``, the default) or,
with ``grad="ste"``, returns the simulated value with the tangent of an exact
float function (a straight-through estimator). The kernels never see a JVP.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

__all__ = ["GRADS", "NotDifferentiableError", "check_grad", "call", "exact_matmul",
           "ROUNDS", "STE_HINT"]

GRADS = (None, "ste")
F32 = jnp.float32
ROUNDS = "its quantizers round, so the true gradient is zero almost everywhere"
STE_HINT = ("pass grad='ste' for a straight-through estimator (the gradient of the exact "
            "float matmul)")


class NotDifferentiableError(TypeError):
    """Differentiation reached a simulated op that was not asked for an estimator."""


def check_grad(grad, op: str):
    """``grad`` (None | "ste"), else ValueError naming the argument and ``op``."""
    if not (grad is None or (isinstance(grad, str) and grad == "ste")):
        raise ValueError(f"{op}: grad must be None or 'ste', got {grad!r}")
    return grad


def exact_matmul(a, b):
    """``a @ b.T`` over the last dim (batched over a leading dim), float32, HIGHEST."""
    return jnp.einsum("...nd,...md->...nm", jnp.asarray(a).astype(F32),
                      jnp.asarray(b).astype(F32), precision=jax.lax.Precision.HIGHEST,
                      preferred_element_type=F32)


def _live(t) -> bool:
    """A tangent that can be nonzero: not symbolic zero, not float0 (integer primal)."""
    return not isinstance(t, SymbolicZero) and jnp.issubdtype(t.dtype, jnp.inexact)


def call(fn, args: tuple, *, op: str, grad=None, exact=None, why: str = ROUNDS,
         hint: str = STE_HINT, exact_in: tuple = ()):
    """``fn(*args)`` with differentiation explicit.

    Differentiating w.r.t. any float leaf of ``args`` raises
    ``NotDifferentiableError`` ("{op} is not differentiable: {why}; {hint}")
    unless ``grad == "ste"``; then the value is still ``fn(*args)`` (same bits)
    and the tangent is that of ``exact(*args)``. ``exact_in``: positions of
    ``args`` in which the op does not round (``exact``'s tangent is the true
    one there), so their tangents need no ``grad="ste"``. Only traced leaves
    become operands of the ``custom_jvp`` (nothing else can carry a tangent);
    concrete ones (NumPy scalars the kernels read at trace time) stay closed over."""
    check_grad(grad, op)
    if exact_in and exact is None:
        raise ValueError(f"{op}: exact_in needs the exact function")
    leaves, tree = jax.tree_util.tree_flatten(args)
    sizes = [len(jax.tree_util.tree_leaves(a)) for a in args]
    free = {i for p, n in enumerate(sizes) if p in exact_in
            for i in range(sum(sizes[:p]), sum(sizes[:p]) + n)}
    idx = [i for i, v in enumerate(leaves) if isinstance(v, jax.core.Tracer)]
    if not idx:
        return fn(*args)

    def rebuild(dyn):
        full = list(leaves)
        for i, v in zip(idx, dyn):
            full[i] = v
        return jax.tree_util.tree_unflatten(tree, full)

    @jax.custom_jvp
    def f(*dyn):
        return fn(*rebuild(dyn))

    def rule(primals, tangents):
        live = [k for k, t in enumerate(tangents) if _live(t)]
        rounded = [k for k in live if idx[k] not in free]
        if rounded and (grad is None or exact is None):
            raise NotDifferentiableError(
                f"{op} is not differentiable: {why}; {hint}")
        y = f(*primals)              # the op itself: higher orders come back here
        if not live:
            return y, jax.tree.map(SymbolicZero.from_primal_value, y)

        def ex(*vals):
            full = list(primals)
            for k, v in zip(live, vals):
                full[k] = v
            return exact(*rebuild(full))
        _, dy = jax.jvp(ex, [primals[k] for k in live], [tangents[k] for k in live])
        return y, dy

    f.defjvp(rule, symbolic_zeros=True)
    return f(*[leaves[i] for i in idx])
