"""Run an unmodified flax model with SC / FP4 matmuls: ``simulate(model, rules)``.

Design (jaxpr level, no monkeypatching of jax):

1. Trace ``model.apply`` (linen) or the nnx module's ``__call__`` with
   ``jax.make_jaxpr``. While tracing, every module method call opens a
   ``jax.named_scope`` marker ``scmp_path<i>`` naming the module path (linen:
   ``nn.intercept_methods``; nnx: each submodule of a private copy of the
   module gets a subclass whose ``__call__`` opens the scope). So each
   equation's name stack tells the innermost module that emitted it.
2. Re-evaluate the jaxpr with a small interpreter: every ``dot_general``
   equation (what ``lax.dot_general``, ``jnp.einsum``, ``jnp.matmul``,
   ``jnp.dot``, ``@`` all lower to) is matched against the rules and, if a
   rule says so, computed by ``sc_matmul`` / ``fp4`` (``_contract``); all
   other equations are bound unchanged. Calls (``jit``, ``closed_call``,
   ``remat``, ``custom_jvp/vjp``) holding a dot_general are evaluated
   inline; ``scan``/``while``/``cond`` bodies are re-traced with the same
   interpreter. ``pallas_call`` is never entered, nor anything under our
   ``scmp_internal`` scope or traced from scmp_jax's own arithmetic modules
   (so an ``sc_dot_general`` already in the model is not intercepted again).

Why: ``jnp.einsum`` binds its ``_dot_general`` default at import time and
jnp functions are jitted, so patching ``lax.dot_general`` misses calls and
depends on private module layout; a jaxpr and its name stack are public
and stable across jax 0.10/0.11, and the interpreter needs no global state.

Op names (``Rule.op_names``): "einsum" (under jnp.einsum's name scope),
"dot_general" (``lax.dot_general``/``lax.dot`` called directly, e.g. by
flax Dense/DenseGeneral/Linear), "matmul" (every other jax.numpy contraction:
``jnp.matmul``, ``jnp.dot``, ``@``, ``tensordot``; jax inlines them so they
cannot be told apart). Without tracebacks every op is "dot_general".

Weights vs activations: an operand is a *weight* when it is computed from
parameters (linen ``variables["params"]``, nnx ``nnx.Param``) and constants
only; anything depending on a call argument or another collection (e.g. a KV
cache) is an *activation*. An op whose both operands are activations
(attention's QK^T and PV) is an act x act op; a rule matches it only with
``act_act=True``.

Matching: the first rule whose ``module_path`` regex fullmatches the module
path ('/'-joined, root = ''), whose ``op_names`` hold the op name and which
accepts act x act ops if the op is one, decides; ``arithmetic=None`` keeps
the op exact; no matching rule keeps it exact. Non-float operands stay exact.
A rule that matches no operation of a call is a UserWarning (once per call).

Files: ``rules.py`` (``Rule``, ``SC``, ``FP4``, ``Report``), ``_interp.py`` (the
interpreter of step 2), this module (step 1 and the ``simulate`` wrappers).

Limits: only ``__call__`` of nnx submodules is marked (other nnx methods count
as their caller's path); nnx modules or ``Rngs`` passed as call arguments are
not supported; ``precision``/``out_sharding`` of intercepted ops are dropped;
scan/while carries are flagged weight/activation by a fixpoint over the body.
"""
from __future__ import annotations

import threading

import jax
import numpy as np

from ._interp import MARK, Interp
from .rules import FP4, OP_NAMES, SC, OpRecord, Report, Rule

__all__ = ["SC", "FP4", "Rule", "OpRecord", "Report", "simulate", "SimulatedLinen",
           "SimulatedNnx", "OP_NAMES"]

_TLS = threading.local()


# ---------------------------------------------------------------- tracing


