"""The rules of ``simulate`` (``scmp_jax.flax.intercept``): which arithmetic
(``SC`` / ``FP4`` / exact) each intercepted contraction runs, and the
``Report`` of what ran."""
from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from typing import Any, Optional

from .._src.errors import check_bool
from ..mp.report import CycleBudget
from ..sc.api import sc_matmul
from .dot_general import as_fp4_config, fp4_matmul_pair, sc_matmul_pair, ste_hint
from .mixed import MPSpec, check_sc_for_mp

__all__ = ["SC", "FP4", "Rule", "OpRecord", "Report", "OP_NAMES"]

OP_NAMES = ("dot_general", "einsum", "matmul")


class SC:
    """SC arithmetic: ``sc_matmul(a, b, granularity, **sc_kwargs)``; ``grad="ste"``
    makes it trainable (straight-through: the exact matmul's gradient), else
    differentiating through it raises ``NotDifferentiableError``.

    ``mp``: an ``MPConfig`` | ``AdaptiveMPConfig`` | ``FreeBoundaryMPConfig`` |
    ``RangeMPConfig``: each matched op classifies the rows of one operand and
    runs one ``sc_matmul`` with per-row stream lengths (``flax.mixed``; needs
    ``per_row``, no ``stoc_len``). ``mp_metric`` overrides the metric chosen by
    the operator name, ``mp_side`` ("lhs" | "rhs") the classified operand,
    ``mp_group_size`` is the weight group of a ``RangeMPConfig``."""

    def __init__(self, granularity: str = "per_row", *, mp=None, mp_metric=None, mp_side=None,
                 mp_group_size=None, **sc_kwargs):
        inspect.signature(sc_matmul).bind(None, None, granularity, **sc_kwargs)  # names only
        if mp is None:
            extra = {"mp_metric": mp_metric, "mp_side": mp_side, "mp_group_size": mp_group_size}
            given = [k for k, v in extra.items() if v is not None]
            if given:
                raise ValueError(f"{given[0]} needs mp (an MP config)")
            self.mp = None
        else:
            self.mp = MPSpec(mp, mp_metric, mp_side, mp_group_size)
        check_sc_for_mp(self.mp, granularity, sc_kwargs)
        self.granularity, self.kwargs = granularity, sc_kwargs
        self.pair = sc_matmul_pair(granularity, op="SC arithmetic", hint=ste_hint("SC"),
                                   **sc_kwargs)

    def __repr__(self):
        kw = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        mp = "" if self.mp is None else f", mp={type(self.mp.config).__name__}"
        return f"SC({self.granularity!r}{kw}{mp})"


class FP4:
    """FP4 arithmetic: ``fp4.matmul(quantize(a, fmt), quantize(b, w_fmt or fmt))``;
    ``grad`` as ``SC``'s. ``weight_only=True``: ``fp4.weight_only_matmul(a,
    quantize(b, fmt))``, the activation (lhs) left as it is (no ``w_fmt``); its
    gradient is then exact with either ``grad``, the weight's needs ``grad="ste"``."""

    def __init__(self, fmt="mxfp4", *, w_fmt=None, implementation=None, grad=None,
                 weight_only=False):
        self.fmt, self.w_fmt, self.grad = as_fp4_config(fmt), w_fmt, grad
        self.name = fmt if isinstance(fmt, str) else "custom"
        self.pair = fp4_matmul_pair(fmt, w_fmt, implementation, grad, op="FP4 arithmetic",
                                    hint=ste_hint("FP4"), weight_only=weight_only)
        self.weight_only = bool(weight_only)

    def __repr__(self):
        return (f"FP4({self.name!r}{'' if self.grad is None else f', grad={self.grad!r}'}"
                f"{', weight_only=True' if self.weight_only else ''})")


@dataclasses.dataclass(frozen=True)
class Rule:
    """``module_path``: regex fullmatched on the '/'-joined module path;
    ``arithmetic``: ``SC(...)`` | ``FP4(...)`` | None (exact); ``operator``:
    the MP operator name of the ops it matches (keys of ``FreeBoundaryMPConfig``
    boundaries and threshold tables; None: the module path's last component)."""
    module_path: str = ".*"
    arithmetic: Any = None
    op_names: tuple = OP_NAMES
    act_act: bool = False
    operator: Optional[str] = None

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
        if self.operator is not None and (not isinstance(self.operator, str) or not self.operator):
            raise ValueError(f"operator must be None or a non-empty str, got {self.operator!r}")

    def operator_for(self, path: str) -> str:
        """The MP operator name of an op at ``path``."""
        return self.operator or (path.rsplit("/", 1)[-1] if path else "root")

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
    block: int | None = None
    operator: str | None = None


@dataclasses.dataclass
class Report:
    """What the last call ran: ``records`` (one per contraction traced), the
    rules that matched nothing (``unused_rules``: (index, rule)) and, per MP
    op, its level histogram and cycle cost (``mp``: ``flax.mixed.MPRecord``;
    under ``jit`` the numbers arrive when the computation runs)."""
    rules: tuple
    records: list
    mp: list = dataclasses.field(default_factory=list)

    def mp_budget(self) -> Optional[CycleBudget]:
        """Cycles of every MP op together (None without MP ops or before they ran)."""
        budgets = [r.budget for r in self.mp]
        if not budgets or any(b is None for b in budgets):
            return None
        return sum(budgets[1:], budgets[0])

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
        for r in self.mp:
            b, h = r.budget, r.histogram
            hist = "?" if h is None else " ".join(f"L{k}:{v}" for k, v in h.items())
            cost = "?" if b is None else f"{b.used}/{b.baseline} cycles ({b.ratio:.3f})"
            lines.append(f"mp {r.path or '<root>'} block={r.block} op={r.operator} "
                         f"{r.side} rows={r.rows}: {hist}; {cost}")
        for i, r in self.unused_rules:
            lines.append(f"unused rule {i}: {r}")
        return "\n".join(lines)

    __str__ = table
