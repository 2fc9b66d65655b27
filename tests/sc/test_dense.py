"""counts="dense" (``sc.dense``: SC counts as an int8 matmul, cuBLAS on GPU) ==
golden, bit for bit, fed by the XLA and the Pallas quantization (interpret mode
off GPU; compiled on the GPU with ``pytest -m gpu``)."""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, example, given, settings

import scmp_jax
from tests.helpers import assert_same_bits, call_golden, call_jax, sc_cases
from scmp_jax._src.dispatch import Backend
from scmp_jax.quant import xla as QX
from scmp_jax.sc import api, dense, pallas_assemble

pytestmark = pytest.mark.gpu


def _dense_or_reject(a, b, kwargs, impl, **extra):
    try:
        return call_jax(a, b, kwargs, impl, counts="dense", **extra)
    except ValueError as e:
        if "counts='dense'" in str(e):
            assume(False)
        raise


# a GPU once doubled this case's correction in XLA's int8 GEMM (K = 9; docs/decisions.md)
_ODD_D = (np.array([[0.12573022, -0.13210486, 0.64042264], [0.10490011, -0.5356694, 0.36159506]],
                   np.float32),
          np.array([[0.00123015, 0.29874554, -0.27413785], [-0.89059186, -0.4546708, -0.9916465]],
                   np.float32),
          dict(granularity="per_tensor", mode="bipolar", sc_prec=3, stoc_len=None, chunk_d=0,
               group_a=1, group_b=1, rng_levels=None, config=None, halve_bipolar_stoc_len=False,
               smooth_scales=np.array([0.59259665, 1.197242, 3.455098], np.float32),
               scramble="bitrev"))


@pytest.mark.parametrize("impl", ["xla", "pallas"])
@settings(max_examples=20)
@given(sc_cases(max_rows=24, max_d=80))
@example(_ODD_D)
def test_golden_dense_counts_match_golden(impl, case):
    a, b, kwargs = case
    assert_same_bits(_dense_or_reject(a, b, kwargs, impl), call_golden(a, b, kwargs))


@settings(max_examples=6)
@given(sc_cases(max_rows=12, max_d=80))
def test_golden_dense_counts_chunked_match_golden(case):
    """Several d-chunks (small cap): the whole table or per-chunk device tables."""
    a, b, kwargs = case
    for cap in (0, 1 << 20):
        assert_same_bits(_dense_or_reject(a, b, kwargs, "pallas", table_cap_bytes=cap),
                         call_golden(a, b, kwargs))


@pytest.mark.parametrize("impl", ["xla", "pallas"])
@pytest.mark.parametrize("signs", ["++", "+-", "-+", "mixed"])
def test_golden_dense_saturated_counts(impl, signs):
    """Every element at the top level: k = L = 256 and bb = 256 > max r_b, so
    c = 256 (outside int8) for every product, the case the correction covers."""
    rng = np.random.default_rng(len(signs) + len(impl))
    N, M, D = 9, 7, 70
    sa = {"+": 1.0, "-": -1.0}
    a = np.full((N, D), sa.get(signs[0], 1.0), np.float32)
    b = np.full((M, D), sa.get(signs[-1], 1.0), np.float32)
    if signs == "mixed":
        a *= rng.choice([-1.0, 1.0], (N, D)).astype(np.float32)
        b *= rng.choice([-1.0, 1.0], (M, D)).astype(np.float32)
    for g in ("per_row", "per_tensor"):
        kw = dict(granularity=g)
        got = call_jax(a, b, kw, impl, counts="dense")
        assert_same_bits(got, call_golden(a, b, kw))
        assert np.abs(got).max() > 0


