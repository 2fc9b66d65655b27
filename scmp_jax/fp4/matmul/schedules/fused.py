"""The ``"fused"`` schedule (``FusedTiling``; SPEC.md section 9): one kernel
decodes code tiles in registers and dots them on the tensor cores, grid
``(N/bn, M/bm, split)``; ``split > 1`` cuts K into ``split`` ranges whose
float32 partials XLA adds (decode-sized N: more programs than output tiles).
The low nibbles of a byte row and the high nibbles are dotted separately (the
sum over K does not care about its order). ``grouped``: code tiles as (rows,
groups, G/2) with the scales broadcast per group.

Every product ``v * s`` (e2m1 value times its group scale, no global scale) is
exact in float32 and, truncated to its top 16 bits, in bfloat16: the dots
take bfloat16 with float32 accumulation.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from ...._src.dispatch import triton_params
from ... import formats as FM
from ... import kernel as K
from ..tilings import FusedTiling

__all__ = ["code_tile", "fused_padding", "fused_call", "matmul"]

F32 = jnp.float32
I32 = jnp.int32
BF16 = jnp.bfloat16


def _decode_tile(c, high, s, G, scale_dtype, interpret):
    """bytes (b, h) int32, scale bytes (b, h/(G/2)) -> bfloat16 ``v * s`` (b, h) of
    the low or high nibbles."""
    b, h = c.shape
    sd = FM.decode_scale(s, scale_dtype)
    sd = jnp.broadcast_to(sd[:, :, None], (b, h // (G // 2), G // 2)).reshape(b, h)
    return K.scaled(c, high, sd, interpret).astype(BF16)


def _rows_load(view, shape, valid):
    """``view[...]``, or with ``valid`` (a traced int) only its first ``valid`` rows
    read (masked load; the others are 0): a row block reaching past the array's
    last row reads no memory outside it."""
    if valid is None:
        return view[...]
    mask = lax.broadcasted_iota(I32, shape, 0) < valid
    return plgpu.load(view, mask=mask, other=0)


def code_tile(c_ref, s_ref, k, bk, G, dtype, rows, grouped, interpret, valid=None):
    """Step ``k`` of a fused-kernel operand given as codes -> bfloat16 ``v * s`` of
    the low and high nibbles, each (rows, bk/2): refs (rows, K_s/2) codes or, with
    ``grouped``, (rows, K_s/G, G/2), and (rows, K_s/G) scale bytes; ``valid``:
    rows of the block inside the array when it ends there (``_rows_load``; the
    rows past it give values that only reach output rows past it)."""
    h = bk // 2
    s = _rows_load(s_ref.at[:, pl.ds(k * (bk // G), bk // G)], (rows, bk // G),
                   valid).astype(I32)
    if grouped:                                         # (rows, bk/G, G/2) bytes
        c = _rows_load(c_ref.at[:, pl.ds(k * (bk // G), bk // G), :],
                       (rows, bk // G, G // 2), valid).astype(I32)
        sd = FM.decode_scale(s, dtype)[:, :, None]
        return [K.scaled(c, hi, sd, interpret).astype(BF16).reshape(rows, h)
                for hi in (False, True)]
    c = _rows_load(c_ref.at[:, pl.ds(k * h, h)], (rows, h), valid).astype(I32)
    return [_decode_tile(c, hi, s, G, dtype, interpret) for hi in (False, True)]


def _fused_kernel(*refs, n_act, act, steps, bk, Gw, dtype_w, scale_in_kernel, grouped,
                  interpret):
    """One (bn, bm) output tile over one K range in ``steps`` steps: ``act(act_refs,
    k, i)`` -> the activation's bfloat16 ``v * s`` (low, high nibbles; (bn, bk/2)
    each; ``i``: the row block, ``program_id(0)``, read outside the loop), the
    weight's by ``code_tile``; one float32-accumulated dot per half."""
    act_refs, (wc_ref, ws_ref, ga_ref, gw_ref, o_ref) = refs[:n_act], refs[n_act:]
    bn, bm = o_ref.shape[-2:]
    dims = (((1,), (1,)), ((), ()))
    i = pl.program_id(0)

    def step(k, acc):
        a = act(act_refs, k, i)
        w = code_tile(wc_ref, ws_ref, k, bk, Gw, dtype_w, bm, grouped, interpret)
        for x, y in zip(a, w):
            acc = acc + lax.dot_general(x, y, dims, preferred_element_type=F32)
        return acc

    acc = lax.fori_loop(0, steps, step, jnp.zeros((bn, bm), F32))
    if scale_in_kernel:
        acc = K.mul(acc, K.alpha(ga_ref, gw_ref, acc.shape, interpret), interpret)
    o_ref[...] = acc.reshape(o_ref.shape)


