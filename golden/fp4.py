"""FP4 (MXFP4 / NVFP4) golden model (SPEC.md section 9).

NumPy + standard library only. Encoders work on raw float32 bit patterns
(``x.view(np.uint32)``); float arithmetic is NumPy float32 (IEEE, subnormals
kept), one rounding per written operation, in SPEC order:

* ``amax = max |x|`` over a group of ``G`` consecutive elements of the last axis;
* ``scale = amax / (float32(scale_scale) * float32(global_scale))``;
* ``scale_deq = decode(encode(scale))`` in ``e8m0`` or ``e4m3`` (``e4m3fn``);
* ``x_scaled = x / (scale_deq * global_scale)`` -> e2m1 codes (rounding mode);
* ``dequant = code_value * (scale_deq * global_scale)``.

Decisions where SPEC leaves room (the JAX paths follow them):

* A group holding NaN or +-Inf gets the canonical NaN scale (e8m0 ``0xFF``,
  e4m3 ``0x7F``); then ``x_scaled = x / NaN`` is NaN, so every code of the group
  is 7 and every dequantized value of the group is NaN.
* ``amax = 0`` under e8m0: ``scale = 0`` clamps to ``2^-127`` (byte 0); codes are
  0 (8 for -0). Under e4m3 the scale byte is 0, ``0/0`` is NaN and the codes
  are 7 (dequantizing to ``6 * 0 = 0``), as SPEC says.
* A finite group whose ``scale`` is +Inf (``scale_scale * global_scale < 1``
  and a huge ``amax``) is clamped to the largest scale (e8m0 254, e4m3 448).
* ``scale_deq * global_scale`` may underflow to 0 or overflow to Inf; the
  float32 math then gives what it gives (``x/0 = +-Inf`` saturates to +-6,
  ``0 * Inf = NaN`` on dequantization): no special case.
* e8m0 encoding of a negative number or zero clamps to ``2^-127`` (byte 0);
  e4m3 encoding of NaN keeps the sign bit (``0x7F`` / ``0xFF``).
"""
from __future__ import annotations

import numpy as np

from .errors import as_float32, is_int

__all__ = ["ROUNDINGS", "SCALE_DTYPES", "PRESETS", "E2M1_VALUES", "e2m1_encode", "e2m1_decode",
           "e8m0_encode", "e8m0_decode", "e4m3_encode", "e4m3_decode", "encode_scale",
           "decode_scale", "pack", "unpack", "block_transform", "quantize", "dequantize",
           "matmul_reference", "weight_only_reference", "check_args"]

F32 = np.float32
ROUNDINGS = ("even", "zero", "down", "up")
SCALE_DTYPES = ("e8m0", "e4m3")
#: The SPEC's typical settings (``scale_dtype``, ``group_size``, ``scale_scale``, ``global_scale``).
PRESETS = {"mxfp4": dict(group_size=32, scale_dtype="e8m0", scale_scale=4.0, global_scale=1 / 3),
           "nvfp4": dict(group_size=16, scale_dtype="e4m3", scale_scale=6.0, global_scale=1.0)}

E2M1_VALUES = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], F32)
# the seven rounding boundaries between consecutive e2m1 magnitudes, as float32 bits
_E2M1_MIDS = np.array([.25, .75, 1.25, 1.75, 2.5, 3.5, 5], F32).view(np.uint32)
_INF_BITS = 0x7F800000
E8M0_NAN = 0xFF
E4M3_NAN = 0x7F


def _bits(x):
    return np.ascontiguousarray(np.asarray(x, F32)).view(np.uint32)


