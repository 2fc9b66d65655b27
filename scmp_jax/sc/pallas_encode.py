"""Pallas (Triton backend) kernel that encodes an operand straight into the SC
count kernel's table indices (SPEC.md sections 4-5).

Per element ``x_int -> boundary -> sign`` by ``quant.pallas.encode_block``
(the ``quant.xla.encode`` code over ``kernel_math``), then the index that
``pallas_counts`` / ``dense`` read (``tables.Layout``): the operands are read
twice in all (``quant.pallas.stats``, this kernel) and no boundary or sign
array is materialised. Off GPU the same kernel runs with ``interpret=True``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from .._src.dispatch import triton_params
from ..quant import xla as QX
from ..quant.pallas import BC, BR, encode_block, operand_args, smooth_tag, split_refs, valid

__all__ = ["encode_index"]

I32 = jnp.int32


def _kernel(*refs, sch, R, C, smooth, smooth_mul, lookup, offset, shift, vp, dmajor, xrow,
            interpret):
    x_ref, s_ref, f_ref, z_ref, outs = split_refs(refs, smooth, sch.mode == "unipolar")
    roff_ref = outs.pop(0) if offset else None
    if lookup:
        kb_ref, ktab_ref = outs.pop(0), outs.pop(0)
    i, j = pl.program_id(1), pl.program_id(2)
    ok = valid(i, j, R, C)
    x_int, bnd, sign = encode_block(x_ref, s_ref, f_ref, z_ref, sch, interpret, smooth_mul)
    bnd = jnp.where(ok, bnd, 0)
    if lookup:
        val = ktab_ref[kb_ref[...] + bnd] * (2 if xrow else vp)   # (BR, BC) gather, in range
    else:
        val = bnd
    if offset:
        val = roff_ref[...] + val
    if sign is not None:
        neg = ((sign < 0) & ok).astype(I32)
        val = val + neg if xrow else val | neg << shift
    val = jnp.where(ok, val, 0)
    outs[0][...] = val.T if dmajor else val
    if sch.mode == "unipolar":
        outs[1][...] = jnp.sum(jnp.where(ok, x_int, 0).astype(I32), axis=1)[:, None]


def _name(sch, smooth, smooth_mul, roff, ktab, dmajor, xrow) -> str:
    side = "a" if roff is not None else ("b_codes" if ktab is not None else "b")
    order = "xrow" if xrow else ("dmajor" if dmajor else "rowmajor")
    return (f"sc_encode_{side}_{order}_{sch.granularity.name}_{sch.mode}"
            f"{smooth_tag(smooth, smooth_mul)}")


@functools.partial(jax.jit, static_argnames=("sch", "interpret", "shift", "vp", "smooth_mul",
                                             "dmajor", "xrow"))
def encode_index(x, smooth, prm: QX.Params, roff=None, kbase=None, ktab=None, *,
                 sch: QX.Scheme, interpret: bool, shift: int, vp: int, smooth_mul: bool = False,
                 dmajor: bool = True, xrow: bool = False):
    """SC table indices, d-major ``(H, C, R)`` int32 (row-major ``(H, R, C)`` with
    ``dmajor=False``: the dense counts' layout), and (unipolar) row sums
    ``(H, R)`` int32. Side a (``roff``, ``kbase`` ``(C,)``, ``ktab`` given):
    ``roff[d] + ktab[kbase[d] + boundary] * vp | neg << shift``, or with
    ``xrow`` ``roff[d] + 2 * ktab[...] + neg`` (``sc.dense``'s X rows, ``roff =
    2 * sid * (L + 1)``); side b: ``boundary | neg << shift``, or with
    ``kbase`` and ``ktab`` but no ``roff`` ``ktab[kbase[d] + boundary] * vp |
    neg << shift`` (``sc.dense``'s b-side codes: ``vp = 1``)."""
    args, specs, (H, R, C, Rp, Cp) = operand_args(x, smooth, prm)
    col = pl.BlockSpec((1, BC), lambda h, i, j: (0, j))
    padc = lambda v: jnp.pad(v.astype(I32), (0, Cp - C))[None, :]
    if roff is not None:
        args.append(padc(roff))
        specs.append(col)
    if ktab is not None:
        args += [padc(kbase), ktab]
        specs += [col, pl.BlockSpec((ktab.shape[0],), lambda h, i, j: (0,))]
    if dmajor:
        out_specs = [pl.BlockSpec((None, BC, BR), lambda h, i, j: (h, j, i))]
        shapes = [jax.ShapeDtypeStruct((H, Cp, Rp), I32)]
    else:
        out_specs = [pl.BlockSpec((None, BR, BC), lambda h, i, j: (h, i, j))]
        shapes = [jax.ShapeDtypeStruct((H, Rp, Cp), I32)]
    if sch.mode == "unipolar":
        out_specs.append(pl.BlockSpec((None, BR, 1), lambda h, i, j: (h, i, j)))
        shapes.append(jax.ShapeDtypeStruct((H, Rp, Cp // BC), I32))
    outs = pl.pallas_call(
        functools.partial(_kernel, sch=sch, R=R, C=C, smooth=smooth is not None,
                          smooth_mul=smooth_mul, lookup=ktab is not None,
                          offset=roff is not None, shift=shift, vp=vp, dmajor=dmajor, xrow=xrow,
                          interpret=interpret),
        grid=(H, Rp // BR, Cp // BC),
        in_specs=specs,
        out_specs=out_specs,
        out_shape=shapes,
        interpret=interpret,
        name=_name(sch, smooth, smooth_mul, roff, ktab, dmajor, xrow),
        **triton_params(interpret),
    )(*args)
    idx = outs[0][:, :C, :R] if dmajor else outs[0][:, :R, :C]
    rowsum = jnp.sum(outs[1][:, :R], axis=-1, dtype=I32) if sch.mode == "unipolar" else None
    return idx, rowsum
