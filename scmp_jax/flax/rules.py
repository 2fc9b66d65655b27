"""The rules of ``simulate`` (``scmp_jax.flax.intercept``): which arithmetic
(``SC`` / ``FP4`` / exact) each intercepted contraction runs, and the
``Report`` of what ran."""
from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from typing import Any

from .._src.errors import check_bool
from ..sc.api import sc_matmul
from .dot_general import as_fp4_config, fp4_matmul_pair, sc_matmul_pair, ste_hint

__all__ = ["SC", "FP4", "Rule", "OpRecord", "Report", "OP_NAMES"]

OP_NAMES = ("dot_general", "einsum", "matmul")


class SC:
    """SC arithmetic: ``sc_matmul(a, b, granularity, **sc_kwargs)``; ``grad="ste"``
    makes it trainable (straight-through: the exact matmul's gradient), else
    differentiating through it raises ``NotDifferentiableError``."""

    def __init__(self, granularity: str = "per_row", **sc_kwargs):
        inspect.signature(sc_matmul).bind(None, None, granularity, **sc_kwargs)  # names only
        self.granularity, self.kwargs = granularity, sc_kwargs
        self.pair = sc_matmul_pair(granularity, op="SC arithmetic", hint=ste_hint("SC"),
                                   **sc_kwargs)

    def __repr__(self):
        kw = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"SC({self.granularity!r}{kw})"


class FP4:
    """FP4 arithmetic: ``fp4.matmul(quantize(a, fmt), quantize(b, w_fmt or fmt))``;
    ``grad`` as ``SC``'s."""

    def __init__(self, fmt="mxfp4", *, w_fmt=None, implementation=None, grad=None):
        self.fmt, self.w_fmt, self.grad = as_fp4_config(fmt), w_fmt, grad
        self.name = fmt if isinstance(fmt, str) else "custom"
        self.pair = fp4_matmul_pair(fmt, w_fmt, implementation, grad, op="FP4 arithmetic",
                                    hint=ste_hint("FP4"))

    def __repr__(self):
        return f"FP4({self.name!r}{'' if self.grad is None else f', grad={self.grad!r}'})"


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
        object.__setattr__(self, "act_act", check_bool(self.act_act, "act_act"))
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

    def warn_unused(self) -> None:
        """One UserWarning naming every rule that matched no operation."""
        unused = self.unused_rules
        if unused:
            names = "; ".join(f"rule {i} (module_path={r.module_path!r}, op_names={r.op_names}"
                              f"{', act_act=True' if r.act_act else ''})" for i, r in unused)
            warnings.warn(f"simulate: {len(unused)} rule(s) matched no operation: {names}",
                          UserWarning, stacklevel=4)

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
