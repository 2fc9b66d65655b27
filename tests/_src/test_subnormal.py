"""Subnormal policy (SPEC.md section 7.8): IEEE gradual underflow, golden's
NumPy results, on every path, although XLA's CPU backend (and Pallas in
interpret mode) flushes subnormals: sc_matmul with subnormal operands and
smooth scales (both implementations), quant.quantize, SmoothQuant, fp4 and
the mixed-precision classifiers."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import golden
import golden.mp as gmp
import scmp_jax
from golden import quant as GQ
from tests.helpers import (SCALE_KINDS, SUBNORMAL_KINDS, assert_same_bits, call_golden,
                     subnormal, subnormal_scales, subnormal_sc_cases, subnormal_values)
from scmp_jax import fp4, mp, quant
from scmp_jax._src import ieee

_N = settings.default.max_examples


def _sc(case, impl, soft=False):
    a, b, kw = case
    ref = call_golden(a, b, kw)
    kw = dict(kw)
    g = kw.pop("granularity")
    with ieee.soft_division(True if soft else None):
        out = np.asarray(scmp_jax.sc_matmul(a, b, g, implementation=impl, **kw))
    assert_same_bits(out, ref)


@pytest.mark.parametrize("impl", ["xla", pytest.param("pallas", marks=pytest.mark.gpu)])
def test_golden_subnormal_smooth_scale_stays_finite(impl):
    """One smooth scale of 1e-39 with inputs near 1e-3: finite like golden (the
    flushed scale made every output NaN)."""
    r = np.random.default_rng(0)
    a = (r.standard_normal((3, 8)) * 1e-3).astype(np.float32)
    b = (r.standard_normal((4, 8)) * 1e-3).astype(np.float32)
    s = np.ones(8, np.float32)
    s[2] = 1e-39
    for g, kw in [("per_row", {}), ("per_tensor", dict(mode="unipolar"))]:
        ref = golden.sc_matmul(a, b, g, smooth_scales=s, **kw)
        assert np.isfinite(ref).all()
        out = np.asarray(scmp_jax.sc_matmul(a, b, g, smooth_scales=s, implementation=impl, **kw))
        assert_same_bits(out, ref)


@settings(max_examples=max(2, _N // 2))
@given(subnormal_sc_cases(), st.booleans())
def test_golden_sc_matmul_subnormals_xla(case, soft):
    _sc(case, "xla", soft)


@pytest.mark.gpu
@settings(max_examples=max(1, _N // 8))
@given(subnormal_sc_cases(small=True))
def test_golden_sc_matmul_subnormals_pallas(case):
    _sc(case, "pallas")


@st.composite
def quant_cases(draw):
    gran = draw(st.sampled_from(["per_tensor", "per_row", "chunk", "per_head"]))
    mode = draw(st.sampled_from(["bipolar", "unipolar"])) if gran in ("per_tensor", "per_row") \
        else "bipolar"
    p = draw(st.sampled_from([2, 8, 11, 12]))
    R, D = draw(st.integers(1, 6)), draw(st.integers(1, 40))
    shape = (2, R, D) if gran == "per_head" else (R, D)
    x = subnormal_values(shape, draw(st.sampled_from(SUBNORMAL_KINDS)),
                         draw(st.integers(0, 2 ** 31 - 1)))
    return x, gran, mode, p, draw(st.integers(1, R + 1))


def _quant(case, impl):
    x, gran, mode, p, group = case
    kw = dict(sc_prec=p, implementation=impl)
    if gran == "chunk":
        out, ref = quant.quantize(x, "per_row", chunk=True, **kw), GQ.quantize_per_row_chunk(x, p, 2 ** p)
    elif gran == "per_row":
        out = quant.quantize(x, "per_row", mode=mode, group=group, **kw)
        ref = GQ.quantize_per_row(x, mode, p, 2 ** p, group)
    elif gran == "per_tensor":
        out, ref = quant.quantize(x, "per_tensor", mode=mode, **kw), GQ.quantize_per_tensor(x, mode, p, 2 ** p)
    else:
        out, ref = quant.quantize(x, "per_head", **kw), GQ.quantize_per_head(x, p, 2 ** p)
    assert_same_bits(np.asarray(out.scale), ref["scale"])
    assert_same_bits(np.asarray(out.x_int), ref["x_int"])
    assert np.array_equal(np.asarray(out.boundary), ref["boundary"])
    if mode == "unipolar":
        assert_same_bits(np.asarray(out.zp), ref["zp"])
        assert np.array_equal(np.asarray(out.rowsum), ref["rowsum"])
    else:
        assert np.array_equal(np.asarray(out.sign), ref["sign"])


@settings(max_examples=max(2, _N // 2))
@given(quant_cases())
def test_golden_quantize_subnormals_xla(case):
    _quant(case, "xla")


@pytest.mark.gpu
@settings(max_examples=max(1, _N // 8))
@given(quant_cases())
def test_golden_quantize_subnormals_pallas(case):
    _quant(case, "pallas")


@pytest.mark.parametrize("impl", ["xla", pytest.param("pallas", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("kind", SUBNORMAL_KINDS)
def test_golden_accumulate_act_scales_subnormals(kind, impl):
    x = [subnormal_values((3, 5, 24), kind, seed) for seed in range(3)]
    run = ref = None
    for xi in x:
        run = scmp_jax.accumulate_act_scales(xi, run, implementation=impl)
        ref = golden.accumulate_act_scales(xi, ref)
        assert_same_bits(np.asarray(run), ref)


@settings(max_examples=max(3, _N))
@given(st.sampled_from(SUBNORMAL_KINDS), st.sampled_from(SUBNORMAL_KINDS),
       st.sampled_from(SCALE_KINDS), st.sampled_from([0.0, 0.5, 1.0, 0.3]),
       st.integers(0, 2 ** 31 - 1))
def test_golden_smoothquant_subnormals(kind_a, kind_w, kind_s, alpha, seed):
    D = 24
    a = subnormal_values((5, D), kind_a, seed)
    w = subnormal_values((6, D), kind_w, seed + 1)
    s = subnormal_scales(D, kind_s, seed + 2)
    act = np.abs(subnormal_values((1, D), kind_a, seed + 3))[0]
    out = np.asarray(scmp_jax.compute_smooth_scales(act, w, alpha))
    ref = golden.compute_smooth_scales(act, w, alpha)
    if alpha in (0.0, 0.5, 1.0):
        assert_same_bits(out, ref)
    else:                               # pow: at most 4 ulp (SPEC.md section 8)
        assert np.abs(out.view(np.int32).astype(np.int64) - ref.view(np.int32)).max() <= 4
    sa, sw = scmp_jax.apply_smoothing(a, w, s)
    ga, gw = golden.apply_smoothing(a, w, s)
    assert_same_bits(np.asarray(sa), ga)
    assert_same_bits(np.asarray(sw), gw)
    assert_same_bits(np.asarray(scmp_jax.apply_smoothing_offline(w, s)),
                     golden.apply_smoothing_offline(w, s))


@pytest.mark.parametrize("impl", ["xla", pytest.param("pallas", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("cfg", ["mxfp4", "nvfp4"])
def test_golden_fp4_quantize_subnormals(cfg, impl):
    c = fp4.PRESETS[cfg]
    x = np.concatenate([subnormal_values((2, 64), k, i) for i, k in enumerate(SUBNORMAL_KINDS)])
    for gs in (None, 2.0 ** -100):
        g = np.float32(c.global_scale if gs is None else gs)
        t = fp4.quantize(x, cfg, global_scale=gs, implementation=impl)
        ref = golden.fp4.quantize(x, group_size=c.group_size, scale_dtype=c.scale_dtype,
                                  scale_scale=c.scale_scale, global_scale=g)
        assert np.array_equal(np.asarray(t.codes), ref["codes"])
        assert np.array_equal(np.asarray(t.scale_bytes), ref["scales"])
        assert_same_bits(np.asarray(t.dequantize()),
                         golden.fp4.dequantize(ref["codes"], ref["scales"],
                                               scale_dtype=c.scale_dtype, global_scale=g))


# ---- mixed-precision classifiers --------------------------------------------------------

def _levels(n):
    return tuple(2 ** (n - 1 - i) * 16 for i in range(n))


def _metric(r, n):
    """Subnormals of both signs, tiny normals, zeros: spans and differences in
    the subnormal range."""
    m = np.where(r.random(n) < 0.6, subnormal(r, (n,)),
                 (r.uniform(-8, 8, n) * np.float32(2.0 ** -126)).astype(np.float32))
    m[r.random(n) < 0.15] = 0.0
    return m.astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_golden_classifiers_subnormal_metrics(seed):
    r = np.random.default_rng(seed)
    n = 13
    m = _metric(r, n)
    x = subnormal_values((n, 7), SUBNORMAL_KINDS[seed % len(SUBNORMAL_KINDS)], seed)
    for kind in ("x_row_max", "attn_row_max"):
        got = np.asarray(mp.row_metric(x, kind))
        want = gmp.row_metric(x, kind)
        assert np.array_equal(got, want) and np.array_equal(got.view(np.int32) & 0x7FFFFFFF,
                                                           want.view(np.int32) & 0x7FFFFFFF)
    fr = (0.3, 0.3, 0.4)
    got = mp.classify_rows_by_metric(m, _levels(3), fr)
    assert np.asarray(got.row_levels).tolist() == gmp.classify_quantile(m, fr).tolist()
    # one large metric: a normal span, normalized metrics (m - min) / span in the
    # subnormal range, compared with subnormal thresholds and boundaries
    for big in (m, np.concatenate([m, np.float32([1.0])])):
        for ths in ((0.5, 3e-30, 2e-39), (0.7, 0.2)):
            cfg = mp.AdaptiveMPConfig(_levels(len(ths) + 1),
                                      operator_default_thresholds={"op": ths})
            got = mp.adaptive_classify_rows(big, cfg, "op")
            assert np.asarray(got.row_levels).tolist() == gmp.classify_thresholds(big, ths).tolist()
        b = [0.6, 2e-39, 0.1, 5e-40]
        cfg = mp.FreeBoundaryMPConfig(_levels(5)).with_boundaries("op", 1, b)
        got = mp.adaptive_classify_rows(big, cfg, "op", block_idx=1)
        assert np.asarray(got.row_levels).tolist() == gmp.classify_free_boundaries(big, b).tolist()
    w = subnormal_values((12, 5), "tiny", seed)
    cfg = mp.RangeMPConfig(_levels(3), base_threshold=0.5)
    got = mp.classify_groups_by_range(w, 2, cfg)
    assert np.asarray(got.row_levels).tolist() == gmp.classify_groups_by_range(w, 2, 3, 0.5).tolist()