def fused_padding(N, M, Kx, t: FusedTiling):
    """(Np, Mp, Kp): rows to whole tiles, K to ``split`` ranges of whole steps."""
    return pl.cdiv(N, t.bn) * t.bn, pl.cdiv(M, t.bm) * t.bm, K.padded_k(Kx, t.bk, t.split)


def fused_call(act_args, act_specs, act, wc, ws, gs, N, Kx, Gw, dtw, t: FusedTiling,
               interpret, name):
    """Runs the fused kernel of ``t`` over weights (M, K/2) codes / (M, K/Gw) scale
    bytes with activation operands ``act_args`` (padded to ``fused_padding``;
    ``act_specs(Kc)`` their BlockSpecs for a K range of ``Kc`` elements on the grid
    ``(i, j, s)``; ``act(refs, k, i)`` as in ``_fused_kernel``) -> float32 (N, M)."""
    M, S = wc.shape[0], t.split
    Np, Mp, Kp = fused_padding(N, M, Kx, t)
    Kc = Kp // S
    wc2, ws2 = K.pad2(wc, Mp, Kp // 2), K.pad2(ws, Mp, Kp // Gw)
    if t.grouped:
        wc2 = wc2.reshape(Mp, Kp // Gw, Gw // 2)
        w_spec = pl.BlockSpec((t.bm, Kc // Gw, Gw // 2), lambda i, j, s: (j, s, 0))
    else:
        w_spec = pl.BlockSpec((t.bm, Kc // 2), lambda i, j, s: (j, s))
    kernel = functools.partial(_fused_kernel, n_act=len(act_args), act=act, steps=Kc // t.bk,
                               bk=t.bk, Gw=Gw, dtype_w=dtw, scale_in_kernel=S == 1,
                               grouped=t.grouped, interpret=interpret)
    out = pl.pallas_call(
        kernel, grid=(Np // t.bn, Mp // t.bm, S),
        in_specs=list(act_specs(Kc)) + [
            w_spec,
            pl.BlockSpec((t.bm, Kc // Gw), lambda i, j, s: (j, s)),
            pl.BlockSpec((1,), lambda i, j, s: (0,)),
            pl.BlockSpec((1,), lambda i, j, s: (0,))],
        out_specs=pl.BlockSpec((None, t.bn, t.bm), lambda i, j, s: (s, i, j)),
        out_shape=jax.ShapeDtypeStruct((S, Np, Mp), F32),
        interpret=interpret, name=name, **triton_params(interpret, t.warps, t.stages),
    )(*act_args, wc2, ws2, *gs)
    return K.split_sum(out, gs)[:N, :M]


def matmul(ac2, as2, wc, ws, gs, dta, dtw, Ga, Gw, t: FusedTiling, interpret):
    """Activation codes (N, K/2) / scale bytes (N, K/Ga) x weights (M, K/2) /
    (M, K/Gw) -> float32 (N, M)."""
    N, M, Kx = ac2.shape[0], wc.shape[0], 2 * ac2.shape[1]
    Np, _, Kp = fused_padding(N, M, Kx, t)
    # rows are not padded (an XLA op as long as the matmul at decode sizes): the
    # last row block loads masked; K is (to whole steps)
    ac2, as2 = K.pad2(ac2, N, Kp // 2), K.pad2(as2, N, Kp // Ga)
    if t.grouped:
        ac2 = ac2.reshape(N, Kp // Ga, Ga // 2)
        c_spec = lambda Kc: pl.BlockSpec((t.bn, Kc // Ga, Ga // 2), lambda i, j, s: (i, s, 0))
    else:
        c_spec = lambda Kc: pl.BlockSpec((t.bn, Kc // 2), lambda i, j, s: (i, s))
    specs = lambda Kc: [c_spec(Kc), pl.BlockSpec((t.bn, Kc // Ga), lambda i, j, s: (i, s))]
    act = lambda refs, k, i: code_tile(*refs, k, t.bk, Ga, dta, t.bn, t.grouped, interpret,
                                       None if N == Np else N - i * t.bn)
    layout = "grouped" if t.grouped else "rows"
    return fused_call((ac2, as2), specs, act, wc, ws, gs, N, Kx, Gw, dtw, t, interpret,
                      name=f"fp4_fused_{layout}_{dta}x{dtw}")
