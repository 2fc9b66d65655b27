"""FP4 x FP4 matmul as Pallas (Triton) kernels (SPEC.md section 9).

activation codes/scales (N, K) x weight codes/scales (M, K) -> float32 (N, M)
``= alpha * sum_k (v_a s_a)(v_w s_w)``, ``alpha = gs_a * gs_w``. Every product
``v * s`` (e2m1 value times its group scale, no global scale) is exact in
float32 (<= 6 significant bits; e4m3 scales are normal; e8m0 bytes 0 and 1
give exact float32 subnormals; only ``6 * 2^127`` overflows, to Inf) and so,
truncated to its top 16 bits, exact in bfloat16: the dots take bfloat16 with
float32 accumulation. Three schedules (``MatmulTiling.gemv`` / ``.dequant``):

* gemv (N <= 2 by default, equal group sizes): no dot; each program loops over
  its K range in steps, decodes a (rows, groups, G/2) weight tile once per step
  and, per activation row, multiplies it by the activation's ``v * s``, sums
  each group and scales it by the weight's group scale; with ``split > 1`` the
  partials per K range are added by XLA. The activation comes as codes or, in
  ``pallas_linear.linear_gemv``, as floats quantized inside the kernel (same bits).
* fused (default): one kernel decodes code tiles in registers and dots them,
  grid ``(N/bn, M/bm, split)``; ``split > 1`` cuts K into ``split`` ranges
  whose float32 partials XLA adds (decode-sized N: more programs than output
  tiles). The low nibbles of a byte row and the high nibbles are dotted
  separately (the sum over K does not care about its order). The activation
  comes as codes or, in ``pallas_linear.linear_fused`` (opt-in), as floats
  quantized in each program (same bits).
* dequant: a decode kernel writes each operand once as bfloat16 ``v * s``
  (``decode_bf16``), then XLA's dot (cuBLAS on GPU) with float32 accumulation;
  for prefill-sized N the tensor-core GEMM then dominates.

Opt-in: ``MatmulTiling(mma=True)`` (``pallas_mma``, decode rows on the tensor
cores) and ``MatmulTiling(group_mma=True)`` (``pallas_group_mma``, all
activation rows per group on the tensor cores).

All are within float32 accumulation error of the float64 reference (not bit
equal to one another: summation order). ``alpha`` multiplies the accumulated
sum last. Off GPU the kernels run with ``interpret=True``.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from .._src.dispatch import triton_params
from .._src.kernel_math import PtxMath
from . import formats as FM
from .config import _is_int
from . import softfloat as SF

__all__ = ["MatmulTiling", "matmul_tiling", "matmul", "decode_bf16", "dense_times_codes",
           "gemv_call", "gemv_padding", "fused_call", "fused_padding", "code_tile",
           "scalar_operands", "group_sum_kernel", "check_fields"]

F32 = jnp.float32
I32 = jnp.int32
U8 = jnp.uint8
BF16 = jnp.bfloat16


@dataclasses.dataclass(frozen=True)
class MatmulTiling:
    bn: int                 # activation rows per program (>= 16)
    bm: int                 # weight rows per program (>= 16)
    bk: int                 # K elements per step (>= 32, a multiple of both group sizes)
    warps: int = 4
    stages: int = 3
    split: int = 1          # K ranges (fused); partial sums added by XLA
    dequant: bool = False   # decode both operands to bfloat16 (kernel) + XLA's dense dot
    grouped: bool = False   # fused: code tiles as (rows, groups, G/2), scales broadcast per group
    gemv: bool = False      # decode rows without a dot: multiply + reduce per activation row
    mma: bool = False       # decode rows on the tensor cores, scales after the dot (pallas_mma)
    asm: bool = False       # mma: weight nibbles by a PTX block (GPU only)
    dp4a: bool = False      # gemv: integer group dots (pallas_dp4a; PTX dp4a on the GPU)
    group_mma: bool = False  # all activation rows per group on the tensor cores, scales
    #                          after each group's dot (pallas_group_mma; opt-in, unmeasured)

    def __post_init__(self):
        check_fields(self, pow2=("bn", "bm", "bk", "warps"), positive=("stages", "split"))
        chosen = [f for f in ("dequant", "grouped", "gemv", "mma", "group_mma")
                  if getattr(self, f)]
        if len(chosen) > 1:
            raise ValueError(f"MatmulTiling: at most one schedule of dequant / grouped / gemv "
                             f"/ mma / group_mma, got {' and '.join(chosen)}")
        if self.asm and not self.mma:
            raise ValueError("MatmulTiling: asm needs mma=True")
        if self.dp4a and not self.gemv:
            raise ValueError("MatmulTiling: dp4a needs gemv=True")


def check_fields(tiling, pow2=(), positive=()):
    """ValueError / TypeError naming a tiling field that is not an int (powers of
    two for block dims and warps, >= 1 for the rest; NumPy ints stored as int) or
    a bool field that is not a bool."""
    name = type(tiling).__name__
    for f in pow2 + positive:
        v = getattr(tiling, f)
        if not _is_int(v):
            raise TypeError(f"{name}.{f} must be an int, got {v!r}")
        if v < 1 or (f in pow2 and v & (v - 1)):
            raise ValueError(f"{name}.{f} must be {'a power of two' if f in pow2 else '>= 1'}"
                             f", got {v}")
        object.__setattr__(tiling, f, int(v))
    for x in dataclasses.fields(tiling):
        if x.type in ("bool", bool) and not isinstance(getattr(tiling, x.name), bool):
            raise TypeError(f"{name}.{x.name} must be a bool, got {getattr(tiling, x.name)!r}")


def matmul_tiling(N: int, M: int, K: int, Ga: int, Gw: int, interpret: bool = False
                  ) -> MatmulTiling:
    """Shape heuristic from the H100 / H200 sweeps (``python -m bench.fp4 --sweep``,
    ``bench.fp4_probe --cases layouts``, BENCHMARKS.md), K = M = 4096: N <= 2 with
    equal group sizes: the dot-free gemv kernel (``_decode_layout``); with G = 32
    (MXFP4) by integer group dots (``pallas_dp4a``; its GPU exactness tests pass
    at G = 32 and 16, the speed of G = 16 was not measured: NVFP4 keeps the float
    gemv); other decode-sized N (<= 16): grouped fused kernel, 16 x 64 tiles, K
    split in up to 16 ranges of 256 (15 us at N = 4 and 8, where gemv takes 17
    and 27 us); N >= 256 on GPU: decode once + dense GEMM (0.230 ms at 4096^3 vs
    0.57 ms for the best fused tiling); in between the fused kernel (off GPU:
    always, it runs interpreted)."""
    bk = max(128, Ga, Gw)
    if N <= 2 and Ga == Gw and not interpret:
        return _decode_layout(N, M, K, Ga)
    if N <= 16:
        bk = max(bk, 256)
        return MatmulTiling(16, 64, bk, 4, 3, max(1, min(16, K // bk)), grouped=True)
    if N >= 256 and not interpret:
        return MatmulTiling(128, 128, bk, dequant=True)
    if N <= 64 or interpret:
        return MatmulTiling(64, 64, bk, 4, 3)
    return MatmulTiling(256, 128, bk, 8, 3)


def _decode_layout(N: int, M: int, K: int, G: int) -> MatmulTiling:
    """The gemv tiling of N <= 2. G = 32: integer group dots (``dp4a``), one step
    per program (``bk`` = the K range: all its loads issued at once), ``bk`` the
    largest power of two <= 4096 dividing K (no padding, so no copy of the
    weight) when that is >= 256, else 256 with K padded; ``split = K / bk``
    ranges (XLA adds them when > 1); programs of about 32 KB of weight bytes
    (``bm = 65536 / bk`` rows, 16..64; halved while M is not a multiple, down
    to 16).

    H200, N = 1 cold, K = M = 4096 (session 11, ``bench.fp4_probe --cases
    layouts``, two calls; bf16 matmul 0.0121 / 0.0132 ms): ``linear_gemv`` dp4a
    16 x 4096 s1 w8 0.0082 / 0.0088 ms (0.68x / 0.66x) against the session 10
    default 64 x 256 s16 w4 0.0101 / 0.0098 (0.84x / 0.74x); 32 x 2048 s2 w8
    0.0087, 64 x 1024 s4 w8 0.0091; N = 2: 1.09x against 1.16x. Other K only by
    this rule (not measured).

    Other G (NVFP4's 16): the float gemv in the session 8 layout, ``32 N`` rows x
    256, split K / 256 up to 16 (its decoded float tile would not fit in
    registers at 16 x 4096)."""
    if G != 32:
        bk = max(256, G)
        return MatmulTiling(1, 32 * N, bk, 4, 3, max(1, min(16, K // bk)), gemv=True)
    d = K & -K
    bk = min(4096, d) if d >= 256 else 256
    bm = max(16, min(64, 65536 // bk))
    while bm > 16 and M % bm:
        bm //= 2
    return MatmulTiling(1, bm, bk, 8 if bk >= 1024 else 4, 1, -(-K // bk), gemv=True,
                        dp4a=True)


def _mul(a, b, interpret):
    """IEEE float32 product (subnormals kept): integer softfloat off GPU, PTX on it."""
    return SF.mul(a, b) if interpret else PtxMath.mul(a, b)


_TWO126 = 2.0 ** 126


def _value(c, high: bool, interpret):
    """bytes (int32 0..255) -> float32 e2m1 value of the low (or high) nibble, exact.

    The nibble ``s e e m`` placed at float32 bits 31 and 24..22 is the float
    ``v * 2^-126`` (e = 0: the subnormal ``m * 2^-127``), so one exact multiply by
    2^126 gives ``v``: 5 integer ops instead of the decoder's 12 (IEEE ``_mul``,
    so the subnormal is not flushed; interpret mode multiplies bit patterns)."""
    if high:
        b = ((c & 0x70) << 18) | ((c & 0x80) << 24)
    else:
        b = ((c & 7) << 22) | ((c & 8) << 28)
    return _mul(SF.from_bits(b), F32(_TWO126), interpret)


def _scaled(c, high, s, interpret):
    """bytes (..., h), float32 scales broadcastable -> float32 ``v * s`` of one nibble
    (exact but for the one overflow ``6 * 2^127`` -> Inf)."""
    return _mul(_value(c, high, interpret), s, interpret)


# ---- fused kernel ----------------------------------------------------------------------

def _decode_tile(c, high, s, G, scale_dtype, interpret):
    """bytes (b, h) int32, scale bytes (b, h/(G/2)) -> bfloat16 ``v * s`` (b, h) of
    the low or high nibbles."""
    b, h = c.shape
    sd = FM.decode_scale(s, scale_dtype)
    sd = jnp.broadcast_to(sd[:, :, None], (b, h // (G // 2), G // 2)).reshape(b, h)
    return _scaled(c, high, sd, interpret).astype(BF16)


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
        return [_scaled(c, hi, sd, interpret).astype(BF16).reshape(rows, h)
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
        acc = _mul(acc, _alpha(ga_ref, gw_ref, acc.shape, interpret), interpret)
    o_ref[...] = acc.reshape(o_ref.shape)


def _pad2(x, r, c):
    return jnp.pad(x, ((0, r - x.shape[0]), (0, c - x.shape[1]))) if x.shape != (r, c) else x


def scalar_operands(*values):
    """float32 scalars -> (1,) float32 kernel operands (reshapes only: no XLA
    computation before the launch; e.g. kernels with a whole K range form
    ``alpha = gs_a * gs_w`` themselves)."""
    return tuple(jnp.asarray(v, F32).reshape(1) for v in values)


def _alpha(ga_ref, gw_ref, shape, interpret):
    """``gs_a * gs_w`` (IEEE) broadcast to ``shape``, inside a kernel (a tensor
    operation: the PTX multiply is not used on scalars)."""
    return _mul(jnp.full(shape, ga_ref[0], F32), gw_ref[0], interpret)


def _split_sum(out, gs):
    """float32 (S, N, M) partials of the K ranges -> ``alpha * sum`` (S = 1: the
    kernel applied ``alpha``)."""
    return out[0] if out.shape[0] == 1 else out.sum(axis=0) * SF.mul(gs[0][0], gs[1][0])


def fused_padding(N, M, K, t: MatmulTiling):
    """(Np, Mp, Kp) of the fused and group_mma schedules: rows to whole tiles, K to
    ``split`` ranges of whole steps (``gemv_padding``)."""
    return pl.cdiv(N, t.bn) * t.bn, pl.cdiv(M, t.bm) * t.bm, gemv_padding(K, t)


def fused_call(act_args, act_specs, act, wc, ws, gs, N, K, Gw, dtw, t: MatmulTiling,
               interpret):
    """Runs the fused kernel of ``t`` over weights (M, K/2) codes / (M, K/Gw) scale
    bytes with activation operands ``act_args`` (padded to ``fused_padding``;
    ``act_specs(Kc)`` their BlockSpecs for a K range of ``Kc`` elements on the grid
    ``(i, j, s)``; ``act(refs, k, i)`` as in ``_fused_kernel``) -> float32 (N, M)."""
    M, S = wc.shape[0], t.split
    Np, Mp, Kp = fused_padding(N, M, K, t)
    Kc = Kp // S
    wc2, ws2 = _pad2(wc, Mp, Kp // 2), _pad2(ws, Mp, Kp // Gw)
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
        interpret=interpret, **triton_params(interpret, t.warps, t.stages),
    )(*act_args, wc2, ws2, *gs)
    return _split_sum(out, gs)[:N, :M]


def _fused(ac2, as2, wc, ws, gs, dta, dtw, Ga, Gw, t: MatmulTiling, interpret):
    """Activation codes (N, K/2) / scale bytes (N, K/Ga) x weights, fused kernel."""
    N, M, K = ac2.shape[0], wc.shape[0], 2 * ac2.shape[1]
    Np, _, Kp = fused_padding(N, M, K, t)
    # rows are not padded (an XLA op as long as the matmul at decode sizes): the
    # last row block loads masked; K is (to whole steps)
    ac2, as2 = _pad2(ac2, N, Kp // 2), _pad2(as2, N, Kp // Ga)
    if t.grouped:
        ac2 = ac2.reshape(N, Kp // Ga, Ga // 2)
        c_spec = lambda Kc: pl.BlockSpec((t.bn, Kc // Ga, Ga // 2), lambda i, j, s: (i, s, 0))
    else:
        c_spec = lambda Kc: pl.BlockSpec((t.bn, Kc // 2), lambda i, j, s: (i, s))
    specs = lambda Kc: [c_spec(Kc), pl.BlockSpec((t.bn, Kc // Ga), lambda i, j, s: (i, s))]
    act = lambda refs, k, i: code_tile(*refs, k, t.bk, Ga, dta, t.bn, t.grouped, interpret,
                                       None if N == Np else N - i * t.bn)
    return fused_call((ac2, as2), specs, act, wc, ws, gs, N, K, Gw, dtw, t, interpret)


# ---- gemv: few activation rows, no tensor-core dot ---------------------------------------

def _gemv_kernel(*refs, n_act, act, steps, ng, dtw, scale_in_kernel, interpret):
    """Weight rows (bm, K_s/G, H) bytes of one K range, looped over in ``steps``
    steps of ``ng`` groups; ``act(act_refs, n, s)`` -> float32 e2m1 values (low,
    high nibbles; (ng, H)) and decoded scales (ng,) of activation row ``n`` at
    step ``s``, multiplied here into ``v_a s_a``:
    out[n, m] = sum over groups g of s_w[m, g] * sum_{k in g} v_w[m, k] (v_a s_a)[n, k]
    (the weight scale applied once per group), accumulated step by step, times
    ``alpha`` (when the K range is whole)."""
    act_refs, (wc_ref, ws_ref, ga_ref, gw_ref, o_ref) = refs[:n_act], refs[n_act:]
    n_rows, bm = o_ref.shape[-2:]

    def step(s, accs):
        c = wc_ref[:, pl.ds(s * ng, ng), :].astype(I32)
        sw = FM.decode_scale(ws_ref[:, pl.ds(s * ng, ng)].astype(I32), dtw)      # (bm, ng)
        w_lo, w_hi = _value(c, False, interpret), _value(c, True, interpret)
        out = []
        for n in range(n_rows):
            v_lo, v_hi, sa = act(act_refs, n, s)
            a_lo, a_hi = _mul(v_lo, sa[:, None], interpret), _mul(v_hi, sa[:, None], interpret)
            y = jnp.sum(w_lo * a_lo[None] + w_hi * a_hi[None], axis=2)         # (bm, ng)
            out.append(accs[n] + jnp.sum(y * sw, axis=1))
        return tuple(out)

    accs = lax.fori_loop(0, steps, step, tuple(jnp.zeros((bm,), F32) for _ in range(n_rows)))
    for n in range(n_rows):
        o_ref[n, :] = (_mul(accs[n], _alpha(ga_ref, gw_ref, (bm,), interpret), interpret)
                       if scale_in_kernel else accs[n])


def group_sum_kernel(*refs, n_act, act, steps, ng, dtw, scale_in_kernel, interpret, weights,
                     group_sums, factor):
    """The decode-rows loop of kernels that form each group's sum first and apply
    both group scales after it (``pallas_mma``, ``pallas_dp4a``): per step
    ``weights(wc_ref, s)`` (the step's decoded weight tile) and, per activation
    row, ``group_sums(w, v_lo, v_hi)`` -> float32 (bm, ng) equal to
    ``sum_{k in g} v_w v_a / factor`` (exact); then
    ``out[n, m] = factor * alpha * sum_g sums * s_w * s_a`` (``factor`` a power of
    two: exact). ``act`` and the refs as in ``_gemv_kernel``."""
    act_refs, (wc_ref, ws_ref, ga_ref, gw_ref, o_ref) = refs[:n_act], refs[n_act:]
    n_rows, bm = o_ref.shape[-2:]

    def step(s, accs):
        w = weights(wc_ref, s)
        sw = FM.decode_scale(ws_ref[:, pl.ds(s * ng, ng)].astype(I32), dtw)  # (bm, ng)
        out = []
        for n in range(n_rows):
            v_lo, v_hi, sa = act(act_refs, n, s)
            d = group_sums(w, v_lo, v_hi)
            y = _mul(_mul(d, sw, interpret), jnp.broadcast_to(sa[None, :], (bm, ng)), interpret)
            out.append(accs[n] + jnp.sum(y, axis=1))
        return tuple(out)

    accs = lax.fori_loop(0, steps, step, tuple(jnp.zeros((bm,), F32) for _ in range(n_rows)))
    for n in range(n_rows):
        y = accs[n] * F32(factor)                                            # exact
        if scale_in_kernel:
            y = _mul(y, _alpha(ga_ref, gw_ref, (bm,), interpret), interpret)
        o_ref[n, :] = y


def gemv_call(act_args, act_specs, act, wc, ws, gs, N, K, G, dtw, t: MatmulTiling,
              interpret):
    """Runs the decode-rows kernel of ``t`` (``_gemv_kernel``, with ``t.mma``
    ``pallas_mma``'s, with ``t.dp4a`` ``pallas_dp4a``'s) over weights (M, K/2)
    codes / (M, K/G) scale bytes with activation operands ``act_args`` (already
    padded to ``gemv_padding(K, t)``; ``act_specs(ng_s)`` their BlockSpecs for a K range of ``ng_s`` groups;
    ``act(refs, n, s)`` -> e2m1 values lo, hi (ng, H) and decoded scales (ng,))
    -> float32 (N, M)."""
    M, S, H = wc.shape[0], t.split, G // 2
    Mp, Kp = pl.cdiv(M, t.bm) * t.bm, gemv_padding(K, t)
    ng, ng_s = t.bk // G, Kp // S // G                   # groups per step, per K range
    common = dict(n_act=len(act_args), act=act, steps=ng_s // ng, ng=ng, dtw=dtw,
                  scale_in_kernel=S == 1, interpret=interpret)
    if t.mma:
        from . import pallas_mma
        if t.bk < pallas_mma.min_step(G) or t.bm < 16:
            raise ValueError(f"tiling.mma needs bk >= 16 * group size "
                             f"({pallas_mma.min_step(G)}) and bm >= 16, got {t}")
        kernel = functools.partial(pallas_mma.mma_kernel, H=H, asm=t.asm and not interpret,
                                   **common)
        w, w_spec = _pad2(wc, Mp, Kp // 2), pl.BlockSpec((t.bm, ng_s * H), lambda j, s: (j, s))
    else:
        if t.dp4a:
            from . import pallas_dp4a
            kernel = functools.partial(pallas_dp4a.dp4a_kernel, asm=not interpret, **common)
        else:
            kernel = functools.partial(_gemv_kernel, **common)
        w = _pad2(wc, Mp, Kp // 2).reshape(Mp, Kp // G, H)
        w_spec = pl.BlockSpec((t.bm, ng_s, H), lambda j, s: (j, s, 0))
    out = pl.pallas_call(
        kernel, grid=(Mp // t.bm, S),
        in_specs=list(act_specs(ng_s)) + [
            w_spec,
            pl.BlockSpec((t.bm, ng_s), lambda j, s: (j, s)),
            pl.BlockSpec((1,), lambda j, s: (0,)),
            pl.BlockSpec((1,), lambda j, s: (0,))],
        out_specs=pl.BlockSpec((None, N, t.bm), lambda j, s: (s, 0, j)),
        out_shape=jax.ShapeDtypeStruct((S, N, Mp), F32),
        interpret=interpret, **triton_params(interpret, t.warps, t.stages),
    )(*act_args, w, _pad2(ws, Mp, Kp // G), *gs)
    return _split_sum(out, gs)[:, :M]


def gemv_padding(K, t: MatmulTiling):
    """Padded K of every split schedule: a multiple of ``bk * split``."""
    return pl.cdiv(K, t.bk * t.split) * t.bk * t.split


def _gemv(ac2, as2, wc, ws, gs, dta, dtw, G, t: MatmulTiling, interpret):
    """Activation codes (N, K/2) / scale bytes (N, K/G) x weights, gemv or mma."""
    N, K = ac2.shape[0], 2 * ac2.shape[1]
    H, Kp = G // 2, gemv_padding(K, t)
    a3 = _pad2(ac2, N, Kp // 2).reshape(N, Kp // G, H)
    as2 = _pad2(as2, N, Kp // G)
    ng = t.bk // G

    def act(refs, n, s):
        ac_ref, as_ref = refs
        ca = ac_ref[n, pl.ds(s * ng, ng), :].astype(I32)                  # (ng, H)
        sa = FM.decode_scale(as_ref[n, pl.ds(s * ng, ng)].astype(I32), dta)
        return _value(ca, False, interpret), _value(ca, True, interpret), sa

    specs = lambda ng_s: [pl.BlockSpec((N, ng_s, H), lambda j, s: (0, s, 0)),
                          pl.BlockSpec((N, ng_s), lambda j, s: (0, s))]
    return gemv_call((a3, as2), specs, act, wc, ws, gs, N, K, G, dtw, t, interpret)


# ---- dequant: decode kernel + dense dot --------------------------------------------------

def _decode_kernel(c_ref, s_ref, o_ref, *, scale_dtype, interpret):
    c = c_ref[...].astype(I32)                                   # (BR, NG, H) bytes
    s = FM.decode_scale(s_ref[...].astype(I32), scale_dtype)[:, :, None]
    lo = SF.bits(_scaled(c, False, s, interpret))
    hi = SF.bits(_scaled(c, True, s, interpret))
    # each product is exact in bfloat16: its float32 bits end in 16 zeros
    o_ref[...] = lax.shift_right_logical(lo, I32(16)) | (hi & I32(-65536))


def decode_bf16(codes, scale_bytes, scale_dtype: str, *, rows: int = 16, cols: int = 1024,
                warps: int = 4, interpret: bool = False):
    """codes uint8 (R, K/2), scale bytes uint8 (R, K/G) -> bfloat16 (R, K) ``v * s``
    (no global scale), exact. Blocks of ``rows`` x ``cols`` elements."""
    R, K = codes.shape[0], 2 * codes.shape[1]
    ng = scale_bytes.shape[1]
    G = K // ng
    H = G // 2
    NG = max(1, min(cols // G, pl.next_power_of_2(ng)))
    Rp, NGp = pl.cdiv(R, rows) * rows, pl.cdiv(ng, NG) * NG
    c3 = jnp.pad(codes.reshape(R, ng, H), ((0, Rp - R), (0, NGp - ng), (0, 0)))
    s2 = _pad2(scale_bytes, Rp, NGp)
    kernel = functools.partial(_decode_kernel, scale_dtype=scale_dtype, interpret=interpret)
    out = pl.pallas_call(
        kernel, grid=(Rp // rows, NGp // NG),
        in_specs=[pl.BlockSpec((rows, NG, H), lambda i, j: (i, j, 0)),
                  pl.BlockSpec((rows, NG), lambda i, j: (i, j))],
        out_specs=pl.BlockSpec((rows, NG, H), lambda i, j: (i, j, 0)),
        out_shape=jax.ShapeDtypeStruct((Rp, NGp, H), I32),
        interpret=interpret, **triton_params(interpret, warps),
    )(c3, s2)
    words = out[:R, :ng].reshape(R, K // 2)
    return lax.bitcast_convert_type(words, BF16).reshape(R, K)


def dense_times_codes(a, w, alpha, interpret: bool = False):
    """bfloat16 activations (N, K) (``v * s`` values) x weights ``w`` = (codes,
    scale bytes, global scale, scale dtype) -> float32 (N, M): the weight decoded
    once (``decode_bf16``), XLA's dot with float32 accumulation, times ``alpha`` (1,)."""
    wd = decode_bf16(w[0], w[1], w[3], interpret=interpret)
    y = lax.dot_general(a, wd, (((1,), (1,)), ((), ())), preferred_element_type=F32)
    return y * alpha[0]


def _dequant(ac2, as2, wc, ws, alpha, dta, dtw, interpret):
    a = decode_bf16(ac2, as2, dta, interpret=interpret)
    return dense_times_codes(a, (wc, ws, None, dtw), alpha, interpret)


def matmul(a, w, *, tiling: MatmulTiling | None = None, interpret: bool = False):
    """``a``, ``w``: (codes uint8, scale bytes uint8, global scale, scale_dtype) of
    activations (..., N, K) and weights (M, K) -> float32 (..., N, M). Group
    sizes must be powers of two >= 2 (checked by the caller)."""
    ac, as_, gsa, dta = a
    wc, ws, gsw, dtw = w
    K = 2 * ac.shape[-1]
    Ga, Gw = K // as_.shape[-1], K // ws.shape[-1]
    lead = ac.shape[:-1]
    ac2, as2 = ac.reshape(-1, K // 2), as_.reshape(-1, K // Ga)
    N, M = ac2.shape[0], wc.shape[0]
    t = tiling or matmul_tiling(N, M, K, Ga, Gw, interpret)
    if t.dequant:
        y = _dequant(ac2, as2, wc, ws, SF.mul(gsa, gsw).reshape(1), dta, dtw, interpret)
        return y.reshape(lead + (M,))
    gs = scalar_operands(gsa, gsw)
    if (t.mma or t.gemv) and (Ga != Gw or N > 16):
        raise ValueError(f"tiling.{'mma' if t.mma else 'gemv'} needs equal group sizes and "
                         f"N <= 16, got groups {Ga}/{Gw}, N={N}")
    if t.group_mma:
        if Ga != Gw:
            raise ValueError(f"tiling.group_mma needs equal group sizes, got {Ga}/{Gw}")
        from .pallas_group_mma import group_mma
        y = group_mma(ac2, as2, wc, ws, gs, dta, dtw, Ga, t, interpret)
    elif t.mma or t.gemv:
        y = _gemv(ac2, as2, wc, ws, gs, dta, dtw, Ga, t, interpret)
    else:
        y = _fused(ac2, as2, wc, ws, gs, dta, dtw, Ga, Gw, t, interpret)
    return y.reshape(lead + (M,))
