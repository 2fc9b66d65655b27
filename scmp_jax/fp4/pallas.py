"""FP4 Pallas (Triton backend) quantize kernels and the matmul entry point (SPEC.md
section 9). Registered in ``scmp_jax.fp4.api`` as implementation ``"pallas"``.

* ``quantize_fused``: float (R, K) (float32 / bfloat16 / float16 read as is)
  -> packed e2m1 codes uint8 (R, K/2) and scale bytes uint8 (R, K/G), bit-equal
  to ``golden.fp4.quantize`` (of the kernel's own transformed values).
  Without a transform (G >= 2): one program per (BR rows, NG groups) block of
  the input viewed as (R, K/G, G/2) pairs (16-bit inputs as int32 words holding
  two elements, float32 by two stride-2 loads), so codes are written as bytes
  without interleaving. With a transform: one program per (BR, W) block, the
  transform one float32 dot (IEEE precision) with a block-diagonal (W, W)
  matrix built from ``T``; a transform block holding NaN/Inf becomes NaN (as in
  the float64 golden model, where ``Inf * t`` poisons the block).
  Encoders are the integer formulas of ``formats``; SPEC's two float32
  roundings (``amax / (ss*gs)``, ``x / (scale_deq*gs)``) and the product
  ``scale_deq * gs`` are PTX ``div.rn`` / ``mul.rn`` on the GPU (IEEE,
  subnormals kept) and ``softfloat`` (integer, exact) in interpret mode, where
  XLA CPU would flush subnormals; a block whose divisors are all powers of two
  multiplies by the exact reciprocal instead (same bits).
* ``matmul``: see ``pallas_matmul`` (gemv for one or two rows, fused
  decode+dot kernel with split-K for other decode-sized N, decode-to-bfloat16
  + dense GEMM for large N).
* ``quantize`` + ``matmul`` in fewer passes (same bits): ``pallas_linear``.
* e2m1 codes: e8m0 blocks whose ``scale_deq * gs`` are all ``2^d * gs``
  compare ``|x|`` with 7 thresholds per group (exponent-shifted from 7 found
  once per global scale by exact division, ``pallas_thresholds``); with
  ``QuantTiling(e4m3_sets=True)`` e4m3 blocks do the same with one of 8
  threshold sets per group (by the scale's significand); other blocks divide
  (``div.rn``) or, for power-of-two divisors, multiply by the exact
  reciprocal. Concrete quantize parameters are compile-time constants of the
  kernel (``pallas_params.Known``).
* ``dequantize``, ``block_transform``: the XLA functions (elementwise /
  einsum; no kernel needed).

Kernels need power-of-two group sizes (>= 2 for the matmul) and transform
block sizes; ``unsupported`` says why a configuration cannot run, and the API
then uses XLA (``implementation=None``) or raises ValueError
(``implementation="pallas"``). Off GPU the kernels run with ``interpret=True``.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .._src.platform import on_gpu
from .._src.dispatch import triton_params
from .._src.kernel_math import PtxMath
from . import formats as FM
from . import softfloat as SF
from . import pallas_matmul as _mm
from . import pallas_params as PR
from . import pallas_thresholds as TH
from . import xla as _xla
from .pallas_matmul import MatmulTiling, _mul, matmul_tiling

__all__ = ["quantize", "quantize_fused", "dequantize", "matmul", "block_transform",
           "unsupported", "unsupported_matmul", "QuantTiling", "MatmulTiling", "matmul_tiling"]

F32 = jnp.float32
I32 = jnp.int32
U8 = jnp.uint8
BF16 = jnp.bfloat16
_INF = 0x7F800000

dequantize = _xla.dequantize
block_transform = _xla.block_transform


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def unsupported(group_size: int, transform_shape=None):
    """Why ``quantize`` cannot run as a kernel (a message naming the argument), or None."""
    if not _pow2(group_size):
        return f"group_size must be a power of two for the fp4 Pallas kernel, got {group_size}"
    if transform_shape is not None and not _pow2(transform_shape[-1]):
        return ("transform block size g must be a power of two for the fp4 Pallas kernel, "
                f"got transform shape {tuple(transform_shape)}")
    return None


def unsupported_matmul(group_a: int, group_w: int):
    """Why ``matmul`` cannot run as a kernel, or None."""
    for name, g in (("a", group_a), ("w", group_w)):
        if not _pow2(g) or g < 2:
            return (f"{name}.group_size must be a power of two >= 2 for the fp4 Pallas matmul, "
                    f"got {g}")
    return None


def _interpret() -> bool:
    return not on_gpu()


# ---- exact float32 ops inside a kernel (``_mul``: see pallas_matmul) -------

def _div(a, b, interpret):
    """IEEE float32 quotient (subnormals kept)."""
    return SF.div(a, b) if interpret else PtxMath.div(a, b)


# ---- quantize kernel -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QuantTiling:
    rows: int = 2           # BR (H200, bench.fp4_probe quant_sweep, session 9: 2 x 1024 /
    cols: int = 1024        # 2 warps 72.8 % of copy, 2 x 512 / 1 72.6 %, 4 x 512 / 2 69.7 %,
    warps: int = 2          # 8 x 512 / 4 66.6 %); elements along K per program (whole groups)
    transform_rows: int = 32  # BR of the transform kernel (its W is the (W, W) block size)
    thresholds: bool = True  # e8m0 scales: codes by 7 thresholds (no division); e4m3
                             # scales only with ``e4m3_sets`` (one threshold set per
                             # scale significand)
    static_params: bool = True  # concrete params baked in (``pallas_params.Known``)
    e4m3_sets: bool = False  # e4m3 scales: codes by one of 8 threshold sets per group
                             # (concrete scalars only; opt-in: slower on the H200,
                             # session 10: 48.6 % of copy vs 56.4 % dividing)

    def __post_init__(self):
        _mm.check_fields(self, pow2=("rows", "cols", "warps", "transform_rows"))
        if self.e4m3_sets and not self.thresholds:
            raise ValueError("QuantTiling: e4m3_sets needs thresholds=True")

    def use_thresholds(self, scale_dtype: str) -> bool:
        """Whether kernels for this scale format try the threshold branch (static)."""
        return self.thresholds and scale_dtype == "e8m0"

    def use_sets(self, scale_dtype: str) -> bool:
        """Whether kernels for this scale format try the e4m3 threshold sets (static)."""
        return self.thresholds and self.e4m3_sets and scale_dtype == "e4m3"


def _group_scales(amax, p_ref, scale_dtype, interpret):
    """amax bits (BR, n) int32 -> (scale bytes int32, ``scale_deq * gs`` float32):
    ``scale = amax / (scale_scale * gs)`` encoded (NaN byte for non-finite groups)."""
    prod, gs = SF.from_bits(p_ref[0]), SF.from_bits(p_ref[1])
    scale = _div(SF.from_bits(amax), prod, interpret)
    scales = jnp.where(amax >= I32(_INF), I32(FM.NAN_CODE[scale_dtype]),
                       FM.encode_scale(scale, scale_dtype).astype(I32))
    return scales, _mul(FM.decode_scale(scales, scale_dtype), gs, interpret)


def _halves(x_ref, kind, H, lead=None):
    """Even and odd elements of each group as float32 (BR, NG, H): 16-bit inputs
    arrive as int32 words holding a pair (low half = the even element), float32
    by two stride-2 loads. ``lead`` indexes the ref's first two axes (None: the
    whole block, loaded as ``x_ref[...]``)."""
    if kind == "f32":
        lead = (slice(None), slice(None)) if lead is None else lead
        return x_ref[lead + (pl.ds(0, H, stride=2),)], x_ref[lead + (pl.ds(1, H, stride=2),)]
    w = x_ref[...] if lead is None else x_ref[lead + (slice(None),)]
    if kind == "bf16":
        return SF.from_bits(w << 16), SF.from_bits(w & I32(-65536))
    f16 = lambda v: lax.bitcast_convert_type(v.astype(jnp.uint16), jnp.float16).astype(F32)
    return f16(w & I32(0xFFFF)), f16(lax.shift_right_logical(w, I32(16)))


def _quotients(lo, hi, p, interpret):
    """``lo / p``, ``hi / p`` (p (BR, NG) broadcast over groups), IEEE-rounded.

    When every ``p`` of the block is a power of two ``2^k`` with ``2^-k`` normal,
    ``x * 2^-k`` is the same real number as ``x / 2^k``, so its rounded product
    is the rounded quotient: one multiply per element instead of an IEEE
    division (a scalar branch, so only one side runs)."""
    pb_ = SF.bits(p)
    e = pb_ >> 23
    pow2 = ((pb_ & I32(0x7FFFFF)) == 0) & (e >= 1) & (e <= 253)
    shape = lo.shape
    recip = jnp.broadcast_to(SF.from_bits((I32(254) - e) << 23)[:, :, None], shape)
    pb = jnp.broadcast_to(p[:, :, None], shape)
    return lax.cond(jnp.min(pow2.astype(I32)) == 1,
                    lambda: (_mul(lo, recip, interpret), _mul(hi, recip, interpret)),
                    lambda: (_div(lo, pb, interpret), _div(hi, pb, interpret)))


def _encode(body, rounding):
    """``body(enc)`` with ``enc`` float32 -> int32 e2m1 codes for the rounding index:
    ties to even (the default) by ``formats.e2m1_encode_even`` (one float add), the
    other modes by the integer encoder. A traced index is a scalar branch (only
    one side runs); a Python int picks the encoder at trace time."""
    general = lambda q: FM.e2m1_encode(q, rounding).astype(I32)
    if isinstance(rounding, int):
        return body(FM.e2m1_encode_even if rounding == 0 else general)
    return lax.cond(rounding == 0, lambda: body(FM.e2m1_encode_even), lambda: body(general))


def _codes_of(lo, hi, p_ref, scale_dtype, interpret, thresholds, known=None):
    """Float32 halves (BR, NG, H) of each group -> (scale bytes int32 (BR, NG),
    ``run``): ``run(body)`` is ``body(codes lo, codes hi)`` (int32 e2m1 codes), the
    codes by thresholds where ``pallas_thresholds.use_thresholds`` holds, else by
    quotients (a scalar branch per block, so only one side runs). ``known``:
    ``pallas_params.Known`` (static) or None (all read from ``p_ref``)."""
    mag = lambda v: jnp.max(SF.bits(v) & I32(0x7FFFFFFF), axis=2)
    amax = jnp.maximum(mag(lo), mag(hi))                               # (BR, NG) int32
    scales, p = _group_scales(amax, p_ref, scale_dtype, interpret)
    rounding = p_ref[2] if known is None else known.rounding

    def general(body):
        q_lo, q_hi = _quotients(lo, hi, p, interpret)
        return _encode(lambda enc: body(enc(q_lo), enc(q_hi)), rounding)

    def run(body):
        if scale_dtype == "e4m3" and known is not None and known.sets:
            j = TH.set_index(FM.decode_scale(scales, scale_dtype))
            return lax.cond(TH.use_threshold_sets(p, j, p_ref),
                            lambda: body(*TH.threshold_set_codes(
                                lo, hi, p, j, p_ref, lambda a, b: _mul(a, b, interpret))),
                            lambda: general(body))
        if not thresholds or (known is not None and not known.c):
            return general(body)
        return lax.cond(TH.use_thresholds(p, amax, p_ref, known_ok=known is not None),
                        lambda: body(*TH.threshold_codes(
                            lo, hi, p, p_ref, lambda a, b: _mul(a, b, interpret),
                            c=None if known is None else known.c)),
                        lambda: general(body))
    return scales, run


def _dequant_values(lo, hi, p_ref, scale_dtype, interpret, thresholds, known=None):
    """Float32 halves (BR, NG, H) -> float32 ``v * scale`` of each (e2m1 value times
    its decoded group scale, no global scale; exact but for the one overflow
    ``6 * 2^127``)."""
    scales, run = _codes_of(lo, hi, p_ref, scale_dtype, interpret, thresholds, known)
    sd = FM.decode_scale(scales, scale_dtype)[:, :, None]
    value = lambda c: _mm._scaled(c, False, sd, interpret)
    return run(lambda c_lo, c_hi: (value(c_lo), value(c_hi)))


def _scalars(scale_scale, global_scale, rounding):
    """The in-kernel quantization's scalar operands: (1,) scale scale, global scale
    (float32) and rounding index (int32)."""
    return _mm.scalar_operands(scale_scale, global_scale) + (
        jnp.asarray(rounding, I32).reshape(1),)


def _params_in_kernel(refs, interpret):
    """The quantize kernels' params tuple formed inside a kernel from the
    ``_scalars`` refs (no XLA computation before the launch): bits of ``ss * gs`` as
    a (1, 1) tensor, bits of ``gs``, the rounding index."""
    ss_ref, gs_ref, r_ref = refs
    prod = _mul(jnp.full((1, 1), ss_ref[0], F32), gs_ref[0], interpret)
    return SF.bits(prod), SF.bits(gs_ref[0]), r_ref[0]


def _pair_kernel(x_ref, *refs, n_params, kind, scale_dtype, interpret, thresholds=True,
                 dequant=False, known=None):
    """One (BR, NG) block of groups; codes written as (BR, NG, G/2) bytes (no
    interleave) with the scale bytes, or with ``dequant`` the bfloat16 values
    ``v * scale`` as (BR, NG, G/2) int32 words holding a pair (no codes).
    ``n_params``: 1 (the params vector) or 3 (``_scalars``: params formed here)."""
    p_ref = refs[0] if n_params == 1 else _params_in_kernel(refs[:3], interpret)
    out_refs = refs[n_params:]
    H = out_refs[0].shape[-1]
    lo, hi = _halves(x_ref, kind, H)
    if dequant:
        v_lo, v_hi = _dequant_values(lo, hi, p_ref, scale_dtype, interpret, thresholds, known)
        # each product is exact in bfloat16 (pallas_matmul): its low 16 bits are 0
        out_refs[0][...] = (lax.shift_right_logical(SF.bits(v_lo), I32(16))
                            | (SF.bits(v_hi) & I32(-65536)))
        return
    scales, run = _codes_of(lo, hi, p_ref, scale_dtype, interpret, thresholds, known)
    codes_ref, scales_ref = out_refs
    codes_ref[...] = run(lambda c_lo, c_hi: c_lo | (c_hi << 4)).astype(U8)
    scales_ref[...] = scales.astype(U8)


def _group_view(x2, G):
    """float (R, K) -> ((R, K/G, G) float32 or (R, K/G, G/2) int32 words holding
    pairs of 16-bit elements, kind "f32" | "bf16" | "f16")."""
    R, K = x2.shape
    kind = {F32: "f32", BF16: "bf16", jnp.float16: "f16"}[x2.dtype.type]
    if kind == "f32":
        return x2.reshape(R, K // G, G), kind
    words = lax.bitcast_convert_type(x2.reshape(R, K // 2, 2), I32)
    return words.reshape(R, K // G, G // 2), kind


def _pair_call(x2, params, G, scale_dtype, tiling, interpret, dequant=False):
    """x2 (R, K) float32/bf16/f16, G >= 2 -> (codes (R, K/2), scale bytes (R, K/G)),
    or with ``dequant`` bfloat16 (R, K) ``v * scale``. ``params``: the params
    vector (``pallas_params.params``) or, with thresholds off, the ``_scalars``
    tuple (the kernel forms the params: no XLA op before the launch)."""
    params = params if isinstance(params, tuple) else (params,)
    R, K = x2.shape
    ng, H = K // G, G // 2
    x3, kind = _group_view(x2, G)
    inner = x3.shape[-1]
    BR = tiling.rows
    NG = max(1, min(tiling.cols // G, pl.next_power_of_2(ng)))
    Rp, NGp = pl.cdiv(R, BR) * BR, pl.cdiv(ng, NG) * NG
    if (Rp, NGp) != (R, ng):
        x3 = jnp.pad(x3, ((0, Rp - R), (0, NGp - ng), (0, 0)))
    if len(params) > 1 and tiling.use_thresholds(scale_dtype):
        raise ValueError("_pair_call: scalar operands need a tiling without thresholds")
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
        out_specs=out_specs, out_shape=out_shape,
        interpret=interpret, **triton_params(interpret, tiling.warps))(x3, *params)
    if dequant:
        words = out[:R, :ng].reshape(R, K // 2)
        return lax.bitcast_convert_type(words, BF16).reshape(R, K)
    codes, scales = out
    return codes[:R, :ng].reshape(R, K // 2), scales[:R, :ng]


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
    scales, p = _group_scales(amax, p_ref, scale_dtype, interpret)
    q = _div(x3, jnp.broadcast_to(p[:, :, None], (BR, n, G)), interpret)
    codes = _encode(lambda enc: enc(q), p_ref[2] if rounding is None else rounding)
    codes = codes.reshape(BR, W // 2, 2)
    weight = 1 + 15 * lax.broadcasted_iota(I32, (1, 1, 2), 2)         # low nibble, high nibble
    codes_ref[...] = jnp.sum(codes * weight, axis=2).astype(U8)
    scales_ref[...] = scales.astype(U8)


def _block_diag(transform, K, W):
    """(g, g) or (K/g, g, g) -> (1 or K/W, W, W) block-diagonal float32 matrices."""
    g = transform.shape[-1]
    t = transform.astype(F32)
    if t.ndim == 2:
        return jnp.kron(jnp.eye(W // g, dtype=F32), t)[None]
    tb = t.reshape(K // W, W // g, g, g)
    eye = jnp.eye(W // g, dtype=F32)
    d = jnp.einsum("cbij,bB->cbiBj", tb, eye)                         # exact (one non-zero term)
    return d.reshape(K // W, W, W)


def _quant_call(x2, params, transform, G, scale_dtype, tiling, emit_y, interpret):
    R, K = x2.shape
    g = 0 if transform is None else transform.shape[-1]
    # W: power of two >= 16 holding whole groups and transform blocks; small with a
    # transform (the (W, W) block-diagonal matrix), else up to tiling.cols and 512
    # (BR = transform_rows float32 rows: 32 x 512 is the block measured here)
    W = max(32, G, g) if g else max(16, G, min(tiling.cols, 512, pl.next_power_of_2(K)))
    BR = tiling.transform_rows
    Rp, Kp = pl.cdiv(R, BR) * BR, pl.cdiv(K, W) * W
    if (Rp, Kp) != (R, K):
        x2 = jnp.pad(x2, ((0, Rp - R), (0, Kp - K)))
    args = [x2, params]
    specs = [pl.BlockSpec((BR, W), lambda i, j: (i, j)),
             pl.BlockSpec(params.shape, lambda i, j: (0,))]
    if g:
        t = transform
        if t.ndim == 3 and Kp != K:
            t = jnp.concatenate([t, jnp.broadcast_to(jnp.eye(g, dtype=t.dtype),
                                                     ((Kp - K) // g, g, g))])
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
    outs = pl.pallas_call(kernel, grid=(Rp // BR, Kp // W), in_specs=specs,
                          out_specs=out_specs, out_shape=shapes, interpret=interpret,
                          **triton_params(interpret, tiling.warps))(*args)
    codes, scales = outs[0][:R, :K // 2], outs[1][:R, :K // G]
    return (codes, scales, outs[2][:R, :K]) if emit_y else (codes, scales)


def _prologue(x, rounding, interpret):
    """(x as float32 / bfloat16 / float16, rounding index, interpret flag) from the
    entry points' arguments (rounding by name or index; interpret None: off GPU)."""
    if x.dtype not in (F32, BF16, jnp.float16):
        x = x.astype(F32)
    if isinstance(rounding, str):
        rounding = FM.ROUNDINGS.index(rounding)
    return x, rounding, _interpret() if interpret is None else interpret