@pytest.mark.parametrize("mode", ["bipolar", "unipolar"])
def test_columns_cover_every_boundary(mode):
    """Every boundary in [1, G] that ``quant.xla.encode`` can produce has a column."""
    for p in range(2, 9):
        for G in sorted({1, 2, 3, 2 ** p // 3 + 1, 2 ** p - 1, 2 ** p}):
            q = QX.qmax(mode, p)
            lo = -(q + 1) if mode == "bipolar" else 0
            x = jnp.arange(lo, q + 1, dtype=jnp.float32)
            for gran in ("per_row", "per_head") if mode == "bipolar" else ("per_row",):
                sch = QX.Scheme(gran, mode, p, G)
                _, bnd, _ = QX.encode(x, jnp.float32(1), jnp.float32(0), sch)
                got = set(int(v) for v in np.asarray(bnd) if 0 < v <= G)
                assert got <= set(dense.columns(mode, p, G)), (p, G, gran)


def test_chunks_stay_under_the_cap():
    W = 128
    for H, N, M, D, cap in [(1, 2048, 4096, 4096, 256 << 20), (32, 1024, 1024, 128, 256 << 20),
                            (1, 50, 70, 1000, 1 << 20), (2, 8, 8, 5, 1 << 30)]:
        dc = dense.chunk_size(H, N, M, D, W, cap)
        assert dc >= 32 and dc & (dc - 1) == 0
        assert dc == 32 or H * (N + M) * dc * W <= dense.budget(cap)
        assert dc <= max(32, 2 * D)


def test_plan_stays_under_the_cap():
    """``dense.plan``: one matmul when everything fits, else chunks of whole heads
    when one head fits, else chunks of d; K = dc * Wb a multiple of 32."""
    Wb = 132
    seen = set()
    for H, N, M, D, cap in [(1, 2048, 4096, 4096, 256 << 20), (32, 1024, 1024, 128, 256 << 20),
                            (12, 100, 90, 77, 1 << 20), (7, 100, 90, 77, 1 << 20),
                            (3, 50, 70, 1000, 1 << 20), (2, 8, 8, 5, 1 << 30)]:
        hc, dc = dense.plan(H, N, M, D, Wb, cap)
        assert H % hc == 0 and dc % 8 == 0 and (dc * Wb) % 32 == 0
        if dc >= D:                                 # one matmul per chunk of heads
            assert dc < D + 8 and (hc == 1 or hc * (N + M) * dc * Wb <= dense.budget(cap))
            kind = "one" if hc == H else "heads"
            if kind == "heads":                     # the largest divisor that fits
                assert all(H % h or h * (N + M) * dc * Wb > dense.budget(cap) for h in range(hc + 1, H + 1))
        else:                                       # a head's whole D does not fit
            assert hc == H and (N + M) * -(-D // 8) * 8 * Wb > dense.budget(cap)
            assert dc == dense.chunk_size(H, N, M, D, Wb, cap)
            kind = "d"
        seen.add(kind)
    assert seen == {"one", "heads", "d"}
    assert dense.plan(32, 1024, 1024, 128, Wb, 256 << 20) == (16, 128)
    assert dense.plan(1, 2048, 4096, 4096, Wb, 256 << 20) == (1, 1024)


def _top_heavy(rng, shape):
    """float32 operands, signed, mostly at the row / tensor maximum (k = L: the
    correction columns count), some smaller, some 0."""
    mags = np.array([1.0, 1.0, 0.5, 0.3, 0.0], np.float32)
    return rng.choice(mags, shape) * rng.choice(np.array([-1.0, 1.0], np.float32), shape)


_PLANS = {"one": lambda H, N, M, D, Wb, cap: (H, -(-D // 8) * 8),
          "heads": lambda H, N, M, D, Wb, cap: (2, -(-D // 8) * 8),
          "heads1": lambda H, N, M, D, Wb, cap: (1, -(-D // 8) * 8),
          "d": lambda H, N, M, D, Wb, cap: (H, 32)}


@pytest.mark.parametrize("impl", ["xla", "pallas"])
@pytest.mark.parametrize("walk", sorted(_PLANS))
def test_dense_chunk_plans(walk, impl, monkeypatch):
    """Each walk of ``counts`` (one matmul; chunks of 2 heads or of 1, each over
    all of D; chunks of 32 d over all heads with the partial sums added) ==
    golden, on 3D operands with top levels (the correction columns): per_head,
    per_row, per_tensor, unipolar per_row (zero points and row sums in the
    float assembly, which the head walks run per chunk), each once more with a
    NaN in a row of a in head 3 and of b in head 0 and a -inf in a row of a in
    head 2 (per_row: NaN products only there; per_head: those heads NaN;
    per_tensor: all). Each walk also runs at N = 8, M = 16, D = 96, where the
    Pallas head walks assemble each chunk in place (``pallas_assemble.into``,
    spied on: it must run there, and only there)."""
    monkeypatch.setattr(dense, "plan", _PLANS[walk])
    calls = []
    real = pallas_assemble.into
    monkeypatch.setattr(pallas_assemble, "into", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(len(walk))
    for (N, M, D), kw in itertools.product([(5, 7, 70), (8, 16, 96)], (
            dict(granularity="per_head"), dict(granularity="per_row"),
            dict(granularity="per_tensor"),
            dict(granularity="per_row", mode="unipolar", sc_prec=6))):
        H = 4
        a, b = _top_heavy(rng, (H, N, D)), _top_heavy(rng, (H, M, D))
        an, bn = a.copy(), b.copy()
        an[3, 1, 5], an[2, 3, 4], bn[0, 6, 0] = np.nan, -np.inf, np.nan
        scmp_jax.clear_caches()                     # trace again under this plan
        got = call_jax(a, b, kw, impl, counts="dense")
        assert_same_bits(got, call_golden(a, b, kw))
        assert np.isfinite(got).all() and np.abs(got).max() > 0
        got = call_jax(an, bn, kw, impl, counts="dense")
        assert_same_bits(got, call_golden(an, bn, kw))
        nan = np.zeros(got.shape, bool)
        if kw["granularity"] == "per_row":
            nan[3, 1], nan[2, 3], nan[0, :, 6] = True, True, True
        else:
            nan[[0, 2, 3] if kw["granularity"] == "per_head" else slice(None)] = True
        np.testing.assert_array_equal(np.isnan(got), nan)
    assert bool(calls) == (impl == "pallas" and walk.startswith("heads"))
    scmp_jax.clear_caches()


def test_counts_argument_is_validated():
    a = np.ones((4, 8), np.float32)
    with pytest.raises(ValueError, match="counts"):
        scmp_jax.sc_matmul(a, a, counts="fast")
    with pytest.raises(ValueError, match="counts='dense'"):
        scmp_jax.sc_matmul(a, a, sc_prec=9, counts="dense")
    with pytest.raises(ValueError, match="counts='dense'"):
        scmp_jax.sc_matmul(a, a, mode="unipolar", counts="dense")        # 255 levels
    with pytest.raises(ValueError, match="counts='dense'"):
        scmp_jax.sc_matmul(a, a, row_stoc_len=np.full(4, 256), counts="dense")


def test_auto_counts_rule():
    """counts=None: dense for large outputs where it applies, on the GPU only
    (the resolved ``Backend.gpu``, both branches checked on any host)."""
    st = api.validate(np.ones((2, 2)), np.ones((2, 2)), "per_row", "bipolar", 8, None, 0, 1, 1,
                      None, False, None, "bitrev")
    big, small = (np.empty((2048, 8)), np.empty((4096, 8))), (np.empty((128, 8)),) * 2
    for gpu in (False, True):
        sg = dataclasses.replace(st, backend=Backend(name="pallas", interpret=not gpu, gpu=gpu))
        assert api.count_method(None, sg, *small, False) == "gather"
        assert api.count_method(None, sg, *big, False) == ("dense" if gpu else "gather")
        assert api.count_method(None, dataclasses.replace(sg, L=512), *big, False) == "gather"
        assert api.count_method("dense", sg, *small, False) == "dense"


@pytest.mark.parametrize("D", [1, 2, 3, 5, 11, 33, 40, 100])
@pytest.mark.parametrize("impl", ["xla", "pallas"])
def test_dense_any_d(D, impl):
    """Any inner size, in one chunk and in several (a 1 KB cap: chunks of 32 d),
    with most elements at the top level (k = L and c = 256: the correction
    columns count) == golden. The matmul's K is ``dc * (W + 4)``, a multiple of
    32: XLA's int8 GEMM has doubled sums at other K on a GPU (docs/decisions.md)."""
    rng = np.random.default_rng(D)
    a, b = _top_heavy(rng, (5, D)), _top_heavy(rng, (7, D))
    a[:, 0], b[:, 0] = 1.0, -1.0                       # every row has a top level
    for kw in (dict(granularity="per_row"), dict(granularity="per_tensor")):
        want = call_golden(a, b, kw)
        assert np.abs(want).max() > 0
        for cap in (256 << 20, 1 << 10):
            assert_same_bits(call_jax(a, b, kw, impl, counts="dense", table_cap_bytes=cap), want)


@pytest.mark.parametrize("impl", ["xla", "pallas"])
@pytest.mark.parametrize("walk", ["heads", "d"])
def test_dense_walks_keep_one_chunk_live(walk, impl):
    """The compiled program's temporary memory (XLA's buffer assignment) holds
    about one chunk of expanded operands, not all of them: 8 heads walked one
    per chunk (``lax.map``), or all heads in chunks of 32 d (``lax.scan``). A
    written-out head walk chained by optimization barriers kept all 8 chunks
    live on CPU (XLA drops the barriers), so it was not kept. The
    Pallas head walk (a ``fori_loop`` writing each chunk's floats in place,
    ``pallas_assemble``) too."""
    H, N, M, D, Wb = 8, 64, 64, 128, 132
    one = (N + M) * D * Wb                          # one head's whole D, expanded
    cap = one // 4 if walk == "heads" else one // 8          # budget: one, one / 2
    hc, dc = dense.plan(H, N, M, D, Wb, cap)
    assert (hc, dc) == ((1, D) if walk == "heads" else (H, 32))
    a, b = np.zeros((H, N, D), np.float32), np.zeros((H, M, D), np.float32)
    f = jax.jit(lambda x, y: scmp_jax.sc_matmul(x, y, "per_head", counts="dense",
                                                table_cap_bytes=cap, implementation=impl))
    temp = f.lower(a, b).compile().memory_analysis().temp_size_in_bytes
    assert temp < H * one / 2, (temp, H * one)