def e2m1_encode(x, rounding: str = "even"):
    """float32 (...) -> uint8 e2m1 codes in [0, 16) (unpacked), SPEC rounding.

    Nearest of 0, .5, 1, 1.5, 2, 3, 4, 6 (saturating, Inf -> +-6); ties by
    ``rounding``: even (even code), zero, down (to -Inf), up (to +Inf). A zero
    result keeps the input's sign; NaN -> 7."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    bits = _bits(x)
    mag = bits & np.uint32(0x7FFFFFFF)
    neg = (bits >> np.uint32(31)).astype(np.uint8)
    lower = (mag[..., None] > _E2M1_MIDS).sum(axis=-1).astype(np.uint8)   # nearest, ties down
    tie = (mag[..., None] == _E2M1_MIDS).any(axis=-1)
    if rounding == "even":
        up = (lower & 1) == 1
    elif rounding == "zero":
        up = np.zeros_like(tie)
    elif rounding == "down":
        up = neg == 1
    else:
        up = neg == 0
    code = (lower + (tie & up)) | (neg << np.uint8(3))
    return np.where(mag > _INF_BITS, np.uint8(7), code).astype(np.uint8)


def e2m1_decode(codes):
    """uint8 codes in [0, 16) -> float32 values (code 8 is -0)."""
    return E2M1_VALUES[np.asarray(codes, np.uint8) & 15]


def e8m0_encode(x):
    """float32 -> uint8 e8m0 byte: clamp to [2^-127, 2^127], then the nearest
    power of two, ties (mantissa exactly 1.5) away from zero; NaN -> 0xFF."""
    bits = _bits(x).astype(np.int64)
    nan = (bits & 0x7FFFFFFF) > _INF_BITS
    b = np.where(bits >> 31 == 1, 0, bits)                   # negative (and -0) -> lower clamp
    b = np.clip(b, 0x00400000, 0x7F000000)                   # 2^-127 (subnormal) .. 2^127
    e, f = b >> 23, b & 0x7FFFFF
    code = np.where(e == 0, (f >= 0x600000).astype(np.int64), e + (f >= 0x400000))
    return np.where(nan, E8M0_NAN, code).astype(np.uint8)


def e8m0_decode(codes):
    """uint8 -> float32 ``2^(code - 127)`` (code 0 is the subnormal 2^-127); 0xFF -> NaN."""
    c = np.asarray(codes, np.uint8).astype(np.int64)
    val = np.ldexp(1.0, np.minimum(c, 254) - 127).astype(F32)
    return np.where(c == E8M0_NAN, F32(np.nan), val).astype(F32)


def _rne_shift(sig, sh):
    """round-half-even of ``sig / 2^sh`` for int64 arrays, ``1 <= sh <= 62``."""
    q = sig >> sh
    rem = sig & ((np.int64(1) << sh) - 1)
    half = np.int64(1) << (sh - 1)
    return q + ((rem > half) | ((rem == half) & ((q & 1) == 1)))


def e4m3_encode(x):
    """float32 -> uint8 e4m3fn byte: clamp to [-448, 448], round half to even
    (subnormals 2^-9 * m); NaN -> 0x7F with the input's sign bit."""
    bits = _bits(x).astype(np.int64)
    sign = (bits >> 31) << 7
    mag = bits & 0x7FFFFFFF
    nan = mag > _INF_BITS
    mag = np.minimum(mag, 0x43E00000)                        # 448
    e, f = mag >> 23, mag & 0x7FFFFF
    # normal e4m3 (|x| >= 2^-6): rebias the exponent (127 -> 7), keep 3 mantissa bits
    normal = _rne_shift(np.maximum(mag - (120 << 23), 0), 20)
    # subnormal e4m3: round |x| * 2^9 = sig * 2^(max(e, 1) - 141) to an integer
    sig = np.where(e == 0, f, f | 0x800000)
    sub = _rne_shift(sig, np.minimum(141 - np.maximum(e, 1), 40))
    code = np.where(mag >= 121 << 23, normal, sub) | sign
    return np.where(nan, E4M3_NAN | sign, code).astype(np.uint8)


def e4m3_decode(codes):
    """uint8 -> float32 (bias 7, subnormals ``m * 2^-9``); 0x7F / 0xFF -> NaN."""
    c = np.asarray(codes, np.uint8).astype(np.int64)
    e, m = (c >> 3) & 15, c & 7
    val = np.where(e == 0, np.ldexp(m.astype(np.float64), -9),
                   np.ldexp((8 + m).astype(np.float64), e - 10))
    val = np.where(c >> 7 == 1, -val, val).astype(F32)
    return np.where((c & 0x7F) == E4M3_NAN, F32(np.nan), val).astype(F32)


