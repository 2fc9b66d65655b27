"""``jax.vmap`` over any leading (or inner) axis gives, slice by slice, golden's
bits: sc_matmul (every granularity, mode and option, mixed lengths, both
implementations), quant.quantize, SmoothQuant and fp4 (SPEC.md: the levels of
agreement hold under every transformation). Batching broadcasts an unbatched
divisor right before the division, where XLA would turn it into a reciprocal
product (``_src.ieee.div``)."""
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import golden
import scmp_jax
from golden import quant as GQ
from tests.helpers import assert_same_bits, make_values
from scmp_jax import fp4, quant
from scmp_jax._src import ieee

DISTS = ("normal", "outliers", "zero_rows", "positive", "negative", "ties", "uniform_int")
_N = settings.default.max_examples


def _stack(slices, axis):
    return np.stack(slices, axis=axis)


@st.composite
def vmap_cases(draw, small=False):
    """(batch size, a slices, b slices, smooth slices or None, which are batched,
    batch axes, kwargs) for one vmapped sc_matmul."""
    rank = draw(st.sampled_from([2, 3]))
    gran = draw(st.sampled_from(["per_tensor", "per_row", "per_head"] if rank == 3
                                else ["per_tensor", "per_row"]))
    mode = "bipolar" if gran == "per_head" else draw(st.sampled_from(["bipolar", "unipolar"]))
    p = draw(st.sampled_from([3, 5, 8]))
    B = 2 ** p
    nb = draw(st.integers(2, 3))
    N = draw(st.integers(1, 3 if small else 7))
    M = draw(st.integers(1, 3 if small else 6))
    D = draw(st.integers(1, 9 if small else 40))
    H = draw(st.integers(1, 2))
    chunk_d = 0
    if gran == "per_row" and mode == "bipolar" and rank == 2 and draw(st.booleans()):
        chunk_d = draw(st.integers(1, D + 1))
    kw = dict(granularity=gran, mode=mode, sc_prec=p, stoc_len=draw(st.integers(1, B)),
              rng_levels=draw(st.one_of(st.none(), st.integers(1, B))), chunk_d=chunk_d,
              group_a=draw(st.integers(1, N + 1)), group_b=draw(st.integers(1, M + 1)),
              scramble=draw(st.sampled_from(["bitrev", "counter", "off"])))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    shape = lambda R: (R, D) if rank == 2 else (H, R, D)
    dist = draw(st.sampled_from(DISTS))
    a = [make_values(shape(N), dist, seed + i) for i in range(nb)]
    b = [make_values(shape(M), draw(st.sampled_from(DISTS)), seed + 50 + i) for i in range(nb)]
    smooth = None
    if draw(st.booleans()):
        r = np.random.default_rng(seed + 99)
        smooth = [(r.random(D) * 4 + 0.25).astype(np.float32) for _ in range(nb)]
    batched = draw(st.sampled_from(["a", "b", "ab", "s", "as"] if smooth else ["a", "b", "ab"]))
    axes = {k: draw(st.integers(0, rank)) for k in "ab"}
    return nb, a, b, smooth, batched, axes, kw


def _check_sc(case, impl, soft=False):
    nb, a, b, smooth, batched, axes, kw = case
    kw = dict(kw)
    g = kw.pop("granularity")
    # unbatched operands are the first slice, for every i
    a = a if "a" in batched else [a[0]] * nb
    b = b if "b" in batched else [b[0]] * nb
    if smooth is not None and "s" not in batched:
        smooth = [smooth[0]] * nb
    args = (_stack(a, axes["a"]) if "a" in batched else a[0],
            _stack(b, axes["b"]) if "b" in batched else b[0],
            None if smooth is None else (_stack(smooth, 0) if "s" in batched else smooth[0]))
    in_axes = (axes["a"] if "a" in batched else None, axes["b"] if "b" in batched else None,
               0 if "s" in batched else None)
    fn = lambda x, y, s: scmp_jax.sc_matmul(x, y, g, smooth_scales=s, implementation=impl, **kw)
    with ieee.soft_division(True if soft else None):
        out = np.asarray(jax.vmap(fn, in_axes=in_axes)(*args))
    for i in range(nb):
        ref = golden.sc_matmul(a[i], b[i], g, smooth_scales=None if smooth is None else smooth[i],
                               **kw)
        assert_same_bits(out[i], ref)


