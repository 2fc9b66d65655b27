"""Pallas (Triton backend) quantization kernels (SPEC.md sections 5 and 8).

* ``stats``: per-row ``max``/``min``/non-finite flags of ``(H, R, C)``, with
  ``smooth_scales`` applied in the load (``x / s``, IEEE division).
* ``encode_codes``: per element ``x_int -> boundary -> sign`` with the same
  ``xla.encode`` code over ``kernel_math`` (PTX ``.rn`` operations), written
  row-major (``quant.quantize``). The block helpers below (``operand_args``,
  ``split_refs``, ``encode_block``, ``valid``) are shared with the SC kernel
  that encodes straight into the count kernel's table indices
  (``sc.pallas_encode``).
* ``col_absmax``: the SmoothQuant calibration reduction ``max |x|`` per column
  (compared as integers: subnormals exact).

Blocks are powers of two; edges are masked with the true sizes. Off GPU the
same kernels run with ``interpret=True``.
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from .._src import softfloat as SF
from .._src.dispatch import triton_params
from .._src.ieee import abs_max_exact
from .._src.kernel_math import XlaMath, kernel_math
from . import xla as QX

__all__ = ["stats", "encode_codes", "quantize", "col_absmax", "BR", "BC", "sizes", "valid",
           "operand_args", "split_refs", "encode_block", "smooth_tag"]

F32 = jnp.float32
I32 = jnp.int32
BR, BC = 32, 64          # row and column block
# stats: elements per block, its widest row; whole rows up to 512 columns leave no
# per-block partials for XLA to reduce (docs/decisions.md, "stats blocks")
_SB, _SBC = 8192, 512


def _pad3(x, R, C):
    H, r, c = x.shape
    return jnp.pad(x, ((0, 0), (0, R - r), (0, C - c))) if (R, C) != (r, c) else x


def sizes(R, C, br=BR, bc=BC):
    """``(R, C)`` rounded up to whole ``(br, bc)`` blocks."""
    return pl.cdiv(R, br) * br, pl.cdiv(C, bc) * bc


def valid(i, j, R, C, br=BR, bc=BC):
    """In-range mask of block ``(i, j)`` of an ``(R, C)`` operand."""
    rows = jax.lax.broadcasted_iota(I32, (br, bc), 0) + i * br
    cols = jax.lax.broadcasted_iota(I32, (br, bc), 1) + j * bc
    return (rows < R) & (cols < C)


def _load(x_ref, s_ref, m, smooth_mul=False):
    """The operand block; SmoothQuant in the load: ``a / s`` or ``b * s``, IEEE
    with subnormals: PTX ``.rn`` on the GPU, integer arithmetic in interpret
    mode (XLA's CPU flushes subnormals)."""
    x = x_ref[...]
    if s_ref is not None:
        mul, div = (m.mul, m.div) if m is not XlaMath else (SF.mul, SF.div)
        x = mul(x, s_ref[...]) if smooth_mul else div(x, s_ref[...])
    return x


def _stats_kernel(*refs, R, C, smooth, smooth_mul, interpret):
    if smooth:
        x_ref, s_ref, mx_ref, mn_ref, fl_ref = refs
    else:
        (x_ref, mx_ref, mn_ref, fl_ref), s_ref = refs, None
    i, j = pl.program_id(1), pl.program_id(2)
    x = _load(x_ref, s_ref, kernel_math(interpret), smooth_mul)
    ok = valid(i, j, R, C, *x.shape)
    nan = jnp.isnan(x)
    num = ok & ~nan
    mx_ref[...] = jnp.max(jnp.where(num, x, -jnp.inf), axis=1)[:, None]
    mn_ref[...] = jnp.min(jnp.where(num, x, jnp.inf), axis=1)[:, None]
    flags = (ok & nan).astype(I32) * 2 + (ok & ~(jnp.abs(x) < jnp.inf)).astype(I32)
    fl_ref[...] = jnp.max(flags, axis=1)[:, None]


def smooth_tag(smooth, smooth_mul: bool) -> str:
    """Kernel-name suffix of the SmoothQuant load: "", "_smooth_div" or "_smooth_mul"."""
    return "" if smooth is None else ("_smooth_mul" if smooth_mul else "_smooth_div")


def _smooth_arg(smooth, Cp):
    return jnp.pad(smooth.astype(F32), (0, Cp - smooth.shape[0]),
                   constant_values=1.0)[None, :]


@functools.partial(jax.jit, static_argnames=("interpret", "smooth_mul"))
def stats(x, smooth: Optional[jax.Array], *, interpret: bool, smooth_mul: bool = False) -> QX.Stats:
    """Per-row ``Stats`` of float32 ``x (H, R, C)`` (of ``x / smooth``, or
    ``x * smooth`` with ``smooth_mul``, if given)."""
    H, R, C = x.shape
    bc = min(_SBC, pl.next_power_of_2(C))
    br = _SB // bc
    Rp, Cp = sizes(R, C, br, bc)
    nC = Cp // bc
    xp = _pad3(x, Rp, Cp)
    args = [xp]
    specs = [pl.BlockSpec((None, br, bc), lambda h, i, j: (h, i, j))]
    if smooth is not None:
        args.append(_smooth_arg(smooth, Cp))
        specs.append(pl.BlockSpec((1, bc), lambda h, i, j: (0, j)))
    part = pl.BlockSpec((None, br, 1), lambda h, i, j: (h, i, j))
    mx, mn, fl = pl.pallas_call(
        functools.partial(_stats_kernel, R=R, C=C, smooth=smooth is not None,
                          smooth_mul=smooth_mul, interpret=interpret),
        grid=(H, Rp // br, nC),
        in_specs=specs,
        out_specs=[part, part, part],
        out_shape=[jax.ShapeDtypeStruct((H, Rp, nC), F32)] * 2
        + [jax.ShapeDtypeStruct((H, Rp, nC), I32)],
        interpret=interpret,
        name=f"quant_stats{smooth_tag(smooth, smooth_mul)}",
        **triton_params(interpret),
    )(*args)
    fl = jnp.max(fl[:, :R], axis=-1)
    nan = (fl & 2) != 0
    mx = jnp.where(nan, F32(jnp.nan), jnp.max(mx[:, :R], axis=-1))
    mn = jnp.where(nan, F32(jnp.nan), jnp.min(mn[:, :R], axis=-1))
    return QX.Stats(mx, mn, (fl & 1) != 0)


def encode_block(x_ref, s_ref, f_ref, z_ref, sch, interpret, smooth_mul=False):
    """``xla.encode`` of one loaded block: ``(x_int, boundary, sign)``."""
    m = kernel_math(interpret)
    x = _load(x_ref, s_ref, m, smooth_mul)
    zp = None if z_ref is None else z_ref[...]
    return QX.encode(x, f_ref[...], zp, sch, m)


def split_refs(refs, smooth, unipolar):
    """``(x, smooth | None, factor, zp | None, the remaining refs)`` of a kernel's refs."""
    refs = list(refs)
    x_ref = refs.pop(0)
    s_ref = refs.pop(0) if smooth else None
    f_ref = refs.pop(0)
    z_ref = refs.pop(0) if unipolar else None
    return x_ref, s_ref, f_ref, z_ref, refs


def _codes_kernel(*refs, sch, R, C, smooth, smooth_mul, interpret):
    x_ref, s_ref, f_ref, z_ref, outs = split_refs(refs, smooth, sch.mode == "unipolar")
    x_int, bnd, sign = encode_block(x_ref, s_ref, f_ref, z_ref, sch, interpret, smooth_mul)
    outs[0][...] = x_int
    outs[1][...] = bnd
    if sign is not None:
        outs[2][...] = sign


def operand_args(x, smooth, prm: QX.Params):
    """Padded operand, smooth scales, per-row factor and zero point with their
    block specs, and ``(H, R, C, Rp, Cp)``."""
    H, R, C = x.shape
    Rp, Cp = sizes(R, C)
    args = [_pad3(x, Rp, Cp)]
    specs = [pl.BlockSpec((None, BR, BC), lambda h, i, j: (h, i, j))]
    if smooth is not None:
        args.append(_smooth_arg(smooth, Cp))
        specs.append(pl.BlockSpec((1, BC), lambda h, i, j: (0, j)))
    row = pl.BlockSpec((None, BR, 1), lambda h, i, j: (h, i, 0))
    pad_rows = lambda v: jnp.pad(v, ((0, 0), (0, Rp - R)), constant_values=1.0)[..., None]
    args.append(pad_rows(prm.factor))
    specs.append(row)
    if prm.zp is not None:
        args.append(pad_rows(jnp.broadcast_to(prm.zp, (H, R))))
        specs.append(row)
    return args, specs, (H, R, C, Rp, Cp)


@functools.partial(jax.jit, static_argnames=("sch", "interpret", "smooth_mul"))
def encode_codes(x, smooth, prm: QX.Params, *, sch: QX.Scheme, interpret: bool,
                 smooth_mul: bool = False):
    """Row-major ``(x_int f32, boundary i32, sign i32 | None)``, each ``(H, R, C)``."""
    args, specs, (H, R, C, Rp, Cp) = operand_args(x, smooth, prm)
    blk = pl.BlockSpec((None, BR, BC), lambda h, i, j: (h, i, j))
    shapes = [jax.ShapeDtypeStruct((H, Rp, Cp), F32), jax.ShapeDtypeStruct((H, Rp, Cp), I32)]
    if sch.mode == "bipolar":
        shapes.append(jax.ShapeDtypeStruct((H, Rp, Cp), I32))
    outs = pl.pallas_call(
        functools.partial(_codes_kernel, sch=sch, R=R, C=C, smooth=smooth is not None,
                          smooth_mul=smooth_mul, interpret=interpret),
        grid=(H, Rp // BR, Cp // BC),
        in_specs=specs,
        out_specs=[blk] * len(shapes),
        out_shape=shapes,
        interpret=interpret,
        name=f"quant_codes_{sch.granularity.name}_{sch.mode}{smooth_tag(smooth, smooth_mul)}",
        **triton_params(interpret),
    )(*args)
    outs = [o[:, :R, :C] for o in outs]
    return outs[0], outs[1], outs[2] if sch.mode == "bipolar" else None


def quantize(x, smooth, sch: QX.Scheme, *, interpret: bool, smooth_mul: bool = False):
    """``(Quantized, bad rows)`` of float32 ``x (R, C)`` or ``(H, R, C)`` by the
    kernels: ``stats`` -> ``xla.row_params`` -> ``encode_codes`` (+ row sums,
    unipolar)."""
    if x.ndim == 2:                  # per_head is 3D only: every field has the lead 1
        q, bad = quantize(x[None], smooth, sch, interpret=interpret, smooth_mul=smooth_mul)
        return jax.tree_util.tree_map(lambda v: v[0], q), bad[0]
    prm = QX.row_params(stats(x, smooth, interpret=interpret, smooth_mul=smooth_mul), sch)
    x_int, bnd, sign = encode_codes(x, smooth, prm, sch=sch, interpret=interpret,
                                    smooth_mul=smooth_mul)
    rowsum = None
    if sch.mode == "unipolar":
        rowsum = jnp.sum(x_int.astype(I32), axis=-1, dtype=I32)
    return QX.Quantized(x_int, bnd, prm.scale, sign, prm.zp, rowsum), prm.bad


def _absmax_kernel(x_ref, o_ref, *, R, C):
    i, j = pl.program_id(0), pl.program_id(1)
    a = jnp.where(valid(i, j, R, C), x_ref[...], 0)
    o_ref[...] = abs_max_exact(a, axis=0)[None, :]


@functools.partial(jax.jit, static_argnames=("interpret",))
def col_absmax(x, *, interpret: bool):
    """``max |x|`` over the rows of float ``x (R, C)``, per column ``(C,)``; NaN
    propagates (a column holding a NaN gives NaN)."""
    R, C = x.shape
    Rp, Cp = sizes(R, C)
    xp = _pad3(x[None], Rp, Cp)[0]
    part = pl.pallas_call(
        functools.partial(_absmax_kernel, R=R, C=C),
        grid=(Rp // BR, Cp // BC),
        in_specs=[pl.BlockSpec((BR, BC), lambda i, j: (i, j))],
        out_specs=pl.BlockSpec((None, 1, BC), lambda i, j: (i, 0, j)),
        out_shape=jax.ShapeDtypeStruct((Rp // BR, 1, Cp), x.dtype),
        interpret=interpret,
        name="quant_col_absmax",
        **triton_params(interpret),
    )(xp)
    return abs_max_exact(part[:, 0, :C], axis=0)
