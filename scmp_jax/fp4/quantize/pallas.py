"""FP4 quantize kernels (Pallas Triton; SPEC.md section 9), the ``"pallas"``
implementation of ``fp4.quantize``.

``quantize_fused``: float (R, K) (float32 / bfloat16 / float16 read as is) ->
packed e2m1 codes uint8 (R, K/2) and scale bytes uint8 (R, K/G), bit-equal to
``golden.fp4.quantize`` (of the kernel's own transformed values).

* Without a transform (G >= 2): one program per (BR rows, NG groups) block of
  the input viewed as (R, K/G, G/2) pairs (16-bit inputs as int32 words holding
  two elements, float32 by two stride-2 loads), so codes are written as bytes
  without interleaving (``pair_call``; its ``dequant`` form writes bfloat16
  ``v * s`` instead, for ``linear.dequant``).
* With a transform: one program per (BR, W) block, the transform one float32
  dot (IEEE precision) with a block-diagonal (W, W) matrix built from ``T``; a
  transform block holding NaN/Inf becomes NaN (as in the float64 golden model,
  where ``Inf * t`` poisons the block).

Codes and scales come from ``encode`` (thresholds for e8m0 blocks, else exact
division). Concrete quantize parameters are compile-time constants of the
kernel (``params.Known``). Kernels need power-of-two group sizes and transform
block sizes (``unsupported``).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ..._src.dispatch import Backend, triton_params
from ..._src.errors import check_bool
from .. import formats as FM
from .. import kernel as K
from .. import softfloat as SF
from ..config import check_fields, pow2
from . import encode as E
from . import params as PR

__all__ = ["QuantTiling", "quantize_fused", "quantize", "unsupported", "pair_call", "prologue",
           "SMALL_TRACED"]

F32 = jnp.float32
I32 = jnp.int32
U8 = jnp.uint8
BF16 = jnp.bfloat16
_INF = 0x7F800000


@dataclasses.dataclass(frozen=True)
class QuantTiling:
    """Blocks of the quantize kernels (defaults measured fastest:
    docs/decisions.md)."""
    rows: int = 2           # BR of the pair kernel
    cols: int = 1024        # elements along K per program (whole groups)
    warps: int = 2
    transform_rows: int = 32  # BR of the transform kernel (its W is the (W, W) block size)
    thresholds: bool = True  # e8m0 scales: codes by 7 thresholds (no division)
    static_params: bool = True  # concrete params baked in (``params.Known``)

    def __post_init__(self):
        check_fields(self, pow2=("rows", "cols", "warps", "transform_rows"))

    def use_thresholds(self, scale_dtype: str) -> bool:
        """Whether kernels for this scale format try the threshold branch (static)."""
        return self.thresholds and scale_dtype == "e8m0"


def unsupported(group_size: int, transform_shape=None):
    """Why ``quantize`` cannot run as a kernel (a message naming the argument), or None."""
    if not pow2(group_size):
        return f"group_size must be a power of two for the fp4 Pallas kernel, got {group_size}"
    if transform_shape is not None and not pow2(transform_shape[-1]):
        return ("transform block size g must be a power of two for the fp4 Pallas kernel, "
                f"got transform shape {tuple(transform_shape)}")
    return None


def _pair_kernel(x_ref, *refs, n_params, kind, scale_dtype, interpret, thresholds=True,
                 dequant=False, known=None):
    """One (BR, NG) block of groups; codes written as (BR, NG, G/2) bytes (no
    interleave) with the scale bytes, or with ``dequant`` the bfloat16 values
    ``v * scale`` as (BR, NG, G/2) int32 words holding a pair (no codes).
    ``n_params``: 1 (the params vector) or 3 (``encode.scalars``: params formed here)."""
    p_ref = refs[0] if n_params == 1 else E.params_in_kernel(refs[:3], interpret)
    out_refs = refs[n_params:]
    H = out_refs[0].shape[-1]
    lo, hi = E.halves(x_ref, kind, H)
    if dequant:
        v_lo, v_hi = E.dequant_values(lo, hi, p_ref, scale_dtype, interpret, thresholds, known)
        # each product is exact in bfloat16 (matmul.schedules.dequant): low 16 bits are 0
        out_refs[0][...] = (lax.shift_right_logical(SF.bits(v_lo), I32(16))
                            | (SF.bits(v_hi) & I32(-65536)))
        return
    scales, run = E.codes_of(lo, hi, p_ref, scale_dtype, interpret, thresholds, known)
    codes_ref, scales_ref = out_refs
    codes_ref[...] = run(lambda c_lo, c_hi: c_lo | (c_hi << 4)).astype(U8)
    scales_ref[...] = scales.astype(U8)


def pair_call(x2, params, G, scale_dtype, tiling, interpret, dequant=False):
    """x2 (R, K) float32/bf16/f16, G >= 2 -> (codes (R, K/2), scale bytes (R, K/G)),
    or with ``dequant`` bfloat16 (R, K) ``v * scale``. ``params``: the params
    vector (``params.params``) or, with thresholds off, the ``encode.scalars``
    tuple (the kernel forms the params: no XLA op before the launch)."""
    params = params if isinstance(params, tuple) else (params,)
    R, Kx = x2.shape
    ng, H = Kx // G, G // 2
    x3, kind = E.group_view(x2, G)
    inner = x3.shape[-1]
    BR = tiling.rows
    NG = max(1, min(tiling.cols // G, pl.next_power_of_2(ng)))
    Rp, NGp = pl.cdiv(R, BR) * BR, pl.cdiv(ng, NG) * NG
    if (Rp, NGp) != (R, ng):
        x3 = jnp.pad(x3, ((0, Rp - R), (0, NGp - ng), (0, 0)))
    if len(params) > 1 and tiling.use_thresholds(scale_dtype):
        raise ValueError("pair_call: scalar operands need a tiling without thresholds")
    kernel = functools.partial(_pair_kernel, n_params=len(params), kind=kind,
                               scale_dtype=scale_dtype, interpret=interpret, dequant=dequant,
                               thresholds=tiling.use_thresholds(scale_dtype),
                               known=PR.known(params[0]) if tiling.static_params
                               and len(params) == 1 else None)
    block = pl.BlockSpec((BR, NG, H), lambda i, j: (i, j, 0))
    if dequant:
        out_specs, out_shape = block, jax.ShapeDtypeStruct((Rp, NGp, H), I32)
    else:
        out_specs = [block, pl.BlockSpec((BR, NG), lambda i, j: (i, j))]
        out_shape = [jax.ShapeDtypeStruct((Rp, NGp, H), U8), jax.ShapeDtypeStruct((Rp, NGp), U8)]
    out = pl.pallas_call(
        kernel, grid=(Rp // BR, NGp // NG),
        in_specs=[pl.BlockSpec((BR, NG, inner), lambda i, j: (i, j, 0))] + [
            pl.BlockSpec(v.shape, lambda i, j: (0,)) for v in params],
        out_specs=out_specs, out_shape=out_shape, interpret=interpret,
        name=f"fp4_quantize_{kind}_{scale_dtype}{'_bf16_values' if dequant else ''}",
        **triton_params(interpret, tiling.warps))(x3, *params)
    if dequant:
        words = out[:R, :ng].reshape(R, Kx // 2)
        return lax.bitcast_convert_type(words, BF16).reshape(R, Kx)
    codes, scales = out
    return codes[:R, :ng].reshape(R, Kx // 2), scales[:R, :ng]


def _quant_kernel(*refs, G, W, transform, emit_y, scale_dtype, interpret, rounding=None):
    refs = list(refs)
    x_ref, p_ref = refs.pop(0), refs.pop(0)
    d_ref = refs.pop(0) if transform else None
    codes_ref, scales_ref = refs.pop(0), refs.pop(0)
    y_ref = refs.pop(0) if emit_y else None
    x = x_ref[...].astype(F32)
    BR = x.shape[0]
    if transform:
        g = transform
        xb = SF.bits(x).reshape(BR, W // g, g) & I32(0x7FFFFFFF)
        bad = jnp.max(xb, axis=2) >= I32(_INF)                       # (BR, W/g)
        xz = jnp.where(SF.bits(x) & I32(0x7FFFFFFF) >= I32(_INF), F32(0), x)
        y = lax.dot_general(xz, d_ref[...], (((1,), (1,)), ((), ())),
                            precision=lax.Precision.HIGHEST, preferred_element_type=F32)
        bad = jnp.broadcast_to(bad[:, :, None], (BR, W // g, g)).reshape(BR, W)
        x = jnp.where(bad, F32(jnp.nan), y)
        if emit_y:
            y_ref[...] = x
    n = W // G
    x3 = x.reshape(BR, n, G)
    amax = jnp.max(SF.bits(x3) & I32(0x7FFFFFFF), axis=2)            # (BR, n) int32
    scales, p = E.group_scales(amax, p_ref, scale_dtype, interpret)
    q = K.div(x3, jnp.broadcast_to(p[:, :, None], (BR, n, G)), interpret)
    codes = E.encode(lambda enc: enc(q), p_ref[2] if rounding is None else rounding)
    codes = codes.reshape(BR, W // 2, 2)
    weight = 1 + 15 * lax.broadcasted_iota(I32, (1, 1, 2), 2)         # low nibble, high nibble
    codes_ref[...] = jnp.sum(codes * weight, axis=2).astype(U8)
    scales_ref[...] = scales.astype(U8)


def _block_diag(transform, Kx, W):
    """(g, g) or (K/g, g, g) -> (1 or K/W, W, W) block-diagonal float32 matrices."""
    g = transform.shape[-1]
    t = transform.astype(F32)
    if t.ndim == 2:
        return jnp.kron(jnp.eye(W // g, dtype=F32), t)[None]
    tb = t.reshape(Kx // W, W // g, g, g)
    eye = jnp.eye(W // g, dtype=F32)
    d = jnp.einsum("cbij,bB->cbiBj", tb, eye)                         # exact (one non-zero term)
    return d.reshape(Kx // W, W, W)


def _quant_call(x2, params, transform, G, scale_dtype, tiling, emit_y, interpret):
    R, Kx = x2.shape
    g = 0 if transform is None else transform.shape[-1]
    # W: power of two >= 16 holding whole groups and transform blocks; small with a
    # transform (the (W, W) block-diagonal matrix), else up to tiling.cols and 512
    W = max(32, G, g) if g else max(16, G, min(tiling.cols, 512, pl.next_power_of_2(Kx)))
    BR = tiling.transform_rows
    Rp, Kp = pl.cdiv(R, BR) * BR, pl.cdiv(Kx, W) * W
    if (Rp, Kp) != (R, Kx):
        x2 = jnp.pad(x2, ((0, Rp - R), (0, Kp - Kx)))
    args = [x2, params]
    specs = [pl.BlockSpec((BR, W), lambda i, j: (i, j)),
             pl.BlockSpec(params.shape, lambda i, j: (0,))]
    if g:
        t = transform
        if t.ndim == 3 and Kp != Kx:
            t = jnp.concatenate([t, jnp.broadcast_to(jnp.eye(g, dtype=t.dtype),
                                                     ((Kp - Kx) // g, g, g))])
        d = _block_diag(t, Kp, W)
        args.append(d)
        specs.append(pl.BlockSpec((None, W, W), (lambda i, j: (0, 0, 0)) if d.shape[0] == 1
                                  else (lambda i, j: (j, 0, 0))))
    out_specs = [pl.BlockSpec((BR, W // 2), lambda i, j: (i, j)),
                 pl.BlockSpec((BR, W // G), lambda i, j: (i, j))]
    shapes = [jax.ShapeDtypeStruct((Rp, Kp // 2), U8), jax.ShapeDtypeStruct((Rp, Kp // G), U8)]
    if emit_y:
        out_specs.append(pl.BlockSpec((BR, W), lambda i, j: (i, j)))
        shapes.append(jax.ShapeDtypeStruct((Rp, Kp), F32))
    known = PR.known(params) if tiling.static_params else None
    kernel = functools.partial(_quant_kernel, G=G, W=W, transform=g, emit_y=emit_y,
                               scale_dtype=scale_dtype, interpret=interpret,
                               rounding=None if known is None else known.rounding)
    form = ("transform_" + ("per_block" if transform.ndim == 3 else "shared")) if g else "groups"
    outs = pl.pallas_call(kernel, grid=(Rp // BR, Kp // W), in_specs=specs,
                          out_specs=out_specs, out_shape=shapes, interpret=interpret,
                          name=f"fp4_quantize_{form}_{scale_dtype}",
                          **triton_params(interpret, tiling.warps))(*args)
    codes, scales = outs[0][:R, :Kx // 2], outs[1][:R, :Kx // G]
    return (codes, scales, outs[2][:R, :Kx]) if emit_y else (codes, scales)


def prologue(x, rounding):
    """(x as float32 / bfloat16 / float16, rounding index) from the entry points'
    arguments (rounding by name or index)."""
    if x.dtype not in (F32, BF16, jnp.float16):
        x = x.astype(F32)
    if isinstance(rounding, str):
        rounding = FM.ROUNDINGS.index(rounding)
    return x, rounding


#: below this many elements, traced scalars quantize by division (``QuantTiling(
#: thresholds=False)``): their threshold params are a staged softfloat program
#: (``params.params``) that costs more per call than dividing saves (measured:
#: docs/decisions.md).
SMALL_TRACED = 1 << 22


def _default_tiling(x, scale_scale, global_scale) -> QuantTiling:
    traced = any(isinstance(v, jax.core.Tracer) for v in (scale_scale, global_scale))
    return QuantTiling(thresholds=not (traced and x.size < SMALL_TRACED))


def quantize_fused(x, scale_scale, global_scale, transform=None, *, group_size: int,
                   scale_dtype: str, rounding, backend: Backend,
                   tiling: QuantTiling | None = None, return_transformed: bool = False):
    """float (..., K) (f32 / bf16 / f16), float32 scalars, optional transform
    (g, g) / (K/g, g, g) -> (codes uint8 (..., K/2), scale bytes uint8 (..., K/G)),
    plus the transformed float32 values (..., K) with ``return_transformed``.
    ``rounding``: index in ``formats.ROUNDINGS`` (may be traced) or its name;
    ``backend``: the resolved implementation (``backend.interpret``)."""
    why = unsupported(group_size, None if transform is None else transform.shape)
    if why:
        raise ValueError(why)
    return_transformed = check_bool(return_transformed, "return_transformed")
    x, rounding = prologue(x, rounding)
    interpret = backend.interpret
    shape = x.shape
    Kx = shape[-1]
    x2 = x.reshape(-1, Kx)
    tiling = tiling or _default_tiling(x, scale_scale, global_scale)
    pair = transform is None and group_size >= 2 and not return_transformed
    traced = any(isinstance(v, jax.core.Tracer) for v in (scale_scale, global_scale, rounding))
    if pair and traced and not tiling.use_thresholds(scale_dtype):
        params = E.scalars(scale_scale, global_scale, rounding)     # formed in the kernel
    else:
        params = PR.params(scale_scale, global_scale, rounding,
                           tiling.use_thresholds(scale_dtype))
    if pair:
        out = pair_call(x2, params, group_size, scale_dtype, tiling, interpret)
    else:
        out = _quant_call(x2, params, transform, group_size, scale_dtype, tiling,
                          return_transformed, interpret)
    lead = shape[:-1]
    res = (out[0].reshape(lead + (Kx // 2,)), out[1].reshape(lead + (Kx // group_size,)))
    return res + (out[2].reshape(shape),) if return_transformed else res


def quantize(x, scale_scale, global_scale, *, group_size: int, scale_dtype: str, rounding,
             backend: Backend):
    """Same contract as ``xla.quantize`` (x already transformed)."""
    return quantize_fused(x, scale_scale, global_scale, None, group_size=group_size,
                          scale_dtype=scale_dtype, rounding=rounding, backend=backend)