#: below this many elements, traced scalars quantize by division (``QuantTiling(
#: thresholds=False)``): their threshold params are a staged softfloat program
#: (``pallas_params.params``) that costs more per call than dividing saves. H200,
#: session 12 (``bench.fp4_probe --cases fused``, decode N = 4 / 8 / 16 x 4096,
#: quantize + matmul): 0.0210 / 0.0223 / 0.0192 ms dividing vs 0.0235 / 0.0234 /
#: 0.0216 with the staged thresholds; at 8192^2 thresholds (params read in the
#: kernel) save 0.0145 ms = 0.22 ps per element (session 9), i.e. ~2 us at 2^23.
SMALL_TRACED = 1 << 22


def _default_tiling(x, scale_scale, global_scale) -> "QuantTiling":
    traced = any(isinstance(v, jax.core.Tracer) for v in (scale_scale, global_scale))
    return QuantTiling(thresholds=not (traced and x.size < SMALL_TRACED))


def quantize_fused(x, scale_scale, global_scale, transform=None, *, group_size: int,
                   scale_dtype: str, rounding, tiling: QuantTiling | None = None,
                   return_transformed: bool = False, interpret: bool | None = None):
    """float (..., K) (f32 / bf16 / f16), float32 scalars, optional transform
    (g, g) / (K/g, g, g) -> (codes uint8 (..., K/2), scale bytes uint8 (..., K/G)),
    plus the transformed float32 values (..., K) with ``return_transformed``.
    ``rounding``: index in ``formats.ROUNDINGS`` (may be traced) or its name."""
    why = unsupported(group_size, None if transform is None else transform.shape)
    if why:
        raise ValueError(why)
    x, rounding, interpret = _prologue(x, rounding, interpret)
    shape = x.shape
    K = shape[-1]
    x2 = x.reshape(-1, K)
    tiling = tiling or _default_tiling(x, scale_scale, global_scale)
    pair = transform is None and group_size >= 2 and not return_transformed
    traced = any(isinstance(v, jax.core.Tracer) for v in (scale_scale, global_scale, rounding))
    if pair and traced and not tiling.use_thresholds(scale_dtype):
        params = _scalars(scale_scale, global_scale, rounding)     # formed in the kernel
    else:
        params = PR.params(scale_scale, global_scale, rounding,
                           tiling.use_thresholds(scale_dtype),
                           pair and tiling.use_sets(scale_dtype))
    if pair:
        out = _pair_call(x2, params, group_size, scale_dtype, tiling, interpret)
    else:
        out = _quant_call(x2, params, transform, group_size, scale_dtype, tiling,
                          return_transformed, interpret)
    lead = shape[:-1]
    res = (out[0].reshape(lead + (K // 2,)), out[1].reshape(lead + (K // group_size,)))
    return res + (out[2].reshape(shape),) if return_transformed else res


def quantize(x, scale_scale, global_scale, *, group_size: int, scale_dtype: str, rounding):
    """Same contract as ``xla.quantize`` (x already transformed)."""
    return quantize_fused(x, scale_scale, global_scale, None, group_size=group_size,
                          scale_dtype=scale_dtype, rounding=rounding)


# ---- matmul ----------------------------------------------------------------------------

def matmul(a, w, *, tiling: MatmulTiling | None = None, interpret: bool | None = None):
    """``a``, ``w``: (codes uint8, scale bytes uint8, global scale, scale_dtype) of
    activations (..., N, K) and weights (M, K) -> float32 (..., N, M); kernels and
    schedules in ``pallas_matmul``."""
    K = 2 * a[0].shape[-1]
    why = unsupported_matmul(K // a[1].shape[-1], K // w[1].shape[-1])
    if why:
        raise ValueError(why)
    return _mm.matmul(a, w, tiling=tiling, interpret=_interpret() if interpret is None
                      else interpret)
