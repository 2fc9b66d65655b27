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

Limits: only ``__call__`` of nnx submodules is marked (other nnx methods count
as their caller's path); nnx modules or ``Rngs`` passed as call arguments are
not supported; ``precision``/``out_sharding`` of intercepted ops are dropped;
scan/while carries are flagged weight/activation by a fixpoint over the body.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from ..sc.api import sc_matmul
from ._contract import INTERNAL_SCOPE, contract
from .dot_general import as_fp4_config, fp4_matmul_pair, sc_matmul_pair

__all__ = ["SC", "FP4", "Rule", "OpRecord", "Report", "simulate", "SimulatedLinen",
           "SimulatedNnx", "OP_NAMES"]

OP_NAMES = ("dot_general", "einsum", "matmul")
_MARK = "scmp_path"
_MARK_RE = re.compile(rf"{_MARK}(\d+)$")
_JAX_DIR = os.path.dirname(jax.__file__) + os.sep
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_OWN_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep, _PKG_DIR + "cli.py")
_CALL_KEYS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint", "custom_jvp_call",
          "custom_vjp_call", "custom_vjp_call_jaxpr")
_TLS = threading.local()


# ---------------------------------------------------------------- rules


class SC:
    """SC arithmetic: ``sc_matmul(a, b, granularity, **sc_kwargs)``."""

    def __init__(self, granularity: str = "per_row", **sc_kwargs):
        inspect.signature(sc_matmul).bind(None, None, granularity, **sc_kwargs)  # names only
        self.granularity, self.kwargs = granularity, sc_kwargs
        self.pair = sc_matmul_pair(granularity, **sc_kwargs)

    def __repr__(self):
        kw = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"SC({self.granularity!r}{kw})"


class FP4:
    """FP4 arithmetic: ``fp4.matmul(quantize(a, fmt), quantize(b, w_fmt or fmt))``."""

    def __init__(self, fmt="mxfp4", *, w_fmt=None, implementation=None):
        self.fmt, self.w_fmt = as_fp4_config(fmt), w_fmt
        self.name = fmt if isinstance(fmt, str) else "custom"
        self.pair = fp4_matmul_pair(fmt, w_fmt, implementation)

    def __repr__(self):
        return f"FP4({self.name!r})"


@dataclasses.dataclass(frozen=True)
class Rule:
    """``module_path``: regex fullmatched on the '/'-joined module path;
    ``arithmetic``: ``SC(...)`` | ``FP4(...)`` | None (exact)."""
    module_path: str = ".*"
    arithmetic: Any = None
    op_names: tuple = OP_NAMES
    act_act: bool = False

    def __post_init__(self):
        object.__setattr__(self, "_re", re.compile(self.module_path))
        ops = (self.op_names,) if isinstance(self.op_names, str) else tuple(self.op_names)
        bad = [o for o in ops if o not in OP_NAMES]
        if bad:
            raise ValueError(f"op_names must be among {OP_NAMES}, got {bad}")
        object.__setattr__(self, "op_names", ops)
        if self.arithmetic is not None and not isinstance(self.arithmetic, (SC, FP4)):
            raise ValueError(f"arithmetic must be SC(...), FP4(...) or None, "
                             f"got {self.arithmetic!r}")

    def matches(self, path: str, op: str, act_act: bool) -> bool:
        return (self._re.fullmatch(path) is not None and op in self.op_names
                and (self.act_act or not act_act))


@dataclasses.dataclass(frozen=True)
class OpRecord:
    """One intercepted contraction: where, what, and which arithmetic ran."""
    path: str
    op: str
    lhs_shape: tuple
    rhs_shape: tuple
    act_act: bool
    rule: int | None
    arithmetic: str


@dataclasses.dataclass
class Report:
    """What the last call ran: ``records`` (one per contraction traced) and
    the rules that matched nothing (``unused_rules``: (index, rule))."""
    rules: tuple
    records: list

    @property
    def unused_rules(self):
        used = {r.rule for r in self.records}
        return [(i, r) for i, r in enumerate(self.rules) if i not in used]

    def table(self) -> str:
        head = ("path", "op", "lhs", "rhs", "act_act", "rule", "arithmetic")
        rows = [head] + [(r.path or "<root>", r.op, str(r.lhs_shape), str(r.rhs_shape),
                          str(r.act_act), "-" if r.rule is None else str(r.rule),
                          r.arithmetic) for r in self.records]
        w = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(n) for c, n in zip(row, w)).rstrip() for row in rows]
        for i, r in self.unused_rules:
            lines.append(f"unused rule {i}: {r}")
        return "\n".join(lines)

    __str__ = table


