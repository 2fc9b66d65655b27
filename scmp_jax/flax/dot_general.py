"""Drop-in ``dot_general`` callables running SC or FP4 arithmetic.

``nn.Dense(..., dot_general=sc_dot_general(sc_prec=6))`` and the same for
``nn.DenseGeneral``, ``nnx.Linear``, ``nnx.LinearGeneral``; ``nnx.Einsum``
takes ``einsum_op=sc_einsum(...)`` and linen ``MultiHeadDotProductAttention``
/ ``dot_product_attention`` take ``einsum_dot_general=sc_dot_general(...)``.

Every contraction becomes ``sc_matmul(x2d, W.T)``: lhs free dims -> rows,
contracting dims -> D, rhs free dims -> output columns (see ``_contract``).
Batch dims of dot_general (attention einsums) become the leading dim H of a
3D ``sc_matmul`` (use ``granularity="per_head"`` there). ``precision`` and
``out_sharding`` are accepted and ignored; the result has dot_general's dtype
(``preferred_element_type`` if given, else the operands' result type).
Differentiating raises ``NotDifferentiableError`` unless ``grad="ste"``
(straight-through: the tangent of the exact ``a @ b.T`` of each contraction).
The fp4 forms take ``weight_only=True``: only the rhs (the weight) is
quantized, ``fp4.weight_only_matmul``; then the lhs's gradient is exact
(``g @ dequant(W)``) with either ``grad``, and the rhs's raises or, with
``grad="ste"``, is straight-through.
"""
from __future__ import annotations

import dataclasses
import inspect

import jax
import jax.numpy as jnp

from .. import fp4 as _fp4
from .._src import grad as GD
from .._src import granularity as GR
from ..fp4.config import PRESETS, FP4Config, check_weight_only
from ..fp4.matmul.weight_only import exact_weight_only
from ..fp4.quantize.api import ROUNDS_FP4
from ..sc.api import sc_matmul
from ._contract import contract, out_aval
from .mixed import MPSpec, check_sc_for_mp, mp_matmul

__all__ = ["sc_dot_general", "fp4_dot_general", "sc_einsum", "fp4_einsum", "as_fp4_config",
           "ste_hint", "weight_only_pair"]


def _sig(fn, name, kind, info):
    fn.__name__ = fn.__qualname__ = name
    fn.arithmetic = (kind, info)
    return fn


def _wrap(matmul2d, matmul3d, name, kind, info):
    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None,
                    **kwargs):
        del precision, kwargs                  # out_sharding etc.: not modelled
        aval = out_aval(lhs, rhs, dimension_numbers, preferred_element_type)
        return contract(matmul2d, matmul3d, lhs, rhs, dimension_numbers, aval.dtype)
    return _sig(dot_general, name, kind, info)


def ste_hint(name: str) -> str:
    """The error's advice: pass ``grad='ste'`` to ``name``."""
    return (f"pass {name}(..., grad='ste') for a straight-through estimator (the gradient of "
            "the exact float matmul)")


def sc_matmul_pair(granularity="per_row", *, op="sc_dot_general", hint=None, **sc_kwargs):
    """``(f2d, f3d)``: ``sc_matmul`` with fixed settings, for 2D and 3D operands;
    ``grad`` (in ``sc_kwargs``) as ``sc_matmul``'s, its error naming ``op``
    (advice ``hint``, default ``ste_hint(op)``).

    A granularity that takes only 3D operands (per_head) makes a 2D contraction
    a ValueError."""
    grad = GD.check_grad(sc_kwargs.pop("grad", None), op)
    hint = hint or ste_hint(op)

    def f3d(a, b):
        return GD.call(lambda a, b: sc_matmul(a, b, granularity, **sc_kwargs), (a, b), op=op,
                       grad=grad, exact=GD.exact_matmul, hint=hint)

    def f2d(a, b):
        if 2 not in GR.get(granularity).ranks:
            two_d = [g for g in GR.GRANULARITIES if 2 in GR.get(g).ranks]
            raise ValueError(f"granularity={granularity!r} needs a contraction with a batch dim "
                             "(e.g. attention's per-head einsum); a plain Dense/Linear "
                             f"contraction has none: use one of {two_d}")
        return f3d(a, b)
    return f2d, f3d


