"""FP4 Pallas (Triton backend) kernels: fused transform+quantize+pack and fp4 x fp4 matmul
(SPEC.md section 9). Registered in ``scmp_jax.fp4.api`` as implementation ``"pallas"``.

* ``quantize_fused``: float (R, K) (float32 / bfloat16 / float16 read as is)
  -> packed e2m1 codes uint8 (R, K/2) and scale bytes uint8 (R, K/G), bit-equal
  to ``golden.fp4.quantize`` of the (kernel's own) transformed values. One
  program per (BR rows, W columns) block, ``W`` a power of two holding whole
  groups (and whole transform blocks). The optional transform is one float32
  dot (IEEE precision) of the block with a block-diagonal (W, W) matrix built
  from ``T``; a transform block holding NaN/Inf becomes NaN (as in the float64
  golden model, where ``Inf * t`` poisons every output of the block).
  Encoders are the integer formulas of ``formats``; SPEC's two float32
  roundings (``amax / (ss*gs)``, ``x / (scale_deq*gs)``) and the product
  ``scale_deq * gs`` are PTX ``div.rn`` / ``mul.rn`` on the GPU (IEEE,
  subnormals kept) and ``softfloat`` (integer, exact) in interpret mode, where
  XLA CPU would flush subnormals.
* ``matmul``: activation codes/scales (N, K) x weight codes/scales (M, K) ->
  float32 (N, M) ``= alpha * sum_k (v_a s_a)(v_w s_w)``, ``alpha = gs_a * gs_w``.
  Tiles are decoded in the kernel to bfloat16 (e2m1 has 2 significant bits,
  e8m0 1, e4m3 4: every product ``v * s`` has <= 6 and is exact in bfloat16
  while it lies in bfloat16's (= float32's) range; ``6 * 2^127`` overflows
  and values below 2^-126 are subnormal, i.e. e8m0 bytes 0 and 254 at the
  extremes: same limits as the XLA path), dotted with float32 accumulation.
  The low nibbles of a byte row and the high nibbles are dotted separately
  (the sum over K does not care about its order), so no interleave is needed.
  Rows are padded to >= 16 (the minimum dot tile): decode-sized N = 1, 8 work.
* ``dequantize``, ``block_transform``: the XLA functions (elementwise /
  einsum; no kernel needed).

Kernels need power-of-two group sizes (>= 2 for the matmul) and transform
block sizes (blocks must be powers of two); ``unsupported`` says why a
configuration cannot run, and the API then uses XLA (``implementation=None``)
or raises ValueError (``implementation="pallas"``). Off GPU the kernels run
with ``interpret=True``.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .._backend import on_gpu
from .._kernel_math import PtxMath
from . import formats as FM
from . import softfloat as SF
from . import xla as _xla

try:  # jax >= 0.10: Triton-specific pieces live under pallas.triton
    from jax.experimental.pallas import triton as _pltriton
except ImportError:  # pragma: no cover
    _pltriton = None

__all__ = ["quantize", "quantize_fused", "dequantize", "matmul", "block_transform",
           "unsupported", "unsupported_matmul", "QuantTiling", "MatmulTiling"]

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


def _params(interpret, warps, stages=1):
    if interpret or _pltriton is None:
        return {}
    return {"compiler_params": _pltriton.CompilerParams(num_warps=warps, num_stages=stages)}


# ---- exact float32 ops inside a kernel ------------------------------------------------

def _mul(a, b, interpret):
    """IEEE float32 product (subnormals kept): integer softfloat off GPU, PTX on it."""
    return SF.mul(a, b) if interpret else PtxMath.mul(a, b)


def _div(a, b, interpret):
    """IEEE float32 quotient (subnormals kept)."""
    return SF.div(a, b) if interpret else PtxMath.div(a, b)


# ---- quantize kernel -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class QuantTiling:
    rows: int = 32          # BR
    cols: int = 256         # W (rounded up to hold whole groups and transform blocks)
    warps: int = 4


def _quant_kernel(*refs, G, W, transform, emit_y, scale_dtype, interpret):
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
    prod, gs = SF.from_bits(p_ref[0]), SF.from_bits(p_ref[1])
    rounding = p_ref[2]
    n = W // G
    x3 = x.reshape(BR, n, G)
    amax = jnp.max(SF.bits(x3) & I32(0x7FFFFFFF), axis=2)            # (BR, n) int32
    scale = _div(SF.from_bits(amax), prod, interpret)
    scales = jnp.where(amax >= I32(_INF), I32(FM.NAN_CODE[scale_dtype]),
                       FM.encode_scale(scale, scale_dtype).astype(I32))
    p = _mul(FM.decode_scale(scales, scale_dtype), gs, interpret)
    q = _div(x3, jnp.broadcast_to(p[:, :, None], (BR, n, G)), interpret)
    codes = FM.e2m1_encode(q, rounding).astype(I32).reshape(BR, W // 2, 2)
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
    # transform (the (W, W) block-diagonal matrix), else up to tiling.cols
    W = max(32, G, g) if g else max(16, G, min(tiling.cols, pl.next_power_of_2(K)))
    BR = tiling.rows
    Rp, Kp = pl.cdiv(R, BR) * BR, pl.cdiv(K, W) * W
    if (Rp, Kp) != (R, K):
        x2 = jnp.pad(x2, ((0, Rp - R), (0, Kp - K)))
    args = [x2, params]
    specs = [pl.BlockSpec((BR, W), lambda i, j: (i, j)),
             pl.BlockSpec((4,), lambda i, j: (0,))]
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
    kernel = functools.partial(_quant_kernel, G=G, W=W, transform=g, emit_y=emit_y,
                               scale_dtype=scale_dtype, interpret=interpret)
    outs = pl.pallas_call(kernel, grid=(Rp // BR, Kp // W), in_specs=specs,
                          out_specs=out_specs, out_shape=shapes, interpret=interpret,
                          **_params(interpret, tiling.warps))(*args)
    codes, scales = outs[0][:R, :K // 2], outs[1][:R, :K // G]
    return (codes, scales, outs[2][:R, :K]) if emit_y else (codes, scales)


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
    if interpret is None:
        interpret = _interpret()
    if isinstance(rounding, str):
        rounding = FM.ROUNDINGS.index(rounding)
    shape = x.shape
    K = shape[-1]
    if x.dtype not in (F32, BF16, jnp.float16):
        x = x.astype(F32)
    x2 = x.reshape(-1, K)
    prod = SF.mul(scale_scale, global_scale)
    params = jnp.stack([SF.bits(prod), SF.bits(global_scale), jnp.asarray(rounding, I32),
                        I32(0)])
    out = _quant_call(x2, params, transform, group_size, scale_dtype,
                      tiling or QuantTiling(), return_transformed, interpret)
    lead = shape[:-1]
    res = (out[0].reshape(lead + (K // 2,)), out[1].reshape(lead + (K // group_size,)))
    return res + (out[2].reshape(shape),) if return_transformed else res


def quantize(x, scale_scale, global_scale, *, group_size: int, scale_dtype: str, rounding):
    """Same contract as ``xla.quantize`` (x already transformed)."""
    return quantize_fused(x, scale_scale, global_scale, None, group_size=group_size,
                          scale_dtype=scale_dtype, rounding=rounding)


# ---- matmul kernel -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MatmulTiling:
    bn: int                 # activation rows per program (>= 16)
    bm: int                 # weight rows per program (>= 16)
    bk: int                 # K elements per step (>= 32, a multiple of both group sizes)
    warps: int = 4
    stages: int = 3


def matmul_tiling(N: int, M: int, K: int, Ga: int, Gw: int) -> MatmulTiling:
    """Shape heuristic (untuned): 16-row tiles for decode, 64x128 / 128x128 otherwise."""
    bk = max(128, Ga, Gw)
    if N <= 16:
        return MatmulTiling(16, 16 if M <= 16 else 32, max(bk, 256), 4, 3)
    if N <= 64:
        return MatmulTiling(64, 64, bk, 4, 3)
    return MatmulTiling(128, 128, bk, 8, 3)


def _decode_half(c, s, G, scale_dtype):
    """nibbles (b, h) int32, scale bytes (b, h/(G/2)) -> bfloat16 ``v * s`` (exact)."""
    b, h = c.shape
    v = FM.e2m1_decode(c)
    sd = FM.decode_scale(s, scale_dtype)
    sd = jnp.broadcast_to(sd[:, :, None], (b, h // (G // 2), G // 2)).reshape(b, h)
    return (v * sd).astype(BF16)


def _matmul_kernel(ac_ref, as_ref, wc_ref, ws_ref, alpha_ref, o_ref, *, steps, bk, Ga, Gw,
                   dtype_a, dtype_w):
    h = bk // 2
    bn, bm = o_ref.shape
    dims = (((1,), (1,)), ((), ()))

    def step(k, acc):
        ac = ac_ref[:, pl.ds(k * h, h)].astype(I32)
        wc = wc_ref[:, pl.ds(k * h, h)].astype(I32)
        sa = as_ref[:, pl.ds(k * (bk // Ga), bk // Ga)].astype(I32)
        sw = ws_ref[:, pl.ds(k * (bk // Gw), bk // Gw)].astype(I32)
        for sh in (0, 4):
            a = _decode_half((ac >> sh) & 15, sa, Ga, dtype_a)
            w = _decode_half((wc >> sh) & 15, sw, Gw, dtype_w)
            acc = acc + lax.dot_general(a, w, dims, preferred_element_type=F32)
        return acc

    acc = lax.fori_loop(0, steps, step, jnp.zeros((bn, bm), F32))
    o_ref[...] = acc * alpha_ref[0]


def _pad2(x, r, c):
    return jnp.pad(x, ((0, r - x.shape[0]), (0, c - x.shape[1]))) if x.shape != (r, c) else x


def matmul(a, w, *, tiling: MatmulTiling | None = None, interpret: bool | None = None):
    """``a``, ``w``: (codes uint8, scale bytes uint8, global scale, scale_dtype) of
    activations (..., N, K) and weights (M, K) -> float32 (..., N, M)."""
    ac, as_, gsa, dta = a
    wc, ws, gsw, dtw = w
    K = 2 * ac.shape[-1]
    Ga, Gw = K // as_.shape[-1], K // ws.shape[-1]
    why = unsupported_matmul(Ga, Gw)
    if why:
        raise ValueError(why)
    if interpret is None:
        interpret = _interpret()
    lead = ac.shape[:-1]
    ac2, as2 = ac.reshape(-1, K // 2), as_.reshape(-1, K // Ga)
    N, M = ac2.shape[0], wc.shape[0]
    t = tiling or matmul_tiling(N, M, K, Ga, Gw)
    Np, Mp, Kp = pl.cdiv(N, t.bn) * t.bn, pl.cdiv(M, t.bm) * t.bm, pl.cdiv(K, t.bk) * t.bk
    ac2, as2 = _pad2(ac2, Np, Kp // 2), _pad2(as2, Np, Kp // Ga)
    wc2, ws2 = _pad2(wc, Mp, Kp // 2), _pad2(ws, Mp, Kp // Gw)
    alpha = SF.mul(gsa, gsw).reshape(1)
    kernel = functools.partial(_matmul_kernel, steps=Kp // t.bk, bk=t.bk, Ga=Ga, Gw=Gw,
                               dtype_a=dta, dtype_w=dtw)
    out = pl.pallas_call(
        kernel, grid=(Np // t.bn, Mp // t.bm),
        in_specs=[pl.BlockSpec((t.bn, Kp // 2), lambda i, j: (i, 0)),
                  pl.BlockSpec((t.bn, Kp // Ga), lambda i, j: (i, 0)),
                  pl.BlockSpec((t.bm, Kp // 2), lambda i, j: (j, 0)),
                  pl.BlockSpec((t.bm, Kp // Gw), lambda i, j: (j, 0)),
                  pl.BlockSpec((1,), lambda i, j: (0,))],
        out_specs=pl.BlockSpec((t.bn, t.bm), lambda i, j: (i, j)),
        out_shape=jax.ShapeDtypeStruct((Np, Mp), F32),
        interpret=interpret, **_params(interpret, t.warps, t.stages),
    )(ac2, as2, wc2, ws2, alpha)
    return out[:N, :M].reshape(lead + (M,))
