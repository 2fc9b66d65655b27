"""FP4 decode rows by integer dot products, group scales after the sum (Pallas
Triton; SPEC.md section 9): ``MatmulTiling(gemv=True, dp4a=True)``, the default
decode schedule (N <= 2) at G = 32.

Twice an e2m1 value is an integer in [-12, 12], so a group's
``sum_k v_w v_a = sum_k (2 v_w)(2 v_a) / 4`` is exact in int32, and the group
scales multiply it afterwards: ``out[n, m] = alpha / 4 * sum_g d[m, g] *
s_w[m, g] * s_a[n, g]`` (float32, each product exact). The weight is read as
bytes in the gemv schedule's blocks (``pallas_matmul.gemv_call``).

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
G = 32). That is what the GPU test checks against the float64 reference; it
is not guaranteed by the Triton API. Off GPU (interpret) the same integers by
jnp operations.

Measured (H200, N = 1 cold, K = M = 4096): session 10 (``bench.fp4_probe
--cases anatomy``) 64 x 256 tiles, split 16: 0.0096 ms, 0.79x the bf16 matmul
(the float gemv: 1.05x); session 11 (``--cases layouts``) one 4096-element
step per program, 16 rows, 8 warps (``pallas_matmul._decode_layout``, the
default since): 0.66-0.68x in the activation-quantizing ``linear_gemv``. On
the GPU ``test_dp4a_group_dots_every_byte`` and the dp4a cases of
``test_linear_gemv_one_pass`` pass at G = 32 and G = 16 (session 11).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from .pallas_matmul import group_sum_kernel

__all__ = ["group_dots", "dp4a_kernel"]

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
        from jax.experimental.pallas import triton as pltriton
        (out,) = pltriton.elementwise_inline_asm(
            _PTX, args=[c, a_lo, a_hi], constraints="=r,=r,=r,=r,r,r,r", pack=4,
            result_shape_dtypes=[jax.ShapeDtypeStruct(c.shape, I32)])
        return jnp.sum(out, axis=2)
    u = c.astype(I32)
    return jnp.sum(_twice(u, False) * a_lo.astype(I32) + _twice(u, True) * a_hi.astype(I32),
                   axis=2)


def dp4a_kernel(*refs, ng, asm, **common):
    """Weight bytes (bm, K_s/G, H) of one K range in steps of ``ng`` groups (the
    contract of ``pallas_matmul._gemv_kernel``): the group sums by ``group_dots``
    (``4 * sum v_w v_a``), in ``pallas_matmul.group_sum_kernel``'s loop."""
    def weights(wc_ref, s):
        return wc_ref[:, pl.ds(s * ng, ng), :]                                 # (bm, ng, H)

    def group_sums(c, v_lo, v_hi):
        twice = lambda v: jnp.broadcast_to((v * F32(2)).astype(I8)[None], c.shape)
        return group_dots(c, twice(v_lo), twice(v_hi), asm=asm).astype(F32)    # exact

    group_sum_kernel(*refs, ng=ng, weights=weights, group_sums=group_sums, factor=0.25,
                     **common)
