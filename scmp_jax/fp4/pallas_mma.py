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

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .._backend import triton_params
from . import formats as FM
from .pallas_matmul import MatmulTiling, _mul, _pad2, _split_sum, _value

__all__ = ["nibbles_f16", "mma_call", "mma_padding", "min_step", "codes_act", "codes_specs", "mma"]

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


def _mma_kernel(*refs, n_act, act, steps, ng, H, dtw, asm, scale_in_kernel, interpret):
    """Weight bytes (bm, K_s/2) of one K range in ``steps`` steps of ``ng``
    groups; ``act(act_refs, n, s)`` -> (e2m1 values lo, hi float32 (ng, H),
    decoded scales float32 (ng,)) of activation row ``n`` at step ``s``."""
    act_refs, (wc_ref, ws_ref, ga_ref, gw_ref, o_ref) = refs[:n_act], refs[n_act:]
    n_rows, bm = o_ref.shape[-2:]
    h = ng * H
    dims = (((1,), (1,)), ((), ()))

    def step(s, accs):
        c = wc_ref[:, pl.ds(s * h, h)]                                       # (bm, h) bytes
        w_lo, w_hi = nibbles_f16(c, asm=asm)
        sw = FM.decode_scale(ws_ref[:, pl.ds(s * ng, ng)].astype(I32), dtw)  # (bm, ng)
        out = []
        for n in range(n_rows):
            v_lo, v_hi, sa = act(act_refs, n, s)
            d = (lax.dot_general(w_lo, _block_diag(v_lo, ng, H), dims, preferred_element_type=F32)
                 + lax.dot_general(w_hi, _block_diag(v_hi, ng, H), dims,
                                   preferred_element_type=F32))         # (bm, ng) = sum / 2
            y = _mul(_mul(d, sw, interpret), jnp.broadcast_to(sa[None, :], (bm, ng)), interpret)
            out.append(accs[n] + jnp.sum(y, axis=1))
        return tuple(out)

    accs = lax.fori_loop(0, steps, step, tuple(jnp.zeros((bm,), F32) for _ in range(n_rows)))
    for n in range(n_rows):
        y = accs[n] * F32(2)                                                 # exact
        if scale_in_kernel:
            y = _mul(y, _mul(jnp.full((bm,), ga_ref[0], F32), gw_ref[0], interpret), interpret)
        o_ref[n, :] = y


def mma_padding(K, t: MatmulTiling):
    return pl.cdiv(K, t.bk * t.split) * t.bk * t.split


def mma_call(act_args, act_specs, act, wc, ws, gs, N, K, G, dtw, t: MatmulTiling, interpret):
    """Runs ``_mma_kernel`` over weights (M, K/2) codes / (M, K/G) scale bytes with
    activation operands ``act_args`` (padded to ``mma_padding(K, t)``;
    ``act_specs(ng_s)``: their BlockSpecs for a K range of ``ng_s`` groups)
    -> float32 (N, M)."""
    M, S, H = wc.shape[0], t.split, G // 2
    Mp, Kp = pl.cdiv(M, t.bm) * t.bm, mma_padding(K, t)
    ng, ng_s = t.bk // G, Kp // S // G
    if ng < 16 or t.bm < 16:
        raise ValueError(f"tiling.mma needs bk >= 16 * group size ({16 * G}) and bm >= 16, "
                         f"got {t}")
    w2, ws2 = _pad2(wc, Mp, Kp // 2), _pad2(ws, Mp, Kp // G)
    kernel = functools.partial(_mma_kernel, n_act=len(act_args), act=act, steps=ng_s // ng,
                               ng=ng, H=H, dtw=dtw, asm=t.asm and not interpret,
                               scale_in_kernel=S == 1, interpret=interpret)
    out = pl.pallas_call(
        kernel, grid=(Mp // t.bm, S),
        in_specs=list(act_specs(ng_s)) + [
            pl.BlockSpec((t.bm, ng_s * H), lambda j, s: (j, s)),
            pl.BlockSpec((t.bm, ng_s), lambda j, s: (j, s)),
            pl.BlockSpec((1,), lambda j, s: (0,)),
            pl.BlockSpec((1,), lambda j, s: (0,))],
        out_specs=pl.BlockSpec((None, N, t.bm), lambda j, s: (s, 0, j)),
        out_shape=jax.ShapeDtypeStruct((S, N, Mp), F32),
        interpret=interpret, **triton_params(interpret, t.warps, t.stages),
    )(*act_args, w2, ws2, *gs)
    return _split_sum(out, gs)[:, :M]


def codes_act(dta, ng, interpret):
    """The ``act`` of ``mma_call`` for activation codes (N, K/G, G/2) and scale
    bytes (N, K/G)."""
    def act(refs, n, s):
        ac_ref, as_ref = refs
        ca = ac_ref[n, pl.ds(s * ng, ng), :].astype(I32)                 # (ng, H)
        sa = FM.decode_scale(as_ref[n, pl.ds(s * ng, ng)].astype(I32), dta)
        return _value(ca, False, interpret), _value(ca, True, interpret), sa
    return act


def codes_specs(N, H):
    return lambda ng_s: [pl.BlockSpec((N, ng_s, H), lambda j, s: (0, s, 0)),
                         pl.BlockSpec((N, ng_s), lambda j, s: (0, s))]



def mma(ac2, as2, wc, ws, gs, dta, dtw, G, t: MatmulTiling, interpret):
    """Activation codes (N, K/2) / scale bytes (N, K/G) x weights -> float32 (N, M)."""
    N, K = ac2.shape[0], 2 * ac2.shape[1]
    H, Kp = G // 2, mma_padding(K, t)
    a3 = _pad2(ac2, N, Kp // 2).reshape(N, Kp // G, H)
    return mma_call((a3, _pad2(as2, N, Kp // G)), codes_specs(N, H),
                    codes_act(dta, t.bk // G, interpret), wc, ws, gs, N, K, G, dtw, t, interpret)
