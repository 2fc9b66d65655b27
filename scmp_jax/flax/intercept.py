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

Mixed precision (``SC(mp=...)``, ``flax.mixed``): the block index of an op comes
from ``simulate(..., block_path=...)``, its operator name from the rule; each
block module's ``__call__`` passes through a block hook (a plan's
compensation, or calibration's input substitution, ``Traced``/``BlockOutput``);
equations no output needs are skipped.

Files: ``rules.py`` (``Rule``, ``SC``, ``FP4``, ``Report``), ``_interp.py`` (the
interpreter of step 2), ``mixed.py`` (MP ops), this module (step 1 and the
``simulate`` wrappers).

Limits: only ``__call__`` of nnx submodules is marked (other nnx methods count
as their caller's path); nnx modules or ``Rngs`` passed as call arguments are
not supported; ``precision``/``out_sharding`` of intercepted ops are dropped;
scan/while carries are flagged weight/activation by a fixpoint over the body.
"""
from __future__ import annotations

import threading

import jax
import numpy as np

from ..mp.config import FrozenMap
from ..mp.plan import MPPlan, apply_compensation
from ._contract import INTERNAL_SCOPE
from ._interp import MARK, Interp
from .mixed import BlockPath, MPContext
from .rules import FP4, OP_NAMES, SC, OpRecord, Report, Rule

__all__ = ["SC", "FP4", "Rule", "OpRecord", "Report", "simulate", "SimulatedLinen",
           "SimulatedNnx", "OP_NAMES", "BlockOutput", "Traced"]

_TLS = threading.local()


# ---------------------------------------------------------------- tracing


def _is_dynamic(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


class BlockOutput(Exception):
    """Raised by a block hook to end the traced call there: the traced
    program returns ``value`` (e.g. one block's output, for calibration)."""

    def __init__(self, value):
        super().__init__("block output")
        self.value = value


class Traced:
    """A traced call: ``closed`` (the exact model's jaxpr), the module ``paths``
    seen, and how to rebuild outputs; ``evaluate`` interprets it with the rules."""

    def __init__(self, sim, closed, shapes, paths, n_weights):
        self.sim, self.closed, self.paths, self.n_weights = sim, closed, paths, n_weights
        self.out_tree = jax.tree_util.tree_structure(shapes)
        self.out_shapes = shapes

    def evaluate(self, weights, state, dyn, extra=(), *, rules=None, trial=None,
                 total_blocks=None, callbacks=True):
        """The outputs with each contraction under ``rules`` (default the
        simulation's) and ``Interp`` (records, MP records). ``trial``: (block,
        op) -> boundaries to use instead (may be traced); jit-, map-friendly."""
        sim = self.sim
        flat_in = jax.tree_util.tree_leaves((weights, state, dyn, list(extra)))
        flags = [False] * self.n_weights + [True] * (len(flat_in) - self.n_weights)
        if total_blocks is None and sim.blocks is not None:
            total_blocks = sim.blocks.total(self.paths)
        plan_bounds = FrozenMap() if sim.plan is None else sim.plan.boundaries
        ctx = MPContext(sim.blocks, total_blocks, plan_bounds, FrozenMap(trial or {}))
        interp = Interp(sim.rules if rules is None else tuple(rules), self.paths, ctx, callbacks)
        outs = interp.run(self.closed.jaxpr, self.closed.consts, flat_in, flags)
        return jax.tree_util.tree_unflatten(self.out_tree, outs), interp


class _Base:
    """Shared tracing + interpretation; subclasses say how to call the model."""

    def __init__(self, model, rules, block_path=None, plan=None):
        self.model = model
        self.rules = tuple(rules)
        for r in self.rules:
            if not isinstance(r, Rule):
                raise TypeError(f"rules must be Rule objects, got {r!r}")
        if plan is not None and not isinstance(plan, MPPlan):
            raise TypeError(f"plan must be an MPPlan (mp.calibrate), got {type(plan).__name__}")
        if plan is not None and block_path is not None and block_path != plan.block_path:
            raise ValueError(f"block_path {block_path!r} differs from the plan's "
                             f"{plan.block_path!r}")
        if plan is not None:
            block_path = plan.block_path
        self.plan = plan
        self.blocks = None if block_path is None else BlockPath(block_path)
        self._local = threading.local()

    @property
    def report(self) -> Report | None:
        """The :class:`Report` of this thread's last call (None before one)."""
        return getattr(self._local, "report", None)

    def _compensate(self, _extra):
        """The block hook applying the plan's compensation (None without one)."""
        if self.plan is None or not self.plan.compensation:
            return None

        def hook(idx, fn, a, k):
            y = fn(*a, **k)
            comp = self.plan.compensation_for(idx)
            if comp is None:
                return y
            with jax.named_scope(INTERNAL_SCOPE):
                return apply_compensation(y, a[0], *comp)
        return hook

    def _trace(self, call, weights, state, args, kwargs, extra=(), hook=None) -> Traced:
        """``call(weights, state, args, kwargs)`` traced; ``hook(extra)`` -> the
        block hook ``(index, fn, args, kwargs) -> output`` (or None)."""
        leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
        dyn_idx = [i for i, x in enumerate(leaves) if _is_dynamic(x)]
        paths: list = []
        hook = hook or self._compensate

        def traced(w, s, dyn, ex):
            full = list(leaves)
            for i, x in zip(dyn_idx, dyn):
                full[i] = x
            a, k = jax.tree_util.tree_unflatten(tree, full)
            prev = (getattr(_TLS, "paths", None), getattr(_TLS, "blocks", None))
            h = hook(ex)
            _TLS.paths, _TLS.blocks = paths, (None if h is None or self.blocks is None
                                              else (self.blocks, h))
            try:
                return call(w, s, a, k)
            except BlockOutput as e:
                return e.value
            finally:
                _TLS.paths, _TLS.blocks = prev

        dyn = [leaves[i] for i in dyn_idx]
        closed, shapes = jax.make_jaxpr(traced, return_shape=True)(weights, state, dyn,
                                                                   list(extra))
        return Traced(self, closed, shapes, paths, len(jax.tree_util.tree_leaves(weights)))

    @staticmethod
    def dynamic_args(args, kwargs) -> list:
        """The array leaves of a call's arguments (``Traced.evaluate``'s ``dyn``)."""
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        return [x for x in leaves if _is_dynamic(x)]

    def _simulate(self, call, weights, state, args, kwargs):
        tr = self._trace(call, weights, state, args, kwargs)
        return self._finish(tr, weights, state, self.dynamic_args(args, kwargs))

    def _finish(self, tr, weights, state, dyn):
        out, interp = tr.evaluate(weights, state, dyn)
        self._local.report = Report(self.rules, interp.records,
                                    [rec for rec, _ in interp.mp_records])
        self._local.report.warn_unused()
        return out


def _mark(path: str) -> str:
    paths = getattr(_TLS, "paths", None)
    if paths is None:
        return ""
    if path not in paths:
        paths.append(path)
    return f"{MARK}{paths.index(path)}"


def _call(path: str, fn, a, k):
    """A module's ``__call__``: through the block hook when ``path`` is a block."""
    ctx = getattr(_TLS, "blocks", None)
    if ctx is not None:
        idx = ctx[0].module_index(path)
        if idx is not None:
            return ctx[1](idx, fn, a, k)
    return fn(*a, **k)


class SimulatedLinen(_Base):
    """A linen model whose ``apply`` runs the rules' arithmetic; ``init`` and
    every other attribute are the original model's."""

    def trace(self, variables, *args, hook=None, extra=(), **kwargs):
        """``(Traced, (weights, state, dyn))`` of ``apply(variables, *args,
        **kwargs)``; ``hook(extra)`` -> a block hook ``(index, fn, args,
        kwargs) -> output`` run in place of each block's ``__call__`` (it may
        raise ``BlockOutput``); ``extra``: arrays the hook reads, traced inputs."""
        import flax.linen as nn

        variables = dict(variables)
        has_params = "params" in variables
        params = variables.pop("params", {})

        def icpt(next_fun, a, k, context):
            path = "/".join(str(p) for p in context.module.path)
            name = _mark(path)
            fn = _call if context.method_name == "__call__" else (lambda _p, f, a, k: f(*a, **k))
            if not name:
                return fn(path, next_fun, a, k)
            with jax.named_scope(name):
                return fn(path, next_fun, a, k)

        def call(w, s, a, k):
            with nn.intercept_methods(icpt):
                return self.model.apply({"params": w, **s} if has_params else s, *a, **k)

        tr = self._trace(call, params, variables, args, kwargs, extra, hook)
        return tr, (params, variables, self.dynamic_args(args, kwargs))

    def apply(self, variables, *args, **kwargs):
        tr, ins = self.trace(variables, *args, **kwargs)
        return self._finish(tr, *ins)

    def __getattr__(self, name):
        if name in ("model", "rules", "_local", "plan", "blocks"):
            raise AttributeError(name)
        return getattr(self.model, name)


_SUBCLASSES: dict = {}
_SUB_LOCK = threading.Lock()


def _marked_class(cls):
    with _SUB_LOCK:
        sub = _SUBCLASSES.get(cls)
        if sub is None:
            def __call__(self, *a, **k):
                path = getattr(_TLS, "nnx_paths", {}).get(id(self), "")
                name = _mark(path)
                if not name:
                    return super(sub, self).__call__(*a, **k)
                with jax.named_scope(name):
                    return _call(path, super(sub, self).__call__, a, k)
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
        if name in ("model", "rules", "_local", "plan", "blocks"):
            raise AttributeError(name)
        return getattr(self.model, name)


def simulate(model, rules, *, block_path=None, plan=None):
    """Wrap a linen ``Module`` (-> :class:`SimulatedLinen`, same ``apply``) or
    an nnx ``Module`` (-> :class:`SimulatedNnx`, same call signature) so that
    its contractions run the arithmetic of the first matching ``Rule``.

    ``block_path``: a regex with one group; a module path (or its shortest
    '/'-prefix) that fullmatches it is block ``int(group)``, the block index
    of MP rules. ``plan``: an ``mp.MPPlan`` (``mp.calibrate``): its boundaries
    replace those of ``FreeBoundaryMPConfig`` rules and each compensated
    block's ``__call__`` output gets ``x @ kernel + bias`` (x: its first argument);
    ``block_path`` defaults to the plan's."""
    import flax.linen as nn
    from flax import nnx
    if isinstance(model, nn.Module):
        return SimulatedLinen(model, rules, block_path, plan)
    if isinstance(model, nnx.Module):
        return SimulatedNnx(model, rules, block_path, plan)
    raise TypeError(f"model must be a flax linen or nnx Module, got {type(model).__name__}")