@settings(max_examples=max(2, _N // 4))
@given(vmap_cases(), st.booleans())
def test_golden_vmap_sc_matmul_xla(case, soft):
    """XLA; ``soft``: the integer division of non-CPU backends, on the CPU."""
    _check_sc(case, "xla", soft)


@pytest.mark.gpu
@settings(max_examples=max(1, _N // 8))
@given(vmap_cases(small=True))
def test_golden_vmap_sc_matmul_pallas(case):
    """The Pallas kernels (interpret mode off the GPU), tiny shapes."""
    _check_sc(case, "pallas")


@pytest.mark.parametrize("impl", ["xla", pytest.param("pallas", marks=pytest.mark.gpu)])
def test_golden_vmap_sc_matmul_mixed_lengths(impl):
    r = np.random.default_rng(5)
    a = r.standard_normal((3, 4, 11)).astype(np.float32)
    b = r.standard_normal((3, 11)).astype(np.float32)
    rl = np.array([32, 9, 0, 17], np.int32)
    cl = np.array([32, 5, 9], np.int32)
    kw = dict(granularity="per_row", sc_prec=5, row_stoc_len=rl, col_stoc_len=cl)
    out = np.asarray(jax.vmap(lambda x: scmp_jax.sc_matmul(x, b, implementation=impl,
                                                           **kw))(a))
    for i in range(3):
        assert_same_bits(out[i], golden.sc_matmul_mixed(a[i], b, **kw))


def test_golden_vmap_issue_shape():
    """The (4, 6, 33) per_row case whose scales came out 1 ulp off under vmap."""
    r = np.random.default_rng(0)
    x = r.standard_normal((4, 6, 33)).astype(np.float32)
    b = r.standard_normal((5, 33)).astype(np.float32)
    out = np.asarray(jax.vmap(lambda v: scmp_jax.sc_matmul(v, b, "per_row", stoc_len=64))(x))
    for i in range(4):
        assert_same_bits(out[i], golden.sc_matmul(x[i], b, "per_row", stoc_len=64))


def test_golden_nested_vmap():
    """Two batch axes (vmap of vmap), unipolar per_row with smoothing."""
    r = np.random.default_rng(3)
    x = r.standard_normal((2, 3, 4, 17)).astype(np.float32)
    b = r.standard_normal((5, 17)).astype(np.float32)
    s = (r.random(17) * 3 + 0.2).astype(np.float32)
    kw = dict(mode="unipolar", sc_prec=6, stoc_len=40, smooth_scales=s)
    fn = jax.vmap(jax.vmap(lambda v: scmp_jax.sc_matmul(v, b, "per_row", **kw)))
    out = np.asarray(fn(x))
    for i in range(2):
        for j in range(3):
            assert_same_bits(out[i, j], golden.sc_matmul(x[i, j], b, "per_row", **kw))


@st.composite
def quant_cases(draw):
    gran = draw(st.sampled_from(["per_tensor", "per_row", "chunk", "per_head"]))
    mode = draw(st.sampled_from(["bipolar", "unipolar"])) if gran in ("per_tensor", "per_row") \
        else "bipolar"
    p = draw(st.sampled_from([4, 8, 12]))
    R, D = draw(st.integers(1, 6)), draw(st.integers(1, 40))
    shape = (2, R, D) if gran == "per_head" else (R, D)
    seed = draw(st.integers(0, 2 ** 31 - 1))
    dist = draw(st.sampled_from(DISTS))
    xs = [make_values(shape, dist, seed + i) for i in range(draw(st.integers(2, 4)))]
    return xs, gran, mode, p, draw(st.integers(1, R + 1))


def _check_quant(case, impl):
    xs, gran, mode, p, group = case
    kw = dict(sc_prec=p, implementation=impl)
    if gran == "chunk":
        fn, refs = (lambda x: quant.quantize(x, "per_row", chunk=True, **kw)), \
            [GQ.quantize_per_row_chunk(x, p, 2 ** p) for x in xs]
    elif gran == "per_row":
        fn, refs = (lambda x: quant.quantize(x, "per_row", mode=mode, group=group, **kw)), \
            [GQ.quantize_per_row(x, mode, p, 2 ** p, group) for x in xs]
    elif gran == "per_tensor":
        fn, refs = (lambda x: quant.quantize(x, "per_tensor", mode=mode, **kw)), \
            [GQ.quantize_per_tensor(x, mode, p, 2 ** p) for x in xs]
    else:
        fn, refs = (lambda x: quant.quantize(x, "per_head", **kw)), \
            [GQ.quantize_per_head(x, p, 2 ** p) for x in xs]
    out = jax.vmap(fn)(np.stack(xs))
    for i, ref in enumerate(refs):
        assert_same_bits(np.asarray(out.scale[i]), ref["scale"])
        assert_same_bits(np.asarray(out.x_int[i]), ref["x_int"])
        assert np.array_equal(np.asarray(out.boundary[i]), ref["boundary"])
        if mode == "unipolar":
            assert_same_bits(np.asarray(out.zp[i]), ref["zp"])
            assert np.array_equal(np.asarray(out.rowsum[i]), ref["rowsum"])


@settings(max_examples=max(2, _N // 4))
@given(quant_cases())
def test_golden_vmap_quantize_xla(case):
    _check_quant(case, "xla")


@pytest.mark.gpu
@settings(max_examples=max(1, _N // 8))
@given(quant_cases())
def test_golden_vmap_quantize_pallas(case):
    _check_quant(case, "pallas")


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_golden_vmap_smoothquant(alpha):
    r = np.random.default_rng(7)
    x = r.standard_normal((3, 5, 24)).astype(np.float32)
    w = r.standard_normal((6, 24)).astype(np.float32)
    s = (r.random(24) * 3 + 0.1).astype(np.float32)
    acts = np.abs(x).max(1) * 2
    scales = np.asarray(jax.vmap(lambda v: scmp_jax.compute_smooth_scales(v, w, alpha))(acts))
    run = np.asarray(jax.vmap(scmp_jax.accumulate_act_scales)(x))
    sm_a, sm_w = jax.vmap(lambda v: scmp_jax.apply_smoothing(v, w, s))(x)
    for i in range(3):
        assert_same_bits(scales[i], golden.compute_smooth_scales(acts[i], w, alpha))
        assert_same_bits(run[i], golden.accumulate_act_scales(x[i]))
        ga, gw = golden.apply_smoothing(x[i], w, s)
        assert_same_bits(np.asarray(sm_a[i]), ga)
        assert_same_bits(np.asarray(sm_w[i]), gw)


def _fp4_check(impl, cfg, gs, seed, K):
    r = np.random.default_rng(seed)
    xs = (r.standard_normal((3, 2, K)) * np.exp(r.standard_normal((3, 2, 1)) * 4)).astype(np.float32)
    w = jax.jit(lambda v: fp4.quantize(v, "mxfp4"))(r.standard_normal((5, K)).astype(np.float32))
    c = fp4.PRESETS[cfg]
    g = np.float32(c.global_scale if gs is None else gs)

    def one(x):
        t = fp4.quantize(x, cfg, global_scale=gs, implementation=impl)
        return t.codes, t.scale_bytes, t.dequantize(), fp4.matmul(t, w, implementation=impl)

    codes, scales, deq, y = (np.asarray(v) for v in jax.jit(jax.vmap(one))(xs))
    y2 = np.asarray(jax.jit(jax.vmap(lambda x: fp4.quantized_matmul(
        x, w, cfg, global_scale=gs, quant_implementation=impl,
        matmul_implementation=impl)))(xs))
    for i in range(3):
        ref = golden.fp4.quantize(xs[i], group_size=c.group_size, scale_dtype=c.scale_dtype,
                                  scale_scale=c.scale_scale, global_scale=g)
        assert np.array_equal(np.asarray(codes[i]), ref["codes"])
        assert np.array_equal(np.asarray(scales[i]), ref["scales"])
        assert_same_bits(deq[i], golden.fp4.dequantize(ref["codes"], ref["scales"],
                                                       scale_dtype=c.scale_dtype, global_scale=g))
        y64 = golden.fp4.matmul_reference(ref["codes"], ref["scales"], g, np.asarray(w.codes),
                                          np.asarray(w.scale_bytes), w.global_scale,
                                          scale_dtype_a=c.scale_dtype, scale_dtype_w="e8m0")
        for out in (y[i], y2[i]):
            assert np.linalg.norm(out - y64) / np.linalg.norm(y64) < 1e-5


@pytest.mark.parametrize("cfg,gs", [("mxfp4", None), ("nvfp4", None), ("nvfp4", 0.0123)])
def test_golden_vmap_fp4_xla(cfg, gs):
    _fp4_check("xla", cfg, gs, seed=11, K=64)


@pytest.mark.gpu
@pytest.mark.parametrize("cfg,gs", [("mxfp4", None), ("nvfp4", 0.0123)])
def test_golden_vmap_fp4_pallas(cfg, gs):
    _fp4_check("pallas", cfg, gs, seed=12, K=32)
