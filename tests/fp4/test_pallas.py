"""The fp4 Pallas kernels (interpret mode off GPU, compiled on it) == golden.fp4 (SPEC.md section 9).

Quantize: codes and scale bytes bit for bit (crafted ties, zeros, -0, e4m3
subnormal scales, saturation, NaN/Inf groups, huge/tiny values); with a
transform, bit for bit against golden applied to the kernel's own transformed
values, and end to end against golden's transform within SPEC 9.7's tolerance.
Matmul: relative L2 error vs the float64 reference < 1e-5, decode-sized rows.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl
from hypothesis import given, settings, strategies as st

from golden import fp4 as G
from scmp_jax import fp4
from scmp_jax._src.dispatch import Backend, resolve
from scmp_jax.fp4 import kernel as KR
from scmp_jax.fp4.linear import api as LA
from scmp_jax.fp4.linear import dequant as LD
from scmp_jax.fp4.linear import gemv as LG
from scmp_jax.fp4.matmul import heuristic as H
from scmp_jax.fp4.matmul import pallas as MP
from scmp_jax.fp4.matmul import tilings as T
from scmp_jax.fp4.matmul.schedules import dequant as SD
from scmp_jax.fp4.matmul.schedules import dp4a as D
from scmp_jax.fp4.quantize import api as QA
from scmp_jax.fp4.quantize import encode as E
from scmp_jax.fp4.quantize import pallas as QP
from scmp_jax.fp4.quantize import params as PR
from tests.helpers import (FP4_KINDS as KINDS, check_fp4_transform, fp4_group as _group,
                           fp4_near_threshold_rows, hadamard)

pytestmark = pytest.mark.gpu
F32 = np.float32
# (shape, group_size): power-of-two groups only (each pair x scale format is one program)
PAIRS = [((4, 64), 32), ((4, 64), 16), ((2, 3, 32), 8), ((3, 128), 64)]
#: the kernels' backend as ``implementation="pallas"`` resolves it here (interpret
#: mode off the GPU)
BK = resolve("pallas", op="fp4 kernel tests")


def quantize_fused(*a, **k):
    return QP.quantize_fused(*a, backend=BK, **k)


def matmul(a, w, tiling=None):
    return MP.matmul(a, w, backend=BK, tiling=tiling)


def linear_gemv(*a, **k):
    return LG.linear_gemv(*a, backend=BK, **k)


def quantize_dequant(*a, **k):
    return LD.quantize_dequant(*a, backend=BK, **k)


def linear_dequant(*a, **k):
    return LD.linear_dequant(*a, backend=BK, **k)


@st.composite
def cases(draw):
    shape, group = draw(st.sampled_from(PAIRS))
    ss = draw(st.one_of(st.sampled_from([1.0, 4.0, 6.0, 0.25]),
                        st.floats(0.01, 100.0).map(lambda v: float(F32(v)))))
    gs = draw(st.one_of(st.sampled_from([1.0, 1 / 3, 2.0 ** -10, 1e-3]),
                        st.floats(1e-6, 1e6).map(lambda v: float(F32(v)))))
    kw = dict(group_size=group, scale_dtype=draw(st.sampled_from(G.SCALE_DTYPES)),
              scale_scale=ss, global_scale=gs, rounding=draw(st.sampled_from(G.ROUNDINGS)))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    r = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    n = int(np.prod(shape)) // group
    with np.errstate(all="ignore"):
        x = np.concatenate([_group(kinds[r.integers(len(kinds))], group, r, ss, gs,
                                   kw["scale_dtype"]) for _ in range(n)]).astype(F32)
    return x.reshape(shape), kw


@settings(max_examples=25)
@given(cases())
def test_quantize_matches_golden(case):
    x, kw = case
    t = fp4.quantize(x, **kw, implementation="pallas")
    ref = G.quantize(x, **kw)
    assert t.codes.shape == ref["codes"].shape and t.scales.shape == ref["scales"].shape
    assert np.array_equal(np.asarray(t.codes), ref["codes"])
    assert np.array_equal(np.asarray(t.scale_bytes), ref["scales"])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4"])
def test_quantize_16bit_input(preset, dtype):
    r = np.random.default_rng(3)
    x = (r.standard_normal((5, 96)) * 4).astype(F32)          # K=96: padded to the block
    x[0, :6] = [0.0, -0.0, np.inf, 1e-40, 3e38, -6.0]
    x[1] = -0.0
    xb = jnp.asarray(x, dtype)                                 # read as pairs of 16 bits
    t = fp4.quantize(xb, preset, implementation="pallas")
    ref = G.quantize(np.asarray(xb.astype(jnp.float32)), **G.PRESETS[preset])
    assert np.array_equal(np.asarray(t.codes), ref["codes"])
    assert np.array_equal(np.asarray(t.scale_bytes), ref["scales"])


# (scale_scale, global_scale, scale_dtype, group): divisors p = scale * gs whose
# float32 mantissas are not powers of two (1/3, e4m3 mantissas, all-ones, 1 + ulp)
QUOTIENTS = [(4.0, 1 / 3, "e8m0", 32), (6.0, 1.0, "e4m3", 16), (6.0, 0.7, "e4m3", 16),
             (4.0, float(F32(2 - 2 ** -23)), "e8m0", 32), (4.0, float(F32(1 + 2 ** -23)), "e8m0", 32),
             (4.0, 0.1, "e8m0", 32)]
THRESHOLDS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)   # e2m1 rounding boundaries (ties)


def _divisor(ss, gs, scale_dtype):
    """A group maximum ``A`` whose divisor ``p`` has a non-power-of-two mantissa and
    ``A / p`` just above 5 (so the group's other elements can reach every threshold)."""
    prod = F32(ss) * F32(gs)
    best = None
    for c in np.linspace(1.0, 8.0, 449):
        A = F32(c * prod)
        s = G.encode_scale(np.array([A / prod], F32), scale_dtype)
        p = F32(G.decode_scale(s, scale_dtype)[0]) * F32(gs)
        if p.view(np.uint32) & 0x7FFFFF and 5.05 < A / p < 6.5 and (best is None or A / p < best[2]):
            best = (A, p, A / p)
    assert best is not None
    return best[:2]


def _quotient_input(ss, gs, scale_dtype, group, exhaustive):
    """float32 (R, 64 * group): each group is ``A`` then ``group - 1`` values, odd
    groups negated. Exhaustive: every float32 in [A/64, A) (quotients
    0.08..5.x); else windows of 81 consecutive floats around ``t * p`` for each
    threshold (the only quotients where a wrong rounding changes a code)."""
    A, p = _divisor(ss, gs, scale_dtype)
    if exhaustive:
        v = np.arange(F32(A / 64).view(np.int32), A.view(np.int32), dtype=np.int32).view(F32)
    else:
        mid = np.array([F32(t * p) for t in THRESHOLDS], F32).view(np.int32)
        v = (mid[:, None] + np.arange(-40, 41, dtype=np.int32)).ravel().view(F32)
    q = v / p
    assert q.min() < 0.25 and q.max() > 5.0                  # every threshold is reached
    n = -(-len(v) // (group - 1))
    n = -(-n // 64) * 64
    v = np.resize(v, n * (group - 1)).reshape(n, group - 1)
    x = np.concatenate([np.full((n, 1), A, F32), v], axis=1)
    x[1::2] *= -1
    return x.reshape(n // 64, 64 * group), p


@pytest.mark.parametrize("ss,gs,scale_dtype,group", QUOTIENTS)
def test_codes_near_thresholds(ss, gs, scale_dtype, group, monkeypatch):
    """Codes where a quotient ``x / p`` sits next to an e2m1 midpoint equal golden's
    (the kernel's two exact forms: e8m0 blocks by thresholds ``c_i`` in ``x``,
    others by IEEE division). On the GPU, every float32 in 6 binades: the
    threshold codes == the division codes (``QuantTiling(thresholds=False)``).
    With the per-element division poisoned, e8m0 codes do not change (the
    threshold branch is the one taken) and the division-only kernel's do."""
    gpu = not BK.interpret
    x, _ = _quotient_input(ss, gs, scale_dtype, group, exhaustive=gpu)
    kw = dict(group_size=group, scale_dtype=scale_dtype, rounding=0)
    run = lambda **t: np.asarray(quantize_fused(jnp.asarray(x), F32(ss), F32(gs),
                                                  tiling=QP.QuantTiling(**t), **kw)[0])
    codes, scales = (np.asarray(v) for v in quantize_fused(jnp.asarray(x), F32(ss), F32(gs),
                                                             **kw))
    rows = np.random.default_rng(0).choice(len(x), min(len(x), 256), replace=False)
    ref = G.quantize(x[rows], scale_scale=ss, global_scale=gs, **kw | {"rounding": "even"})
    assert np.array_equal(codes[rows], ref["codes"]) and np.array_equal(scales[rows], ref["scales"])
    assert np.array_equal(run(thresholds=False), codes)
    div = KR.div
    monkeypatch.setattr(KR, "div", lambda a, b, i: div(a, b, i) if jnp.ndim(a) < 3 and
                        jnp.ndim(b) < 3 else jnp.full(jnp.shape(b), jnp.nan, F32))
    jax.clear_caches()
    assert not np.array_equal(run(thresholds=False), codes)              # the poison bites
    assert np.array_equal(run(), codes) == (scale_dtype == "e8m0")


@pytest.mark.parametrize("gs", [1 / 3, 0.1, float(F32(2 - 2 ** -23))])
def test_threshold_codes_every_binade(gs):
    """The near-threshold windows scaled by every power of two 2^-150 .. 2^127
    (every e8m0 scale byte, subnormal and overflowing groups included): codes and
    scales == golden, with the threshold branch and with division only."""
    x0, _ = _quotient_input(4.0, gs, "e8m0", 32, exhaustive=False)
    with np.errstate(over="ignore", under="ignore"):
        x = np.concatenate([x0 * F32(2.0 ** j) for j in range(-150, 128)]).astype(F32)
    kw = dict(group_size=32, scale_dtype="e8m0", rounding=0)
    ref = G.quantize(x, scale_scale=4.0, global_scale=gs, **kw | {"rounding": "even"})
    for on in (True, False):
        codes, scales = quantize_fused(jnp.asarray(x), F32(4.0), F32(gs),
                                         tiling=QP.QuantTiling(thresholds=on), **kw)
        assert np.array_equal(np.asarray(scales), ref["scales"])
        assert np.array_equal(np.asarray(codes), ref["codes"]), on


@pytest.mark.parametrize("ss,gs,scale_dtype,group", QUOTIENTS[:2])
def test_static_params_same_codes(ss, gs, scale_dtype, group):
    """Concrete params are baked into the kernels (``quantize.params.Known``: the rounding
    picked at trace time, the thresholds as constants, inside a caller's jit too);
    for every rounding mode the codes and scales equal golden's and the kernel
    that reads the params at run time (``QuantTiling(static_params=False)``), on
    near-threshold inputs, for float32 and bfloat16 input."""
    x, _ = _quotient_input(ss, gs, scale_dtype, group, exhaustive=False)
    known = jax.jit(lambda: jnp.int32(PR.known(PR.params(F32(ss), F32(gs), 1, True)) is not None))
    assert int(known()) == 1
    for r, name in enumerate(G.ROUNDINGS):
        for v in (x, np.asarray(jnp.asarray(x, jnp.bfloat16).astype(F32))):
            kw = dict(group_size=group, scale_dtype=scale_dtype, rounding=r)
            run = lambda **t: [np.asarray(o) for o in jax.jit(lambda u: quantize_fused(
                u, F32(ss), F32(gs), tiling=QP.QuantTiling(**t), **kw))(
                jnp.asarray(v, jnp.bfloat16) if v is not x else jnp.asarray(v))]
            ref = G.quantize(v, scale_scale=ss, global_scale=gs, **kw | {"rounding": name})
            static, read = run(), run(static_params=False)
            assert np.array_equal(static[0], ref["codes"]), name
            assert np.array_equal(static[1], ref["scales"]), name
            assert np.array_equal(read[0], static[0]) and np.array_equal(read[1], static[1])


def _staged_params(fn, *args):
    """How many ``_params_program`` calls the traced program of ``fn`` holds."""
    eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
    return sum(e.params.get("name") == "_params_program" for e in eqns)


def test_params_computed_at_trace_time():
    """Concrete scale scalars (also inside a caller's jit): the kernel parameters
    (softfloat thresholds) are computed while tracing, not staged (staged with
    constant inputs, XLA GPU spent minutes constant-folding them); traced scalars
    below ``SMALL_TRACED`` elements quantize by division (nothing staged), with
    threshold tiling they stage the parameter program once; same codes each way."""
    x = jnp.asarray(np.random.default_rng(5).standard_normal((4, 64)), jnp.bfloat16)
    assert x.size < QP.SMALL_TRACED
    const = lambda v: fp4.quantize(v, "mxfp4", implementation="pallas").codes
    traced = lambda v, g: fp4.quantize(v, "mxfp4", global_scale=g, implementation="pallas").codes
    kw = dict(group_size=32, scale_dtype="e8m0", rounding=0)
    staged = lambda v, g: quantize_fused(v, F32(fp4.MXFP4.scale_scale), g,
                                          tiling=QP.QuantTiling(), **kw)[0]
    gs = F32(fp4.MXFP4.global_scale)
    assert _staged_params(const, x) == 0
    assert _staged_params(traced, x, gs) == 0
    assert _staged_params(staged, x, gs) == 1
    eager = PR.params(F32(4.0), gs, 0, True)
    jitted = jax.jit(lambda s, g: PR.params(s, g, 0, True))(F32(4.0), gs)
    assert np.array_equal(np.asarray(eager), np.asarray(jitted))
    ref = G.quantize(np.asarray(x.astype(jnp.float32)), **G.PRESETS["mxfp4"])["codes"]
    assert np.array_equal(np.asarray(jax.jit(const)(x)), ref)
    assert np.array_equal(np.asarray(jax.jit(traced)(x, gs)), ref)
    assert np.array_equal(np.asarray(jax.jit(staged)(x, gs)), ref)


_SPECIAL_F32 = [0.0, -0.0, 1.0, 1 / 3, 0.7, 6.0, -1.5, 2.0 ** -149, 2.0 ** -126, 1e-40, 3e38,
                np.inf, -np.inf, np.nan]
_f32_bits = st.one_of(st.sampled_from([int(np.float32(v).view(np.uint32)) for v in _SPECIAL_F32]),
                      st.integers(0, 2 ** 32 - 1))


@settings(max_examples=60, deadline=None)
@given(ss=_f32_bits, gs=_f32_bits, rounding=st.integers(0, 3), thresholds=st.booleans())
def test_host_params_equal_softfloat(ss, gs, rounding, thresholds):
    """Concrete params come from NumPy's IEEE float32 arithmetic on the host
    (``quantize.params.HOST``, no XLA compile: the softfloat program takes tens
    of seconds to compile for a GPU machine's host); every word equals the
    softfloat program's (``_params_program``, what traced scalars get) for any
    float32 bit patterns: subnormal, huge, zero, Inf, NaN (canonical)."""
    assert PR._host_is_ieee()
    host = PR._host_params.__wrapped__(ss, gs, rounding, thresholds)
    f32 = lambda b: np.uint32(b).view(np.float32)
    cpu = jax.local_devices(backend="cpu")[0]     # the GPU backend compiles it for minutes
    soft = PR._params_program(*jax.device_put((f32(ss), f32(gs), np.int32(rounding)), cpu),
                              thresholds)
    assert host.dtype == np.int32 and not host.flags.writeable
    assert np.array_equal(host, np.asarray(soft))


def test_host_params_fallback_when_the_host_flushes(monkeypatch):
    """A host whose float32 arithmetic flushes subnormals (a library set FTZ/DAZ)
    gets the softfloat program evaluated eagerly on the host CPU: same vector."""
    args = (int(np.float32(4.0).view(np.uint32)), int(np.float32(2.0 ** -130).view(np.uint32)),
            0, True)
    ieee = PR._host_params.__wrapped__(*args)
    monkeypatch.setattr(PR, "_host_is_ieee", lambda: False)
    calls = []
    vector = PR._vector
    monkeypatch.setattr(PR, "_vector", lambda ar, *a: calls.append(ar) or vector(ar, *a))
    assert np.array_equal(PR._host_params.__wrapped__(*args), ieee)
    assert calls == [PR.TH.SOFT]


@pytest.mark.parametrize("kind,g,preset", [("shared", 16, "mxfp4"),       # g < G
                                           ("per_block", 64, "nvfp4"),    # g > G
                                           ("hadamard", 32, "nvfp4")])
def test_transform_fused(kind, g, preset):
    r = np.random.default_rng(7)
    x = (r.standard_normal((6, 128)) * 3).astype(F32)
    x[2, 5] = np.nan
    x[4, 70] = -np.inf
    T = {"shared": r.standard_normal((g, g)), "per_block": r.standard_normal((128 // g, g, g)),
         "hadamard": hadamard(g)}[kind].astype(F32)
    p = G.PRESETS[preset]
    codes, scales, y = quantize_fused(jnp.asarray(x), F32(p["scale_scale"]),
                                        F32(p["global_scale"]), jnp.asarray(T),
                                        group_size=p["group_size"], scale_dtype=p["scale_dtype"],
                                        rounding=0, return_transformed=True)
    y = np.asarray(y)
    ref_y = G.block_transform(x, T)
    fin = np.isfinite(ref_y)
    assert np.array_equal(fin, np.isfinite(y))                 # poisoned blocks agree
    np.testing.assert_allclose(y[fin], ref_y[fin], rtol=1e-5, atol=1e-5 * np.abs(ref_y[fin]).max())
    ref = G.quantize(y, **p)                                   # golden on the kernel's values
    assert np.array_equal(np.asarray(codes), ref["codes"])
    assert np.array_equal(np.asarray(scales), ref["scales"])
    check_fp4_transform(codes, scales, x, T, **p)              # end to end: golden's own transform
    t = fp4.quantize(x, preset, transform=T, implementation="pallas")   # API path: same kernel
    assert np.array_equal(np.asarray(t.codes), np.asarray(codes))
    if kind == "hadamard":      # orthogonal: rows kept 1.5 tolerances from every boundary
        xc = fp4_near_threshold_rows(T, 6, 128, seed=5, **p)
        tc = fp4.quantize(xc, preset, transform=T, implementation="pallas")
        assert check_fp4_transform(tc.codes, tc.scale_bytes, xc, T, **p) == (0, 0, 0)


def _ops(t):
    return (t.codes, t.scale_bytes, t.global_scale, t.scale_dtype)


@pytest.mark.parametrize("preset,dtype,rounding", [("mxfp4", jnp.bfloat16, "even"),
                                                   ("nvfp4", jnp.float32, "up"),
                                                   ("mxfp4", jnp.float16, "zero")])
def test_quantize_dequant_one_pass(preset, dtype, rounding):
    """``quantize_dequant`` (quantize and decode in one kernel) == ``decode_bf16`` of
    the quantize kernel's codes, bit for bit (NaN groups, -0, ties, saturation);
    ``linear_dequant`` == the dequant matmul schedule on those codes, bit for bit;
    ``fp4.quantized_matmul`` == ``matmul(quantize(x), w)`` (one pass on the GPU for
    N = 256, two calls elsewhere)."""
    r = np.random.default_rng(11)
    x = (r.standard_normal((256, 192)) * 3).astype(F32)
    x[1, :32] = np.nan
    x[2, 5], x[3] = -np.inf, -0.0
    x[4, :16] = np.arange(16) * 0.25                           # exact e2m1 ties (scale 1)
    x[5, :8] = [6e30, -1e-30, 0.0, 1e-40, -5.0, 5.0, 3.5, -2.5]
    xx = jnp.asarray(x, dtype)
    cfg = fp4.PRESETS[preset]
    kw = dict(group_size=cfg.group_size, scale_dtype=cfg.scale_dtype, rounding=rounding)
    args = (xx, F32(cfg.scale_scale), F32(cfg.global_scale))
    t = fp4.quantize(xx, preset, rounding=rounding, implementation="pallas")
    ref = SD.decode_bf16(t.codes, t.scale_bytes, t.scale_dtype, interpret=BK.interpret)
    got = quantize_dequant(*args, **kw)
    assert got.dtype == jnp.bfloat16 and got.shape == x.shape
    assert np.array_equal(np.asarray(got).view(np.uint16), np.asarray(ref).view(np.uint16))
    w = fp4.quantize(r.standard_normal((40, 192)).astype(F32), "mxfp4", global_scale=0.25)
    y = np.asarray(linear_dequant(*args, _ops(w), **kw))
    y_ref = np.asarray(matmul(_ops(t), _ops(w), tiling=T.DequantTiling()))
    assert np.isnan(y[1]).all() and np.array_equal(y.view(np.uint32), y_ref.view(np.uint32))
    y_api = np.asarray(fp4.quantized_matmul(xx, w, dataclasses.replace(cfg, rounding=rounding)))
    y_two = np.asarray(fp4.matmul(t, w))
    assert np.array_equal(y_api.view(np.uint32), y_two.view(np.uint32))


def _crafted_rows(r, n, K, dtype):
    """(n, K) activations of ``dtype`` with exact e2m1 ties (scale 1) in row 0, huge,
    tiny, zero and tie values and a -0 group in the last row, a NaN in row 1 (n > 1)."""
    x = (r.standard_normal((n, K)) * 3).astype(F32)
    x[0, :16] = np.arange(16) * 0.25
    x[-1, 32:40] = [6e30 if dtype != jnp.float16 else 6e4, -1e-30, 0.0, 1e-40, -5.0, 5.0,
                    3.5, -2.5]
    x[-1, 64:96] = -0.0
    if n > 1:
        x[1, 100] = np.nan
    return jnp.asarray(x, dtype)


@pytest.mark.parametrize("preset,dtype,n,tiling", [
    ("mxfp4", jnp.bfloat16, 1, T.GemvTiling(16, 64, split=2)),
    ("nvfp4", jnp.float32, 2, T.GemvTiling(32, 64)),                      # K loop, K padded
    ("mxfp4", jnp.float16, 3, T.GemvTiling(16, 128, split=3)),
    ("mxfp4", jnp.bfloat16, 1, T.Dp4aTiling(32, 256, split=2)),
    ("mxfp4", jnp.float32, 2, T.Dp4aTiling(64, 256, split=2)),
    ("nvfp4", jnp.float32, 2, T.Dp4aTiling(16, 64))])
def test_linear_gemv_one_pass(preset, dtype, n, tiling):
    """``linear_gemv`` (the activation quantized inside the gemv kernel) == the gemv
    schedule on ``quantize_fused``'s codes, bit for bit (NaN group -> NaN row, -0,
    ties, saturation, huge and tiny groups), and close to float64."""
    r = np.random.default_rng(21)
    K = 224
    xx = _crafted_rows(r, n, K, dtype)
    cfg = fp4.PRESETS[preset]
    kw = dict(group_size=cfg.group_size, scale_dtype=cfg.scale_dtype, rounding=0)
    w = fp4.quantize(r.standard_normal((48, K)).astype(F32), preset, global_scale=0.25)
    y = np.asarray(linear_gemv(xx, F32(cfg.scale_scale), F32(cfg.global_scale), _ops(w),
                                 tiling=tiling, **kw))
    t = fp4.quantize(xx, preset, implementation="pallas")
    y_ref = np.asarray(matmul(_ops(t), _ops(w), tiling=tiling))
    assert y.shape == (n, 48) and np.array_equal(y.view(np.uint32), y_ref.view(np.uint32))
    assert (n == 1) or np.isnan(y[1]).all()
    ok = [i for i in range(n) if i != 1]
    assert _ref_err(y[ok], fp4.quantize(xx[np.array(ok)], preset), w) < 1e-5
    other = fp4.quantize(r.standard_normal((48, K)).astype(F32),
                         "nvfp4" if preset == "mxfp4" else "mxfp4")
    with pytest.raises(ValueError, match="group size"):
        linear_gemv(xx, F32(cfg.scale_scale), F32(cfg.global_scale), _ops(other), **kw)


@pytest.mark.parametrize("ss,gs,tiling", [
    (4.0, 1 / 3, T.Dp4aTiling(16, 256, split=2)),
    (4.0, 0.1, T.GemvTiling(16, 512)),
    (4.0, float(F32(2 - 2 ** -23)), T.Dp4aTiling(16, 2048))])
def test_linear_gemv_thresholds(ss, gs, tiling, monkeypatch):
    """With concrete scalars and e8m0 scales ``linear_gemv`` quantizes the activation by the thresholds ``c_i`` (a multiply
    and comparisons, no division): on quotients next to every e2m1 midpoint it ==
    the same tiling on the codes of
    the division-only quantize kernel, bit for bit; with the per-element division
    poisoned it does not change, while traced scalars (division) do."""
    x, _ = _quotient_input(ss, gs, "e8m0", 32, exhaustive=False)
    x = np.concatenate([x, -x])                                  # (2, 2048)
    r = np.random.default_rng(23)
    w = fp4.quantize(r.standard_normal((32, x.shape[1])).astype(F32), "mxfp4")
    kw = dict(group_size=32, scale_dtype="e8m0", rounding=0)
    gemv = lambda v, a, b: linear_gemv(v, a, b, _ops(w), tiling=tiling, **kw)
    codes, scales = quantize_fused(jnp.asarray(x), F32(ss), F32(gs),
                                     tiling=QP.QuantTiling(thresholds=False), **kw)
    ref = G.quantize(x, scale_scale=ss, global_scale=gs, **kw | {"rounding": "even"})
    assert np.array_equal(np.asarray(codes), ref["codes"])
    assert np.array_equal(np.asarray(scales), ref["scales"])
    a = (codes, scales, np.float32(gs), "e8m0")
    want = np.asarray(matmul(a, _ops(w), tiling=tiling)).view(np.uint32)
    traced = jax.jit(gemv)
    y = np.asarray(gemv(jnp.asarray(x), F32(ss), F32(gs))).view(np.uint32)
    assert _golden_err(y.view(F32), ref, "e8m0", w) < 1e-5
    assert np.array_equal(y, want)
    assert np.array_equal(np.asarray(traced(jnp.asarray(x), F32(ss), F32(gs))).view(np.uint32),
                          want)
    div = KR.div
    monkeypatch.setattr(KR, "div", lambda a, b, i: div(a, b, i) if jnp.ndim(a) < 3 and
                        jnp.ndim(b) < 3 else jnp.full(jnp.shape(b), jnp.nan, F32))
    jax.clear_caches()
    assert np.array_equal(np.asarray(gemv(jnp.asarray(x), F32(ss), F32(gs))).view(np.uint32),
                          want)
    poisoned = np.asarray(jax.jit(gemv)(jnp.asarray(x), F32(ss), F32(gs))).view(np.uint32)
    assert not np.array_equal(poisoned, want)                           # the poison bites


@pytest.mark.parametrize("M,K", [(4096, 4096), (4096, 11008), (11008, 4096), (48, 16384),
                                 (4000, 4000), (40, 64), (2048, 1024)])
def test_decode_layout(M, K):
    """The N <= 2 default on the GPU (``heuristic.decode_layout``): MXFP4 by dp4a
    with one step per program, no K padding (no weight copy) whenever K has a
    power-of-two factor >= 256, steps of 256..4096, bm dividing M (or the 16-row
    floor), about 32 KB of weight per program; NVFP4 keeps the float gemv."""
    for n in (1, 2):
        schedule, t = H.choose(n, M, K, 32, 32, gpu=True)
        Kp = KR.padded_k(K, t.bk, t.split)
        assert schedule == "dp4a" and isinstance(t, T.Dp4aTiling) and Kp // t.split == t.bk
        assert (Kp == K) == ((K & -K) >= 256) and 256 <= t.bk <= 4096
        assert M % t.bm == 0 or t.bm == 16
        assert t.bm * t.bk <= 65536 and (t.bm == 64 or t.bm * t.bk == 65536 or M % (2 * t.bm))
        schedule, nv = H.choose(n, M, K, 16, 16, gpu=True)
        assert schedule == "gemv" and isinstance(nv, T.GemvTiling)


@pytest.mark.parametrize("N,M,K,Ga,Gw,gpu,want", [
    # (N, M, K, group sizes, gpu) -> the tiling: N <= 2 rows (equal groups, GPU),
    # N <= 16, N >= 256 (GPU), the rest; off the GPU never gemv / dp4a / dequant
    (1, 4096, 4096, 32, 32, True, T.Dp4aTiling(16, 4096, 8, 1, 1)),
    (2, 4096, 4096, 16, 16, True, T.GemvTiling(64, 256, 4, 3, 16)),
    (1, 4096, 4096, 32, 32, False, T.FusedTiling(16, 64, 256, 4, 3, 16, grouped=True)),
    (2, 4096, 4096, 32, 16, True, T.FusedTiling(16, 64, 256, 4, 3, 16, grouped=True)),
    (16, 4096, 4096, 16, 16, True, T.FusedTiling(16, 64, 256, 4, 3, 16, grouped=True)),
    (8, 64, 512, 32, 32, True, T.FusedTiling(16, 64, 256, 4, 3, 2, grouped=True)),
    (17, 4096, 4096, 32, 32, True, T.FusedTiling(64, 64, 128, 4, 3)),
    (64, 4096, 4096, 16, 32, True, T.FusedTiling(64, 64, 128, 4, 3)),
    (65, 4096, 4096, 32, 32, True, T.FusedTiling(256, 128, 128, 8, 3)),
    (255, 4096, 4096, 32, 32, True, T.FusedTiling(256, 128, 128, 8, 3)),
    (256, 4096, 4096, 32, 32, True, T.DequantTiling()),
    (4096, 4096, 4096, 16, 16, False, T.FusedTiling(64, 64, 128, 4, 3)),
    (300, 64, 512, 256, 32, False, T.FusedTiling(64, 64, 256, 4, 3))])
def test_heuristic_schedules(N, M, K, Ga, Gw, gpu, want):
    """``heuristic.choose``: the schedule by shape, named by the tiling's type."""
    schedule, t = H.choose(N, M, K, Ga, Gw, gpu=gpu)
    assert t == want and schedule == want.schedule


def test_decode_layout_runs_exact():
    """A ``decode_layout`` tiling with one 1024-element step per program (bm
    halved to M = 32): ``linear_gemv`` == the same tiling on ``quantize_fused``'s
    codes bit for bit, and close to float64."""
    r = np.random.default_rng(24)
    x = jnp.asarray(r.standard_normal((1, 1024)) * 2, jnp.bfloat16)
    w = fp4.quantize(r.standard_normal((32, 1024)).astype(F32), "mxfp4")
    t = H.decode_layout(1, 32, 1024, 32)
    assert (t.bm, t.bk, t.split, t.schedule) == (32, 1024, 1, "dp4a")
    cfg = fp4.MXFP4
    y = np.asarray(linear_gemv(x, F32(cfg.scale_scale), F32(cfg.global_scale), _ops(w),
                                 group_size=32, scale_dtype="e8m0", rounding=0, tiling=t))
    a = fp4.quantize(x, "mxfp4", implementation="pallas")
    y_ref = np.asarray(matmul(_ops(a), _ops(w), tiling=t))
    assert np.array_equal(y.view(np.uint32), y_ref.view(np.uint32))
    assert _ref_err(y, a, w) < 1e-5


def test_quantized_matmul_one_pass_keeps_concrete_scalars(monkeypatch):
    """``fp4.quantized_matmul``'s one-pass gemv schedule (taken on the GPU; here
    a GPU-targeting ``Backend`` with the kernels interpreted off it, passed to
    ``linear.api.quantized_matmul_on`` as the public function passes the
    resolved one) hands a concrete global scale and the config's rounding to
    ``linear_gemv`` as host values: the rounding is static and the codes come by
    thresholds; a traced global scale (e.g. a flax variable under jit) keeps the
    static rounding without thresholds. Both == the same tiling on
    ``quantize_fused``'s codes, bit for bit."""
    t = H.decode_layout(1, 32, 512, 32)
    on_gpu = Backend(name="pallas", interpret=BK.interpret, gpu=True)
    seen = []
    known = LG._known
    monkeypatch.setattr(LG, "_known", lambda *a: seen.append(known(*a)) or seen[-1])
    r = np.random.default_rng(25)
    x = jnp.asarray(r.standard_normal((1, 512)) * 2, jnp.bfloat16)
    w = fp4.quantize(r.standard_normal((32, 512)).astype(F32), "mxfp4")
    a = fp4.quantize(x, "mxfp4", implementation="pallas")
    ref = G.quantize(np.asarray(x.astype(jnp.float32)), **G.PRESETS["mxfp4"])
    assert np.array_equal(np.asarray(a.codes), ref["codes"])
    want = np.asarray(matmul(_ops(a), _ops(w), tiling=t)).view(np.uint32)
    assert _golden_err(want.view(F32), ref, "e8m0", w) < 1e-5

    def qmm(v, g=None):
        v, cfg, transform, gs = QA.quantize_args(v, "mxfp4", global_scale=g)
        assert LA.one_pass(v, w, cfg, transform, on_gpu, on_gpu) == "gemv"
        assert H.choose(1, 32, 512, 32, 32, gpu=True) == ("dp4a", t)
        return LA.quantized_matmul_on(v, w, cfg, transform, gs, on_gpu, on_gpu)

    y = qmm(x)
    assert seen[-1].rounding == 0 and len(seen[-1].c) == 7
    assert np.array_equal(np.asarray(y).view(np.uint32), want)
    gs = jnp.float32(fp4.MXFP4.global_scale)
    y = jax.jit(qmm)(x, gs)
    assert seen[-1] == PR.Known(0, ())
    assert np.array_equal(np.asarray(y).view(np.uint32), want)


@pytest.mark.parametrize("scale_dtype", ["e8m0", "e4m3"])
def test_small_traced_quantize_divides(scale_dtype, monkeypatch):
    """``quantize_fused`` without a tiling, traced scalars and fewer than
    ``SMALL_TRACED`` elements: no params are staged (division; the kernel forms
    ``ss * gs`` from its scalar operands), at or above it (the cutoff lowered
    here) the e8m0 thresholds are; concrete scalars always use them. Every
    variant's codes and scales == the default's bits."""
    asked = []
    params, scalars = PR.params, E.scalars
    monkeypatch.setattr(PR, "params", lambda *a, **k: asked.append(a[3]) or params(*a, **k))
    monkeypatch.setattr(E, "scalars", lambda *a: asked.append("kernel") or scalars(*a))
    r = np.random.default_rng(28)
    x = jnp.asarray(r.standard_normal((8, 256)) * 3, jnp.bfloat16)
    kw = dict(group_size=32, scale_dtype=scale_dtype, rounding=0)
    q = jax.jit(lambda v, g: quantize_fused(v, F32(4.0), g, **kw))
    outs = [q(x, F32(1 / 3))]
    monkeypatch.setattr(QP, "SMALL_TRACED", x.size)
    outs.append(jax.jit(lambda v, g: quantize_fused(v, F32(4.0), g, **kw))(x, F32(1 / 3)))
    outs.append(quantize_fused(x, F32(4.0), F32(1 / 3), **kw))
    e8m0 = scale_dtype == "e8m0"
    assert asked == ["kernel", True if e8m0 else "kernel", e8m0]
    ref = G.quantize(np.asarray(x.astype(jnp.float32)), scale_scale=4.0, global_scale=F32(1 / 3),
                     group_size=32, scale_dtype=scale_dtype)
    assert np.array_equal(np.asarray(outs[0][0]), ref["codes"])
    assert np.array_equal(np.asarray(outs[0][1]), ref["scales"])
    for o in outs[1:]:
        assert all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(o, outs[0]))


@pytest.mark.parametrize("preset", ["mxfp4", "nvfp4"])
def test_linear_gemv_rounding_modes(preset):
    """``linear_gemv`` with each rounding mode (a concrete index: static in the
    kernel; a traced one: read at run time) == the gemv schedule on the codes of
    ``fp4.quantize`` with that mode, bit for bit, on exact e2m1 ties."""
    r = np.random.default_rng(22)
    x = (r.standard_normal((2, 128)) * 3).astype(F32)
    cfg = dataclasses.replace(fp4.PRESETS[preset], global_scale=1.0)
    ties = [cfg.scale_scale, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]   # amax = ss: scale 1
    x[:, :8] = np.array(ties) * np.array([[1], [-1]])
    w = fp4.quantize(r.standard_normal((32, 128)).astype(F32), preset)
    tiling = T.GemvTiling(16, 64, split=2)
    outs = set()
    for i, mode in enumerate(G.ROUNDINGS):
        t = fp4.quantize(x, dataclasses.replace(cfg, rounding=mode), implementation="pallas")
        ref = G.quantize(x, group_size=cfg.group_size, scale_dtype=cfg.scale_dtype,
                         scale_scale=cfg.scale_scale, global_scale=1.0, rounding=mode)
        assert np.array_equal(np.asarray(t.codes), ref["codes"]), mode
        y_ref = np.asarray(matmul(_ops(t), _ops(w), tiling=tiling))
        assert _golden_err(y_ref, ref, cfg.scale_dtype, w) < 1e-5, mode
        kw = dict(group_size=cfg.group_size, scale_dtype=cfg.scale_dtype, tiling=tiling)
        y = np.asarray(linear_gemv(jnp.asarray(x), F32(cfg.scale_scale),
                                     F32(cfg.global_scale), _ops(w), rounding=i, **kw))
        y_traced = np.asarray(jax.jit(lambda v, m: linear_gemv(
            v, F32(cfg.scale_scale), F32(cfg.global_scale), _ops(w), rounding=m, **kw))(
            jnp.asarray(x), jnp.int32(i)))
        assert np.array_equal(y.view(np.uint32), y_ref.view(np.uint32)), mode
        assert np.array_equal(y_traced.view(np.uint32), y_ref.view(np.uint32)), mode
        outs.add(y.tobytes())
    assert len(outs) > 1                                  # the modes differ on these ties


def _golden_err(y, ref, scale_dtype, w):
    """Relative L2 error of ``y`` against golden's float64 product of golden's
    activation quantization ``ref`` (a ``golden.fp4.quantize`` dict) and ``w``."""
    r = G.matmul_reference(ref["codes"], ref["scales"], ref["global_scale"], np.asarray(w.codes),
                           np.asarray(w.scale_bytes), w.global_scale, scale_dtype_a=scale_dtype,
                           scale_dtype_w=w.scale_dtype)
    return np.linalg.norm(np.asarray(y, np.float64) - r) / np.linalg.norm(r)


def _ref_err(y, a, w):
    ref = G.matmul_reference(np.asarray(a.codes), np.asarray(a.scale_bytes), a.global_scale,
                             np.asarray(w.codes), np.asarray(w.scale_bytes), w.global_scale,
                             scale_dtype_a=a.scale_dtype, scale_dtype_w=w.scale_dtype)
    return np.linalg.norm(y - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize("a_shape,w_shape,cfg_a,cfg_w,scale", [
    ((1, 128), (48, 128), "mxfp4", "mxfp4", 1.0),          # decode rows: padded to 16
    ((16, 128), (40, 128), "mxfp4", "nvfp4", 1e10),
    ((2, 5, 96), (7, 96), "nvfp4", "mxfp4", 1e-10),         # batch dims, K padded
    ((70, 64), (20, 64), "mxfp4", "mxfp4", 1.0),            # several row tiles
])
def test_matmul_close_to_float64(a_shape, w_shape, cfg_a, cfg_w, scale):
    r = np.random.default_rng(8)
    xa = (r.standard_normal(a_shape) * scale).astype(F32)
    xw = r.standard_normal(w_shape).astype(F32)
    xw[:, 3] *= 30
    gs_a = float(np.abs(xa).max() / (6 * 448)) if cfg_a == "nvfp4" else None
    a, w = fp4.quantize(xa, cfg_a, global_scale=gs_a), fp4.quantize(xw, cfg_w)
    y = np.asarray(fp4.matmul(a, w, implementation="pallas"))
    assert y.dtype == np.float32 and y.shape == a_shape[:-1] + (w_shape[0],)
    assert _ref_err(y, a, w) < 1e-5
    y_xla = np.asarray(fp4.matmul(a, w, implementation="xla"))
    assert np.linalg.norm(y - y_xla) / np.linalg.norm(y_xla) < 1e-5


@pytest.mark.parametrize("n,preset", [(1, "mxfp4"), (8, "nvfp4"), (16, "nvfp4")])
def test_matmul_decode_rows(n, preset):
    r = np.random.default_rng(n)
    a = fp4.quantize(r.standard_normal((n, 256)).astype(F32), preset)
    w = fp4.quantize((r.standard_normal((64, 256)) * 1e-3).astype(F32), "mxfp4")
    y = np.asarray(fp4.matmul(a, w, implementation="pallas"))
    assert y.shape == (n, 64) and _ref_err(y, a, w) < 1e-5


def test_matmul_nan_scale_propagates():
    x = np.ones((16, 64), F32)
    x[3, 7] = np.nan
    a, w = fp4.quantize(x, "mxfp4"), fp4.quantize(np.ones((16, 64), F32), "nvfp4")
    y = np.asarray(fp4.matmul(a, w, implementation="pallas"))
    assert np.isnan(y[3]).all() and np.isfinite(np.delete(y, 3, axis=0)).all()


@pytest.mark.parametrize("preset,shape", [("mxfp4", (19, 96)), ("nvfp4", (3, 1088))])
def test_decode_bf16_exact(preset, shape):
    """The dequant schedule's decode kernel: bfloat16 ``v * s`` == the XLA
    dequantization with global scale 1 (exact), incl. NaN-scale groups and the
    extreme e8m0 bytes (subnormal products, Inf)."""
    r = np.random.default_rng(5)
    x = (r.standard_normal(shape) * 10.0 ** r.integers(-3, 4, shape)).astype(F32)
    x[1, :16] = np.nan
    t = fp4.quantize(x, preset)
    sb = np.asarray(t.scale_bytes).copy()
    if preset == "mxfp4":
        sb[0, :3] = [0, 1, 254]                                # 2^-127, 2^-126, 2^127
    y = np.asarray(SD.decode_bf16(t.codes, jnp.asarray(sb), t.scale_dtype,
                                  interpret=BK.interpret).astype(jnp.float32))
    ref = G.dequantize(np.asarray(t.codes), sb, scale_dtype=t.scale_dtype, global_scale=1.0)
    nan = np.isnan(ref)                                        # NaN payloads may differ
    bad = np.argwhere(np.isnan(y) != nan)[:4]
    assert nan[1, :16].all() and not len(bad), (bad, y[tuple(bad.T)], ref[tuple(bad.T)])
    assert np.array_equal(y[~nan].view(np.uint32), ref[~nan].astype(F32).view(np.uint32))


@pytest.mark.parametrize("tiling", [T.FusedTiling(16, 32, 128, split=4),
                                    T.FusedTiling(32, 16, 256, split=2),
                                    T.FusedTiling(16, 32, 128, split=2, grouped=True),
                                    T.FusedTiling(32, 16, 256, grouped=True),
                                    T.DequantTiling()])
def test_matmul_schedules(tiling):
    """split-K and dequant schedules: close to float64, NaN rows propagate."""
    r = np.random.default_rng(9)
    xa = r.standard_normal((20, 512)).astype(F32)
    xa[3, 100] = np.inf
    a = fp4.quantize(xa, "nvfp4", global_scale=0.01)
    w = fp4.quantize(r.standard_normal((40, 512)).astype(F32), "mxfp4", global_scale=0.5)
    y = np.asarray(matmul((a.codes, a.scale_bytes, a.global_scale, a.scale_dtype),
                            (w.codes, w.scale_bytes, w.global_scale, w.scale_dtype),
                            tiling=tiling))
    assert np.isnan(y[3]).all() and np.isfinite(np.delete(y, 3, axis=0)).all()
    keep = np.delete(np.arange(20), 3)
    ref = G.matmul_reference(np.asarray(a.codes), np.asarray(a.scale_bytes), a.global_scale,
                             np.asarray(w.codes), np.asarray(w.scale_bytes), w.global_scale,
                             scale_dtype_a="e4m3", scale_dtype_w="e8m0")
    err = np.linalg.norm(y[keep] - ref[keep]) / np.linalg.norm(ref[keep])
    assert err < 1e-5


@pytest.mark.parametrize("n,preset,tiling", [
    (1, "mxfp4", T.GemvTiling(16, 128)),
    (5, "nvfp4", T.GemvTiling(32, 64, split=2)),
    (16, "nvfp4", T.GemvTiling(16, 256, split=2)),
    (1, "mxfp4", T.Dp4aTiling(32, 256, split=2)),
    (5, "nvfp4", T.Dp4aTiling(16, 128))])
def test_matmul_gemv(n, preset, tiling):
    """The dot-free schedule for decode rows: close to float64, NaN rows propagate,
    mismatched group sizes refused."""
    r = np.random.default_rng(13)
    xa = r.standard_normal((n, 512)).astype(F32)
    xa[0, 7] = np.nan
    a = fp4.quantize(xa, preset, global_scale=0.5)
    w = fp4.quantize(r.standard_normal((40, 512)).astype(F32), preset)
    ops = lambda t: (t.codes, t.scale_bytes, t.global_scale, t.scale_dtype)
    y = np.asarray(matmul(ops(a), ops(w), tiling=tiling))
    assert y.shape == (n, 40) and np.isnan(y[0]).all()
    if n > 1:
        assert np.isfinite(y[1:]).all() and _ref_err(y[1:], fp4.quantize(xa[1:], preset,
                                                     global_scale=0.5), w) < 1e-5
    other = fp4.quantize(r.standard_normal((40, 512)).astype(F32),
                         "nvfp4" if preset == "mxfp4" else "mxfp4")
    with pytest.raises(ValueError, match=f"schedule '{tiling.schedule}'"):
        matmul(ops(a), ops(other), tiling=tiling)


def test_unsupported_configurations():
    x = np.ones((2, 48), F32)
    with pytest.raises(ValueError, match="group_size must be a power of two"):
        fp4.quantize(x, group_size=6, scale_dtype="e8m0", scale_scale=4.0,
                     implementation="pallas")
    with pytest.raises(ValueError, match="transform"):
        fp4.quantize(x, "nvfp4", transform=np.eye(12, dtype=F32), implementation="pallas")
    a = fp4.quantize(x, group_size=6, scale_dtype="e8m0", scale_scale=4.0)
    with pytest.raises(ValueError, match="group_size"):
        fp4.matmul(a, a, implementation="pallas")
    assert QP.unsupported(16) is None and MP.unsupported(32, 16) is None


def test_dp4a_group_dots_every_byte():
    """``schedules.dp4a.group_dots``: every weight byte (both nibbles) against every
    pair of e2m1 activation values (as int8 ``2 v_a``) == the float products of
    the golden decoder, times 4. The jnp form always; on the GPU the PTX block
    too, inside a kernel (4 bytes per register: one group row of 16 bytes)."""
    vals = np.arange(16, dtype=np.uint8)
    two_v = (2 * G.e2m1_decode(vals)).astype(np.int8)              # 16 activation values
    c = np.repeat(np.arange(256, dtype=np.uint8), 16).reshape(256, 1, 16)
    a_lo = np.broadcast_to(two_v, c.shape)
    a_hi = np.broadcast_to(two_v[::-1], c.shape)
    w_lo = G.e2m1_decode(c & 15).astype(np.float64)
    w_hi = G.e2m1_decode(c >> 4).astype(np.float64)
    want = (4 * (w_lo * a_lo / 2 + w_hi * a_hi / 2)).sum(axis=2).astype(np.int64)
    got = np.asarray(D.group_dots(jnp.asarray(c), jnp.asarray(a_lo), jnp.asarray(a_hi), asm=False))
    assert np.array_equal(got, want)
    if BK.interpret:
        return
    kernel = lambda c_ref, lo_ref, hi_ref, o_ref: o_ref.__setitem__(
        ..., D.group_dots(c_ref[...], lo_ref[...], hi_ref[...], asm=True))
    out = pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct((256, 1), jnp.int32))(
        jnp.asarray(c), jnp.asarray(a_lo), jnp.asarray(a_hi))
    assert np.array_equal(np.asarray(out), want)


@pytest.mark.parametrize("make,err,match", [
    (lambda: T.GemvTiling(24, 256), ValueError, "bm must be a power of two"),
    (lambda: T.FusedTiling(16, 24, 256), ValueError, "bm must be a power of two"),
    (lambda: T.Dp4aTiling(16, 256, split=0), ValueError, "split must be >= 1"),
    (lambda: T.GemvTiling(16, 256, stages=0), ValueError, "stages must be >= 1"),
    (lambda: T.FusedTiling(1.0, 16, 256), TypeError, "bn must be an int"),
    (lambda: T.FusedTiling(16, 16, 256, grouped=1), TypeError, "grouped must be a bool"),
    (lambda: T.DequantTiling(rows=3), ValueError, "rows must be a power of two"),
    (lambda: QP.QuantTiling(rows=3), ValueError, "rows must be a power of two"),
    (lambda: QP.QuantTiling(warps=0), ValueError, "warps must be a power of two"),
    (lambda: QP.QuantTiling(thresholds=1), TypeError, "thresholds must be a bool"),
])
def test_tilings_refuse_bad_fields(make, err, match):
    """A tiling that Triton cannot compile or with a field of the wrong type is
    refused where it is built, naming the field (not a failure inside a kernel
    or a flag silently ignored). The schedule is the tiling's type, so no
    flags can contradict each other."""
    with pytest.raises(err, match=match):
        make()


def test_matmul_refuses_other_tilings():
    """A tiling that names no schedule is refused (TypeError naming the tilings)."""
    a = fp4.quantize(np.ones((1, 256), F32), "mxfp4")
    with pytest.raises(TypeError, match="GemvTiling, Dp4aTiling, FusedTiling, DequantTiling"):
        matmul(_ops(a), _ops(a), tiling=QP.QuantTiling())
