"""The jaxpr interpreter behind ``simulate`` (design: ``scmp_jax.flax.intercept``):
re-evaluates a traced model equation by equation, computing each matched
``dot_general`` with the rule's arithmetic and binding everything else
unchanged; calls holding a contraction are entered, loop/cond bodies
re-traced through the same interpreter."""
from __future__ import annotations

import dataclasses
import os
import re

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from .._src.grad import NotDifferentiableError
from ._contract import INTERNAL_SCOPE, contract
from .mixed import MPContext, mp_matmul
from .rules import SC, OpRecord

MARK = "scmp_path"                     # named_scope marker: MARK<i> = module path i
_MARK_RE = re.compile(rf"{MARK}(\d+)$")
_JAX_DIR = os.path.dirname(jax.__file__) + os.sep
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# frames here are the model's or simulate's drivers, not scmp_jax's own arithmetic
_OWN_DIRS = (os.path.dirname(os.path.abspath(__file__)) + os.sep, _PKG_DIR + "cli.py",
             os.path.join(_PKG_DIR, "mp", "block.py"), os.path.join(_PKG_DIR, "mp", "calibrate.py"))
_CALL_KEYS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint", "custom_jvp_call",
          "custom_vjp_call", "custom_vjp_call_jaxpr")


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


def _live(jaxpr):
    """Per equation: whether an output (or an effect) needs it. Dead equations
    are skipped, so a program cut at one block computes that block only."""
    need = {v for v in jaxpr.outvars if not isinstance(v, jcore.Literal)}
    live = [False] * len(jaxpr.eqns)
    for i in range(len(jaxpr.eqns) - 1, -1, -1):
        e = jaxpr.eqns[i]
        if e.effects or any(v in need for v in e.outvars):
            live[i] = True
            need.update(v for v in e.invars if not isinstance(v, jcore.Literal))
    return live


class Interp:
    """``mp``: an ``MPContext``; ``mp_records``: (``MPRecord``, counts) of each MP op
    run; ``callbacks``: traced counts reach their record when the program runs
    (``jax.debug.callback``; in a loop body, the last iteration's)."""

    def __init__(self, rules, paths, mp: MPContext | None = None, callbacks: bool = True):
        self.rules, self.paths, self.records = rules, paths, []
        self.mp = MPContext() if mp is None else mp
        self.mp_records, self.callbacks = [], callbacks

    def run(self, jaxpr, consts, args, flags, stack=()):
        env = {}

        def read(v):
            return (v.val, False) if isinstance(v, jcore.Literal) else env[v]

        for v, c in zip(jaxpr.constvars, consts):
            env[v] = (c, False)
        for v, a, f in zip(jaxpr.invars, args, flags):
            env[v] = (a, f)
        for eqn, live in zip(jaxpr.eqns, _live(jaxpr)):
            if not live:
                continue
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
        pair = arith.pair
        if isinstance(arith, SC) and arith.mp is not None:
            rec["block"] = self.mp.block_of(path)
            rec["operator"] = self.rules[idx].operator_for(path)
            pair = (self._mp_pair(arith, path, rec["block"], rec["operator"], fl),) * 2
        self.records.append(OpRecord(**rec, arithmetic=repr(arith)))
        try:
            return contract(*pair, lhs, rhs, eqn.params["dimension_numbers"],
                            eqn.outvars[0].aval.dtype)
        except ValueError as e:
            raise ValueError(f"module {path or '<root>'!r}, op {op}: {e}") from e
        except NotDifferentiableError as e:
            raise NotDifferentiableError(f"module {path or '<root>'!r}, op {op}: {e}") from e


    def _mp_pair(self, arith, path, block, operator, fl):
        """The 2D / 3D matmul of an MP op; records its classification."""
        spec = self.mp.spec_for(arith.mp, block, operator)
        trial = self.mp.trial.get((block, operator))

        def f(a, b):
            out, rec, counts = mp_matmul(spec, arith.granularity, arith.kwargs, a, b,
                                         operator=operator, block=block,
                                         total_blocks=self.mp.total_blocks,
                                         lhs_act=bool(fl[0]), rhs_act=bool(fl[1]),
                                         boundaries=trial, path=path)
            self.mp_records.append((rec, counts))
            if not isinstance(counts, jax.core.Tracer):
                rec.set_counts(counts)
            elif self.callbacks:
                rec.pending = True
                jax.debug.callback(rec.set_counts, counts)
            return out
        return f


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
