"""The ``"dp4a"`` schedule (``Dp4aTiling``; SPEC.md section 9): decode rows by
integer dot products, group scales after the sum; the default for N <= 2 at
G = 32 (``matmul.heuristic``).

Twice an e2m1 value is an integer in [-12, 12], so a group's
``sum_k v_w v_a = sum_k (2 v_w)(2 v_a) / 4`` is exact in int32, and the group
scales multiply it afterwards: ``out[n, m] = alpha / 4 * sum_g d[m, g] *
s_w[m, g] * s_a[n, g]`` (float32, each product exact). The weight is read as
bytes on the decode-rows grid (``rows``).

On the GPU one PTX block per 4 weight bytes (8 codes) turns each nibble's
magnitude into ``2v`` by a ``prmt`` table lookup, the sign by ones' complement
plus a correction dot (``x = mag ^ 0xFF`` is ``-mag - 1``, so adding the
activation once more gives ``-mag * a``), and accumulates against the
activation's int8 ``2 v_a`` with ``dp4a`` (4 multiply-adds per instruction):
about 6 integer operations per weight byte, against about 11 plus 5 float
operations in the gemv kernel. The block's int32 result sits in the first of
its 4 output elements (zeros in the others), so the kernel's sum over a
group's bytes is the group's dot **if Triton packs 4 consecutive bytes of one
group row into each register** (the block's last dim: 16 contiguous bytes for
G = 32). That is what the GPU tests check against the float64 reference
(``test_dp4a_group_dots_every_byte``, the dp4a cases of
``test_linear_gemv_one_pass``, at G = 32 and 16); it is not guaranteed by the
Triton API. Off GPU (interpret) the same integers by jnp operations.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from ... import formats as FM
from ... import kernel as K
from ..tilings import Dp4aTiling
from . import rows

__all__ = ["group_dots", "dp4a_kernel", "row_kernel", "matmul"]

F32, I32, I8 = jnp.float32, jnp.int32, jnp.int8

# $0..$3: int32 outputs of 4 elements; $4: 4 code bytes; $5 / $6: the activation's
# 2 v_a (int8) of the low / high nibbles' elements. Table: 2v of magnitudes 0..7 =
# 0, 1, 2, 3 | 4, 6, 8, 12 (bytes of t0 | t1). Selector: magnitude of byte i in
# nibble i (m | m >> 4 puts bytes 0, 2 of the result in nibbles 0-1, 4-5; prmt
# 0x0020 gathers those two bytes).
_HALF = """
and.b32 m, {src}, 0x07070707;
shr.u32 x, m, 4;
or.b32 m, m, x;
prmt.b32 m, m, 0, 0x0020;
prmt.b32 x, t0, t1, m;
shr.u32 s, {src}, 3;
and.b32 s, s, 0x01010101;
mul.lo.u32 n, s, 255;
xor.b32 x, x, n;
dp4a.s32.s32 acc, x, {act}, acc;
dp4a.s32.s32 acc, s, {act}, acc;"""
_PTX = ("{\n.reg .b32 t0, t1, m, s, x, n, h, acc;\n"
        "mov.b32 t0, 0x03020100;\nmov.b32 t1, 0x0C080604;\nmov.b32 acc, 0;"
        + _HALF.format(src="$4", act="$5")
        + "\nshr.u32 h, $4, 4;"
        + _HALF.format(src="h", act="$6")
        + "\nmov.b32 $0, acc;\nmov.b32 $1, 0;\nmov.b32 $2, 0;\nmov.b32 $3, 0;\n}")


def _twice(c, high: bool):
    """bytes int32 -> int32 ``2v`` of the low (or high) nibble's e2m1 value."""
    nib = (c >> 4) & 15 if high else c & 15
    mag = nib & 7
    v = jnp.where(mag < 4, mag, jnp.where(mag < 6, 2 * mag - 4, 4 * mag - 16))   # 4 6 | 8 12
    return jnp.where(nib >= 8, -v, v)


def group_dots(c, a_lo, a_hi, *, asm: bool):
    """weight bytes uint8 (bm, ng, H), the activation's ``2 v_a`` int8 (bm, ng, H) of
    the low / high nibbles' elements -> int32 (bm, ng): ``sum_k (2 v_w)(2 v_a)``
    per group. ``asm``: the PTX block (GPU only), else jnp integer operations."""
    if asm:
        from jax.experimental.pallas import triton as pltriton      # GPU-only module
        (out,) = pltriton.elementwise_inline_asm(
            _PTX, args=[c, a_lo, a_hi], constraints="=r,=r,=r,=r,r,r,r", pack=4,
            result_shape_dtypes=[jax.ShapeDtypeStruct(c.shape, I32)])
        return jnp.sum(out, axis=2)
    u = c.astype(I32)
    return jnp.sum(_twice(u, False) * a_lo.astype(I32) + _twice(u, True) * a_hi.astype(I32),
                   axis=2)


def dp4a_kernel(*refs, n_act, act, steps, ng, dtw, scale_in_kernel, interpret, asm):
    """Weight bytes (bm, K_s/G, H) of one K range in steps of ``ng`` groups (the
    row-kernel contract of ``rows``): per step and activation row the group
    sums ``d = sum_k (2 v_w)(2 v_a)`` by ``group_dots`` (exact), then
    ``out[n, m] = alpha / 4 * sum_g d * s_w * s_a`` (``/ 4``: exact)."""
    act_refs, (wc_ref, ws_ref, ga_ref, gw_ref, o_ref) = refs[:n_act], refs[n_act:]
    n_rows, bm = o_ref.shape[-2:]

    def step(s, accs):
        c = wc_ref[:, pl.ds(s * ng, ng), :]                                   # (bm, ng, H)
        sw = FM.decode_scale(ws_ref[:, pl.ds(s * ng, ng)].astype(I32), dtw)  # (bm, ng)
        twice = lambda v: jnp.broadcast_to((v * F32(2)).astype(I8)[None], c.shape)
        out = []
        for n in range(n_rows):
            v_lo, v_hi, sa = act(act_refs, n, s)
            d = group_dots(c, twice(v_lo), twice(v_hi), asm=asm).astype(F32)    # exact
            y = K.mul(K.mul(d, sw, interpret), jnp.broadcast_to(sa[None, :], (bm, ng)),
                      interpret)
            out.append(accs[n] + jnp.sum(y, axis=1))
        return tuple(out)

    accs = lax.fori_loop(0, steps, step, tuple(jnp.zeros((bm,), F32) for _ in range(n_rows)))
    for n in range(n_rows):
        y = accs[n] * F32(0.25)                                              # exact
        if scale_in_kernel:
            y = K.mul(y, K.alpha(ga_ref, gw_ref, (bm,), interpret), interpret)
        o_ref[n, :] = y


def row_kernel(interpret: bool):
    """This schedule's row kernel (``rows``): the PTX block when compiled."""
    return functools.partial(dp4a_kernel, asm=not interpret)


def matmul(ac2, as2, wc, ws, gs, dta, dtw, G, t: Dp4aTiling, interpret):
    """Activation codes (N, K/2) / scale bytes (N, K/G) x weights (M, K/2) / (M, K/G),
    equal group sizes ``G`` -> float32 (N, M)."""
    return rows.on_codes(row_kernel(interpret), ac2, as2, wc, ws, gs, dta, dtw, G, t,
                         interpret, name=f"fp4_dp4a_{dta}x{dtw}")