# ---------------------------------------------------------------- interpreter


def _frames(eqn):
    tb = getattr(eqn.source_info, "traceback", None)
    return list(tb.frames) if tb is not None else []


def _internal(eqn, stack) -> bool:
    if any(INTERNAL_SCOPE in s.split("/") for s in stack):
        return True
    for f in _frames(eqn):
        fn = os.path.abspath(f.file_name)
        if fn.startswith(_PKG_DIR) and not fn.startswith(_OWN_DIRS):
            return True
    return False


def _op_name(eqn, stack) -> str:
    if any("->" in c for s in stack for c in s.split("/")):
        return "einsum"
    frames = _frames(eqn)
    last = None
    for f in frames:                       # innermost first
        if not f.file_name.startswith(_JAX_DIR):
            break
        last = f
        if f.function_name.split(".")[-1] == "einsum":
            return "einsum"
    if last is None:
        return "dot_general"
    fname = last.function_name.split(".")[-1]
    if fname in ("dot_general", "dot") and last.file_name.endswith(os.path.join("lax", "lax.py")):
        return "dot_general"
    return "matmul"


def _path(stack, paths) -> str:
    for s in reversed(stack):
        for c in reversed(s.split("/")):
            m = _MARK_RE.fullmatch(c)
            if m:
                return paths[int(m.group(1))]
    return ""


def _has_dot(jaxpr) -> bool:
    for e in jaxpr.eqns:
        if e.primitive.name == "dot_general":
            return True
        if e.primitive.name != "pallas_call":
            for sub in jcore.jaxprs_in_params(e.params):
                if _has_dot(sub):
                    return True
    return False


def _flags(jaxpr, in_flags):
    """Activation flags of a jaxpr's outputs: an output is an activation
    when any input it depends on is (conservative through nested eqns)."""
    env = dict(zip(jaxpr.invars, in_flags))
    rd = lambda v: False if isinstance(v, jcore.Literal) else env.get(v, False)  # noqa: E731
    for e in jaxpr.eqns:
        f = any(rd(v) for v in e.invars)
        for v in e.outvars:
            env[v] = f
    return [rd(v) for v in jaxpr.outvars]


def _bind(eqn, vals):
    """Evaluate one equation as a one-equation jaxpr (public API, any jax version)."""
    ins, seen = [], set()
    for v, x in zip(eqn.invars, vals):
        if not isinstance(v, jcore.Literal) and v not in seen:
            seen.add(v)
            ins.append((v, x))
    dbg = jcore.DebugInfo("scmp_jax.flax.intercept", None, tuple(f"a{i}" for i in range(len(ins))),
                          tuple(f"r{i}" for i in range(len(eqn.outvars))))
    jx = jcore.Jaxpr([], [v for v, _ in ins], list(eqn.outvars), [eqn], eqn.effects,
                     debug_info=dbg)
    out = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(jx, []))(*[x for _, x in ins])
    return list(out)


