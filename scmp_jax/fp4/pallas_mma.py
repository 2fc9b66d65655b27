"""FP4 decode-sized matmul on the tensor cores, group scales after the dot
(Pallas Triton; SPEC.md section 9).

For few activation rows (decode, N <= 16) with equal group sizes G. The e2m1
nibble ``s e e m`` placed at float16 bits 15 and 11..9 is the float16
``v * 2^-14`` (e = 0: the subnormal ``m * 2^-15``), so a weight byte becomes
two float16 values with five integer operations each and no float work
(``nibbles_f16``; on the GPU optionally PTX blocks of four bytes). The
activation's values ``v_a * 2^13`` (<= 49152) are float16 too, laid out block
diagonally per group: row ``g`` of ``A'`` holds group ``g``'s values and zeros
elsewhere, so one dot ``W (bm, K_step) x A'^T`` gives the per-group sums
``D[m, g] = sum_{k in g} v_w v_a / 2`` (products and sums exact in float32).
The group scales multiply ``D`` after the dot:
``out[n, m] = 2 * alpha * sum_g D[m, g] * s_w[m, g] * s_a[n, g]`` (float32).
The weight is read once per program as bytes; no float multiply per weight
element (the dot-free ``gemv`` schedule spends about seven per element).

Opt-in (``MatmulTiling(mma=True)``; ``matmul_tiling`` does not pick it): on the
H200 with weights from HBM it measured 0.0137 ms at N = 1 (64 x 512, split 4,
PTX nibbles) against the default gemv's 0.0127, and far slower at N = 16 (one
dot pair per activation row per step), BENCHMARKS.md session 8.

Within float32 accumulation error of the float64 reference (summation order
differs from the other schedules: not bit equal to them). Off GPU the kernel
runs with ``interpret=True`` (``nibbles_f16`` as jnp integer ops).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .pallas_matmul import group_sum_kernel

__all__ = ["nibbles_f16", "min_step", "mma_kernel"]

F32, I32, F16 = jnp.float32, jnp.int32, jnp.float16
_ACT_SCALE = 2.0 ** 13          # v_a * 2^13 <= 6 * 2^13 = 49152 < 65504: exact in float16

# 4 bytes (one 32-bit register) -> 4 float16 values (two registers, element 0 in
# the low half): bytes spread to 16-bit lanes by prmt, then per lane
# ``(c & m) << a | (c & 0x..8..) << b``: (7, 9, 8, 12) for the low nibbles,
# (0x70, 5, 0x80, 8) for the high ones. One asm block per output (Pallas'
# lowering wraps the op's results as one value).
_NIBBLE_PTX = """{{
.reg .b32 p0, p1, x, y;
prmt.b32 p0, $2, 0, 0x4140;
prmt.b32 p1, $2, 0, 0x4342;
and.b32 x, p0, {m}; shl.b32 x, x, {sm}; and.b32 y, p0, {s}; shl.b32 y, y, {ss}; or.b32 $0, x, y;
and.b32 x, p1, {m}; shl.b32 x, x, {sm}; and.b32 y, p1, {s}; shl.b32 y, y, {ss}; or.b32 $1, x, y;
}}"""
_LO_PTX = _NIBBLE_PTX.format(m="0x00070007", sm=9, s="0x00080008", ss=12)
_HI_PTX = _NIBBLE_PTX.format(m="0x00700070", sm=5, s="0x00800080", ss=8)


def nibbles_f16(c, *, asm: bool = False):
    """bytes uint8 (..., h) -> (low nibbles, high nibbles) float16 (..., h), each
    the e2m1 value times 2^-14, exact. ``asm``: the PTX block above (GPU only)."""
    if asm:
        from jax.experimental.pallas import triton as pltriton
        shape = jax.ShapeDtypeStruct(c.shape, F16)
        return tuple(pltriton.elementwise_inline_asm(
            ptx, args=[c], constraints="=r,=r,r", pack=4, result_shape_dtypes=[shape])[0]
            for ptx in (_LO_PTX, _HI_PTX))
    u = c.astype(I32)
    f16 = lambda b: lax.bitcast_convert_type(b.astype(jnp.uint16), F16)
    return (f16(((u & 7) << 9) | ((u & 8) << 12)),
            f16(((u & 0x70) << 5) | ((u & 0x80) << 8)))


def min_step(G: int) -> int:
    """K elements per step: 16 groups (Triton dots need every dim >= 16)."""
    return 16 * G


def _block_diag(v, ng, H):
    """float32 (ng, H) e2m1 values of one activation row -> float16 (ng, ng * H):
    row g holds group g's ``v * 2^13``, zeros elsewhere."""
    h = ng * H
    flat = jnp.broadcast_to((v * F32(_ACT_SCALE)).reshape(1, h), (ng, h))
    own = lax.broadcasted_iota(I32, (ng, h), 0) == lax.broadcasted_iota(I32, (ng, h), 1) // H
    return jnp.where(own, flat, F32(0)).astype(F16)


def mma_kernel(*refs, ng, H, asm, **common):
    """Weight bytes (bm, K_s/2) of one K range in steps of ``ng`` groups (the
    contract of ``pallas_matmul._gemv_kernel``; ``pallas_matmul.gemv_call``
    launches both): the group sums by two float16 dots per activation row, in
    ``pallas_matmul.group_sum_kernel``'s loop."""
    h = ng * H
    dims = (((1,), (1,)), ((), ()))

    def weights(wc_ref, s):
        return nibbles_f16(wc_ref[:, pl.ds(s * h, h)], asm=asm)                # (bm, h) each

    def group_sums(w, v_lo, v_hi):                                             # (bm, ng) = sum / 2
        return (lax.dot_general(w[0], _block_diag(v_lo, ng, H), dims, preferred_element_type=F32)
                + lax.dot_general(w[1], _block_diag(v_hi, ng, H), dims,
                                  preferred_element_type=F32))

    group_sum_kernel(*refs, ng=ng, weights=weights, group_sums=group_sums, factor=2, **common)