def sc_dot_general(granularity: str = "per_row", *, mp=None, mp_metric=None, mp_side=None,
                   mp_group_size=None, mp_operator: str = "linear", mp_block=None,
                   mp_total_blocks=None, **sc_kwargs):
    """A ``lax.dot_general`` replacement computing every contraction with
    ``scmp_jax.sc_matmul(a, b, granularity, **sc_kwargs)`` (lhs -> a, rhs -> b);
    ``grad="ste"`` for a straight-through gradient.

    ``mp`` (and ``mp_metric`` / ``mp_side`` / ``mp_group_size``) as ``SC``'s:
    the lhs is taken as the activation, the rhs as the weight; ``mp_operator``,
    ``mp_block`` and ``mp_total_blocks`` are the (operator, block) keys a
    ``simulate`` rule would get from its name and the module path."""
    inspect.signature(sc_matmul).bind(None, None, granularity, **sc_kwargs)  # names only
    if mp is None:
        f2d, f3d = sc_matmul_pair(granularity, **sc_kwargs)
        return _wrap(f2d, f3d, "sc_dot_general", "sc", dict(granularity=granularity, **sc_kwargs))
    spec = MPSpec(mp, mp_metric, mp_side, mp_group_size)
    check_sc_for_mp(spec, granularity, sc_kwargs)
    if not isinstance(mp_operator, str) or not mp_operator:
        raise ValueError(f"mp_operator must be a non-empty str, got {mp_operator!r}")
    for name, v in (("mp_block", mp_block), ("mp_total_blocks", mp_total_blocks)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{name} must be None or an int >= 0, got {v!r}")

    def f(a, b):
        return mp_matmul(spec, granularity, sc_kwargs, a, b, operator=mp_operator,
                         block=mp_block, total_blocks=mp_total_blocks)[0]
    info = dict(granularity=granularity, mp=mp, mp_operator=mp_operator, mp_block=mp_block,
                **sc_kwargs)
    return _wrap(f, f, "sc_dot_general", "sc", info)


def as_fp4_config(fmt) -> FP4Config:
    """"mxfp4" | "nvfp4" | ``FP4Config`` -> ``FP4Config``."""
    if isinstance(fmt, FP4Config):
        return fmt
    if isinstance(fmt, str) and fmt.lower() in PRESETS:
        return PRESETS[fmt.lower()]
    raise ValueError(f"fmt must be an FP4Config or one of {tuple(PRESETS)}, got {fmt!r}")


def fp4_matmul_pair(fmt="mxfp4", w_fmt=None, implementation=None, grad=None, *,
                    op="fp4_dot_general", hint=None, weight_only=False):
    """``(f2d, f3d)``: ``fp4.matmul(quantize(a, fmt), quantize(b, w_fmt or fmt))``;
    both operands quantized along D (groups of ``group_size`` along the
    contraction); 3D operands run one 2D matmul per leading index. ``grad``:
    None (differentiating raises, naming ``op``, advice ``hint``) | "ste" (the
    exact ``a @ b.T``'s tangent). ``weight_only=True`` (then ``w_fmt`` None):
    ``fp4.weight_only_matmul(a, quantize(b, fmt))`` (``weight_only_pair``)."""
    ca, cw = as_fp4_config(fmt), as_fp4_config(fmt if w_fmt is None else w_fmt)
    GD.check_grad(grad, op)
    hint = hint or ste_hint(op)
    if check_weight_only(weight_only, {"w_fmt": w_fmt}):
        return weight_only_pair(cw, implementation, grad, op, hint)

    def q2d(a, b):
        qa = _fp4.quantize(a, ca, implementation=implementation)
        qb = _fp4.quantize(b, cw, implementation=implementation)
        return _fp4.matmul(qa, qb, implementation=implementation)

    def q3d(a, b):
        return jax.lax.map(lambda ab: q2d(*ab), (a, b))

    def run(q, a, b):
        D = a.shape[-1]
        for c in (ca, cw):
            if D % c.group_size or D % 2:
                raise ValueError(f"fp4 needs the contracted size D={D} to be even and a "
                                 f"multiple of group_size={c.group_size}")
        return GD.call(q, (a, b), op=op, grad=grad, exact=GD.exact_matmul, why=ROUNDS_FP4,
                       hint=hint)
    return (lambda a, b: run(q2d, a, b)), (lambda a, b: run(q3d, a, b))


def weight_only_pair(cw: FP4Config, implementation, grad, op, hint):
    """``(f2d, f3d)``: ``fp4.weight_only_matmul(a, quantize(b, cw))``, ``b``
    quantized along D; 3D operands one 2D matmul per leading index. The weight
    is quantized outside the estimator (the op's tangent in ``b`` is the
    straight-through ``a @ db.T``, raising with ``grad=None``); in ``a`` it is
    exact."""
    def q2d(a, qb):
        return _fp4.weight_only_matmul(a, qb, implementation=implementation)

    def q3d(a, qb):
        def one(args):
            a, c, s = args
            return q2d(a, dataclasses.replace(qb, codes=c, scales=s, shape=qb.shape[1:]))
        return jax.lax.map(one, (a, qb.codes, qb.scales))

    def exact(a, b, qb):
        return exact_weight_only(a, qb) + GD.exact_matmul(jax.lax.stop_gradient(a), b)

    def run(q, a, b):
        D = a.shape[-1]
        if D % cw.group_size or D % 2:
            raise ValueError(f"fp4 needs the contracted size D={D} to be even and a "
                             f"multiple of group_size={cw.group_size}")
        qb = _fp4.quantize(jax.lax.stop_gradient(b), cw, implementation=implementation)
        return GD.call(lambda a, b, qb: q(a, qb), (a, b, qb), op=op, grad=grad, exact=exact,
                       why=ROUNDS_FP4, hint=hint, exact_in=(0,))
    return (lambda a, b: run(q2d, a, b)), (lambda a, b: run(q3d, a, b))


def fp4_dot_general(fmt="mxfp4", *, w_fmt=None, implementation=None, grad=None,
                    weight_only=False):
    """A ``lax.dot_general`` replacement computing ``fp4.matmul(fp4.quantize(x2d, fmt),
    fp4.quantize(W.T, w_fmt or fmt))``: lhs rows and rhs columns are each
    quantized along the contracted dim. ``fmt``: "mxfp4" | "nvfp4" | FP4Config;
    ``grad="ste"`` for a straight-through gradient; ``weight_only=True``: only
    the rhs quantized, with ``fmt`` (``fp4.weight_only_matmul``)."""
    f2d, f3d = fp4_matmul_pair(fmt, w_fmt, implementation, grad, weight_only=weight_only)
    info = dict(fmt=as_fp4_config(fmt), w_fmt=None if w_fmt is None else as_fp4_config(w_fmt),
                grad=grad, weight_only=weight_only)
    return _wrap(f2d, f3d, "fp4_dot_general", "fp4", info)


def _einsum(dot_general, name):
    def einsum(subscripts, *operands, precision=None, preferred_element_type=None, **kwargs):
        kwargs.pop("out_sharding", None)
        return jnp.einsum(subscripts, *operands, precision=precision,
                          preferred_element_type=preferred_element_type,
                          _dot_general=dot_general, **kwargs)
    return _sig(einsum, name, *dot_general.arithmetic)


def sc_einsum(granularity: str = "per_row", **sc_kwargs):
    """``jnp.einsum`` replacement (``nnx.Einsum(einsum_op=...)``) whose contractions
    run through ``sc_dot_general(granularity, **sc_kwargs)``."""
    return _einsum(sc_dot_general(granularity, **sc_kwargs), "sc_einsum")


def fp4_einsum(fmt="mxfp4", *, w_fmt=None, implementation=None, grad=None, weight_only=False):
    """``jnp.einsum`` replacement whose contractions run through ``fp4_dot_general``."""
    return _einsum(fp4_dot_general(fmt, w_fmt=w_fmt, implementation=implementation, grad=grad,
                                   weight_only=weight_only), "fp4_einsum")