class _Interp:
    def __init__(self, rules, paths):
        self.rules, self.paths, self.records = rules, paths, []

    def run(self, jaxpr, consts, args, flags, stack=()):
        env = {}

        def read(v):
            return (v.val, False) if isinstance(v, jcore.Literal) else env[v]

        for v, c in zip(jaxpr.constvars, consts):
            env[v] = (c, False)
        for v, a, f in zip(jaxpr.invars, args, flags):
            env[v] = (a, f)
        for eqn in jaxpr.eqns:
            vals, fl = zip(*map(read, eqn.invars)) if eqn.invars else ((), ())
            st = stack + (str(eqn.source_info.name_stack),)
            outs = self._eqn(eqn, list(vals), list(fl), st)
            act = any(fl)
            for v, o in zip(eqn.outvars, outs):
                env[v] = (o, act)
        return [read(v)[0] for v in jaxpr.outvars]

    def _eqn(self, eqn, vals, fl, st):
        name = eqn.primitive.name
        if name == "pallas_call" or _internal(eqn, st):
            return _bind(eqn, vals)
        if name == "dot_general":
            return [self._dot(eqn, vals, fl, st)]
        subs = list(jcore.jaxprs_in_params(eqn.params))
        if not subs or not any(_has_dot(s) for s in subs):
            return _bind(eqn, vals)
        if name in _CALLS:
            for k in _CALL_KEYS:
                cj = eqn.params.get(k)
                if cj is None:
                    continue
                jx, consts = (cj.jaxpr, cj.consts) if hasattr(cj, "consts") else (cj, ())
                if len(jx.invars) == len(vals):
                    return self.run(jx, consts, vals, fl, st)
        if name in ("scan", "while", "cond"):
            return _bind_loop(self, eqn, vals, fl, st)
        return _bind(eqn, vals)

    def _dot(self, eqn, vals, fl, st):
        lhs, rhs = vals
        path, op, aa = _path(st, self.paths), _op_name(eqn, st), bool(fl[0] and fl[1])
        idx = next((i for i, r in enumerate(self.rules) if r.matches(path, op, aa)), None)
        arith = None if idx is None else self.rules[idx].arithmetic
        floats = all(jnp.issubdtype(x.dtype, jnp.floating) for x in (lhs, rhs))
        rec = dict(path=path, op=op, lhs_shape=tuple(lhs.shape), rhs_shape=tuple(rhs.shape),
                   act_act=aa, rule=idx)
        if arith is None or not floats:
            self.records.append(OpRecord(**rec, arithmetic="exact" if floats or arith is None
                                         else "exact (non-float)"))
            return _bind(eqn, vals)[0]
        self.records.append(OpRecord(**rec, arithmetic=repr(arith)))
        try:
            return contract(*arith.pair, lhs, rhs, eqn.params["dimension_numbers"],
                            eqn.outvars[0].aval.dtype)
        except ValueError as e:
            raise ValueError(f"module {path or '<root>'!r}, op {op}: {e}") from e


def _retrace(interp, closed, flags, st):
    """The closed jaxpr re-traced through the interpreter (same avals out)."""
    avals = [v.aval for v in closed.jaxpr.invars]
    fn = lambda *a: interp.run(closed.jaxpr, closed.consts, a, flags, st)  # noqa: E731
    return jax.make_jaxpr(fn)(*[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals])


def _carry_fix(body, head, carry, tail):
    """Fixpoint of carry flags through a loop body (invars head+carry+tail)."""
    c = list(carry)
    for _ in range(len(c) + 1):
        out = _flags(body.jaxpr, list(head) + c + list(tail))[:len(c)]
        new = [a or b for a, b in zip(c, out)]
        if new == c:
            break
        c = new
    return c


def _bind_loop(interp, eqn, vals, fl, st):
    p = dict(eqn.params)
    name = eqn.primitive.name
    if name == "scan":
        if "num_consts" in p and "num_carry" in p:
            nc, nk = p["num_consts"], p["num_carry"]
            carry = _carry_fix(p["jaxpr"], fl[:nc], fl[nc:nc + nk], fl[nc + nk:])
            flags = fl[:nc] + carry + fl[nc + nk:]
        else:     # another jax's scan params (seen on 0.11): outer flags, no carry fixpoint
            flags = list(fl)
        p["jaxpr"] = _retrace(interp, p["jaxpr"], flags, st)
    elif name == "while" and "cond_nconsts" in p and "body_nconsts" in p:
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        carry = _carry_fix(p["body_jaxpr"], fl[cn:cn + bn], fl[cn + bn:], [])
        p["body_jaxpr"] = _retrace(interp, p["body_jaxpr"], fl[cn:cn + bn] + carry, st)
    elif name == "while":
        p["body_jaxpr"] = _retrace(interp, p["body_jaxpr"], fl[len(fl) - len(
            p["body_jaxpr"].jaxpr.invars):], st)
    else:                                                     # cond: index, *ops
        p["branches"] = tuple(_retrace(interp, b, fl[1:], st) for b in p["branches"])
    return _bind(dataclasses.replace(eqn, params=p) if dataclasses.is_dataclass(eqn)
                 else eqn.replace(params=p), vals)


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
        interp = _Interp(self.rules, paths)
        outs = interp.run(closed.jaxpr, closed.consts, flat_in, flags)
        self._local.report = Report(self.rules, interp.records)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), outs)


def _mark(path: str) -> str:
    paths = getattr(_TLS, "paths", None)
    if paths is None:
        return ""
    if path not in paths:
        paths.append(path)
    return f"{_MARK}{paths.index(path)}"


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