def _is_dynamic(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


class _Base:
    """Shared tracing + interpretation; subclasses say how to call the model."""

    def __init__(self, model, rules):
        self.model = model
        self.rules = tuple(rules)
        for r in self.rules:
            if not isinstance(r, Rule):
                raise TypeError(f"rules must be Rule objects, got {r!r}")
        self._local = threading.local()

    @property
    def report(self) -> Report | None:
        """The :class:`Report` of this thread's last call (None before one)."""
        return getattr(self._local, "report", None)

    def _simulate(self, call, weights, state, args, kwargs):
        """``call(weights, state, args, kwargs, paths)`` traced, then interpreted.

        weights/state: pytrees of parameters / other variables."""
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        dyn_idx = [i for i, x in enumerate(leaves) if _is_dynamic(x)]
        paths: list = []

        def traced(w, s, dyn):
            full = list(leaves)
            for i, x in zip(dyn_idx, dyn):
                full[i] = x
            a, k = jax.tree_util.tree_unflatten(tree, full)
            prev = getattr(_TLS, "paths", None)
            _TLS.paths = paths
            try:
                return call(w, s, a, k)
            finally:
                _TLS.paths = prev

        dyn = [leaves[i] for i in dyn_idx]
        closed, shapes = jax.make_jaxpr(traced, return_shape=True)(weights, state, dyn)
        nw = len(jax.tree_util.tree_leaves(weights))
        flat_in = jax.tree_util.tree_leaves((weights, state, dyn))
        flags = [False] * nw + [True] * (len(flat_in) - nw)
        interp = Interp(self.rules, paths)
        outs = interp.run(closed.jaxpr, closed.consts, flat_in, flags)
        self._local.report = Report(self.rules, interp.records)
        self._local.report.warn_unused()
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), outs)


def _mark(path: str) -> str:
    paths = getattr(_TLS, "paths", None)
    if paths is None:
        return ""
    if path not in paths:
        paths.append(path)
    return f"{MARK}{paths.index(path)}"


class SimulatedLinen(_Base):
    """A linen model whose ``apply`` runs the rules' arithmetic; ``init`` and
    every other attribute are the original model's."""

    def apply(self, variables, *args, **kwargs):
        import flax.linen as nn

        variables = dict(variables)
        has_params = "params" in variables
        params = variables.pop("params", {})

        def icpt(next_fun, a, k, context):
            name = _mark("/".join(str(p) for p in context.module.path))
            if not name:
                return next_fun(*a, **k)
            with jax.named_scope(name):
                return next_fun(*a, **k)

        def call(w, s, a, k):
            with nn.intercept_methods(icpt):
                return self.model.apply({"params": w, **s} if has_params else s, *a, **k)

        return self._simulate(call, params, variables, args, kwargs)

    def __getattr__(self, name):
        if name in ("model", "rules", "_local"):
            raise AttributeError(name)
        return getattr(self.model, name)


_SUBCLASSES: dict = {}
_SUB_LOCK = threading.Lock()


def _marked_class(cls):
    with _SUB_LOCK:
        sub = _SUBCLASSES.get(cls)
        if sub is None:
            def __call__(self, *a, **k):
                name = _mark(getattr(_TLS, "nnx_paths", {}).get(id(self), ""))
                if not name:
                    return super(sub, self).__call__(*a, **k)
                with jax.named_scope(name):
                    return super(sub, self).__call__(*a, **k)
            sub = type(cls.__name__, (cls,), {"__call__": __call__,
                                              "__module__": cls.__module__})
            _SUBCLASSES[cls] = sub
        return sub


class SimulatedNnx(_Base):
    """An nnx module wrapper: calling it calls the module with the rules'
    arithmetic and writes the module's updated state (e.g. RNG counts) back."""

    def __call__(self, *args, **kwargs):
        from flax import nnx

        graphdef, params, rest = nnx.split(self.model, nnx.Param, ...)

        def call(w, s, a, k):
            m = nnx.merge(graphdef, w, s)
            mods = [(p, x) for p, x in nnx.iter_graph(m) if isinstance(x, nnx.Module)]
            prev = getattr(_TLS, "nnx_paths", None)
            _TLS.nnx_paths = {id(x): "/".join(str(c) for c in p) for p, x in mods}
            olds = []
            try:
                for _, x in mods:
                    if hasattr(type(x), "__call__"):
                        olds.append((x, type(x)))
                        x.__class__ = _marked_class(type(x))
                out = m(*a, **k)
            finally:
                for x, c in olds:
                    x.__class__ = c
                _TLS.nnx_paths = prev
            return out, nnx.split(m, nnx.Param, ...)[1:]

        out, (p2, r2) = self._simulate(call, params, rest, args, kwargs)
        nnx.update(self.model, p2, r2)
        return out

    def __getattr__(self, name):
        if name in ("model", "rules", "_local"):
            raise AttributeError(name)
        return getattr(self.model, name)


def simulate(model, rules):
    """Wrap a linen ``Module`` (-> :class:`SimulatedLinen`, same ``apply``) or
    an nnx ``Module`` (-> :class:`SimulatedNnx`, same call signature) so that
    its contractions run the arithmetic of the first matching ``Rule``."""
    import flax.linen as nn
    from flax import nnx
    if isinstance(model, nn.Module):
        return SimulatedLinen(model, rules)
    if isinstance(model, nnx.Module):
        return SimulatedNnx(model, rules)
    raise TypeError(f"model must be a flax linen or nnx Module, got {type(model).__name__}")