def encode_scale(x, scale_dtype: str):
    return e8m0_encode(x) if scale_dtype == "e8m0" else e4m3_encode(x)


def decode_scale(codes, scale_dtype: str):
    return e8m0_decode(codes) if scale_dtype == "e8m0" else e4m3_decode(codes)


def pack(codes):
    """uint8 codes (..., K), K even -> bytes (..., K/2): element 2j in the low
    nibble of byte j, element 2j+1 in its high nibble."""
    c = np.asarray(codes, np.uint8) & 15
    return (c[..., 0::2] | (c[..., 1::2] << np.uint8(4))).astype(np.uint8)


def unpack(packed):
    """bytes (..., K/2) -> uint8 codes (..., K)."""
    p = np.asarray(packed, np.uint8)
    out = np.empty(p.shape[:-1] + (2 * p.shape[-1],), np.uint8)
    out[..., 0::2] = p & 15
    out[..., 1::2] = p >> 4
    return out


def _positive(v, name):
    if isinstance(v, (bool, np.bool_)) or np.ndim(v) != 0:
        raise ValueError(f"{name} must be a positive finite scalar, got {v!r}")
    try:
        f = F32(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite scalar, got {v!r}") from None
    if not (np.isfinite(f) and f > 0):
        raise ValueError(f"{name} must be a positive finite scalar, got {v!r}")
    return f


def check_args(shape, group_size, scale_dtype, scale_scale, global_scale, rounding):
    """Validate the quantizer's arguments (ValueError naming the argument);
    returns ``(float32 scale_scale, float32 global_scale)``."""
    if len(shape) < 1:
        raise ValueError("x must have at least one dimension (groups run along the last axis)")
    K = shape[-1]
    if K == 0 or K % 2:
        raise ValueError(f"x's last axis must have even, non-zero length K, got K={K}")
    if not is_int(group_size) or group_size < 1 or K % group_size:
        raise ValueError(f"group_size must be a positive int dividing K={K}, got {group_size!r}")
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be one of {SCALE_DTYPES}, got {scale_dtype!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    ss, gs = _positive(scale_scale, "scale_scale"), _positive(global_scale, "global_scale")
    with np.errstate(all="ignore"):
        prod = F32(ss * gs)
    if not (np.isfinite(prod) and prod > 0):
        raise ValueError(f"scale_scale * global_scale must be a positive finite float32, "
                         f"got {ss} * {gs} = {prod}")
    return ss, gs


def block_transform(x, transform):
    """Block ``c`` (``g`` consecutive elements of the last axis) becomes
    ``x_c @ T_c^T``; ``transform`` is ``(g, g)`` (shared) or ``(K/g, g, g)``.

    float32 (..., K) -> float32 (..., K). Order: products and sums in float64
    (each product exact), summed by ``np.einsum`` (order unspecified, error
    <= g * 2^-53 relative), then rounded once to float32. ``None`` -> ``x``."""
    x = as_float32(x, "x")
    if transform is None:
        return x
    t = as_float32(transform, "transform")
    K = x.shape[-1]
    g = t.shape[-1] if t.ndim else 0
    if t.ndim not in (2, 3) or t.shape[-2] != g or g == 0 or K % g:
        raise ValueError(f"transform must be (g, g) or (K/g, g, g) with g dividing K={K}, "
                         f"got shape {t.shape}")
    if t.ndim == 3 and t.shape[0] != K // g:
        raise ValueError(f"transform's leading axis must be K/g = {K // g}, got shape {t.shape}")
    xb = x.reshape(x.shape[:-1] + (K // g, g)).astype(np.float64)
    tb = np.broadcast_to(t.astype(np.float64), (K // g, g, g))
    return np.einsum("...cj,cij->...ci", xb, tb).astype(F32).reshape(x.shape)


def quantize(x, *, group_size: int, scale_dtype: str, scale_scale, global_scale,
             rounding: str = "even", transform=None) -> dict:
    """float (..., K) -> dict ``codes`` uint8 (..., K/2) packed, ``scales`` uint8
    bit patterns (..., K/G), ``global_scale`` float32 scalar (SPEC.md section 9).
    ``transform`` (optional) is applied first with ``block_transform``."""
    x = as_float32(x, "x")
    ss, gs = check_args(x.shape, group_size, scale_dtype, scale_scale, global_scale, rounding)
    x = block_transform(x, transform)
    K, G = x.shape[-1], group_size
    xg = x.reshape(x.shape[:-1] + (K // G, G))
    with np.errstate(all="ignore"):
        amax = np.max(np.abs(xg), axis=-1)
        scale = (amax / F32(ss * gs)).astype(F32)
        nonfinite = ~np.all(np.isfinite(xg), axis=-1)
        nan_code = E8M0_NAN if scale_dtype == "e8m0" else E4M3_NAN
        scales = np.where(nonfinite, np.uint8(nan_code), encode_scale(scale, scale_dtype))
        p = (decode_scale(scales, scale_dtype) * gs).astype(F32)
        x_scaled = (xg / p[..., None]).astype(F32)
    codes = e2m1_encode(x_scaled, rounding).reshape(x.shape)
    return {"codes": pack(codes), "scales": scales.astype(np.uint8), "global_scale": gs}


def dequantize(codes, scales, *, scale_dtype: str, global_scale):
    """packed codes (..., K/2), scale bytes (..., K/G) -> float32 (..., K):
    ``code_value * (scale_deq * global_scale)``."""
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be one of {SCALE_DTYPES}, got {scale_dtype!r}")
    vals = e2m1_decode(unpack(codes))
    scales = np.asarray(scales, np.uint8)
    K, n = vals.shape[-1], scales.shape[-1]
    if n == 0 or K % n or scales.shape[:-1] != vals.shape[:-1]:
        raise ValueError(f"scales {scales.shape} do not match codes {np.shape(codes)}")
    with np.errstate(all="ignore"):
        p = (decode_scale(scales, scale_dtype) * F32(global_scale)).astype(F32)
        out = (vals.reshape(vals.shape[:-1] + (n, K // n)) * p[..., None]).astype(F32)
    return out.reshape(vals.shape)


def _dequant64(codes, scales, scale_dtype):
    vals = e2m1_decode(unpack(codes)).astype(np.float64)
    s = decode_scale(scales, scale_dtype).astype(np.float64)
    K, n = vals.shape[-1], s.shape[-1]
    return (vals.reshape(vals.shape[:-1] + (n, K // n)) * s[..., None]).reshape(vals.shape)


def matmul_reference(codes_a, scales_a, gs_a, codes_w, scales_w, gs_w, *,
                     scale_dtype_a: str, scale_dtype_w: str):
    """float64 ``alpha * (A @ W^T)``, ``alpha = gs_a * gs_w``, ``A = code * scale_deq``
    from activation codes (..., N, K/2) and weight codes (M, K/2) -> (..., N, M)."""
    a = _dequant64(codes_a, scales_a, scale_dtype_a)
    w = _dequant64(codes_w, scales_w, scale_dtype_w)
    if w.ndim != 2 or a.shape[-1] != w.shape[-1]:
        raise ValueError(f"w must be (M, K) with a's K, got a {a.shape}, w {w.shape}")
    alpha = np.float64(F32(gs_a)) * np.float64(F32(gs_w))
    with np.errstate(all="ignore"):
        return alpha * (a @ w.T)


def weight_only_reference(x, codes_w, scales_w, gs_w, *, scale_dtype_w: str):
    """float64 ``gs_w * (X @ W^T)`` of float activations ``x`` (..., N, K), taken
    as float32 (exact for 16-bit floats), and weight codes (M, K/2) decoded as
    ``code * scale_deq`` -> (..., N, M) (SPEC 9.9)."""
    a = as_float32(x, "x").astype(np.float64)
    w = _dequant64(codes_w, scales_w, scale_dtype_w)
    if w.ndim != 2 or a.ndim < 2 or a.shape[-1] != w.shape[-1]:
        raise ValueError(f"x must be (..., N, K) with w's K, got x {a.shape}, w {w.shape}")
    with np.errstate(all="ignore"):
        return np.float64(F32(gs_w)) * (a @ w.T)
