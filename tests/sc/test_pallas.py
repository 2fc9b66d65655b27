"""implementation="pallas" == golden, bit for bit (interpret mode off GPU; the
same tests run compiled on the GPU with ``pytest -m gpu``)."""
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import golden
import scmp_jax
from scmp_jax._src.platform import on_gpu
from tests.helpers import assert_same_bits, call_golden, call_jax, sc_cases
from scmp_jax.quant import xla as QX
from scmp_jax.sc import SCConfig, pallas_counts
from scmp_jax.sc.tables import enable_tables, layout
from scmp_jax.sc.counts import indices
from scmp_jax.sc.static import Static

pytestmark = pytest.mark.gpu


@settings(max_examples=20)
@given(sc_cases(max_rows=20, max_d=48))
def test_golden_pallas_matches_golden(case):
    a, b, kwargs = case
    assert_same_bits(call_jax(a, b, kwargs, "pallas", table_cap_bytes=1 << 28),
                     call_golden(a, b, kwargs))


@settings(max_examples=8)
@given(sc_cases(max_rows=12, max_d=40))
def test_golden_pallas_chunked_tables_match_golden(case):
    """Beyond the table cap the Pallas kernel runs per d-chunk on device-built tables."""
    a, b, kwargs = case
    assert_same_bits(call_jax(a, b, kwargs, "pallas", table_cap_bytes=0),
                     call_golden(a, b, kwargs))


@pytest.mark.parametrize("tile", [pallas_counts.Tiling(16, 16, 1, 4),
                                  pallas_counts.Tiling(32, 16, 4, 4, unroll=2),
                                  pallas_counts.Tiling(16, 64, 3, 4, unroll=4)])
def test_count_kernel_tilings_agree(tile):
    """Every tiling / split of the inner dim gives the XLA counts exactly."""
    rng = np.random.default_rng(tile.bn + tile.splits)
    H, D, N, M = 2, 37, 21, 19
    lay = layout(1, 16, 16)
    ro = rng.integers(0, 17, (H, D, N)) * lay.vp | rng.integers(0, 2, (H, D, N)) << lay.shift
    co = rng.integers(0, 17, (H, D, M)) | rng.integers(0, 2, (H, D, M)) << lay.shift
    table = enable_tables(SCConfig.sobol_simple(), D, 4, 16, 16, "bitrev", 1 << 20).table
    ro, co = jnp.asarray(ro, jnp.int32), jnp.asarray(co, jnp.int32)
    got = pallas_counts.accumulate(ro, co, table, interpret=not on_gpu(), tile=tile)
    t = np.asarray(table).astype(np.int64)
    ref = t[np.asarray(ro)[:, :, :, None] ^ np.asarray(co)[:, :, None, :]].sum(1)
    np.testing.assert_array_equal(np.asarray(got), ref)


def test_tiling_heuristic_fills_the_gpu():
    big = pallas_counts.tiling(1, 2048, 4096, 4096)
    assert (big.bn, big.bm, big.warps, big.splits) == (64, 64, 4, 1)
    small = pallas_counts.tiling(1, 128, 512, 1024)
    tiles = (128 // small.bn) * (512 // small.bm)
    assert tiles * small.splits >= 132 and 1024 // small.splits >= 64


@pytest.mark.parametrize("p,L,G,cfg", [(8, 256, 256, None), (8, 64, 256, None), (6, 64, 40, None),
                                       (4, 16, 16, "lfsr"), (12, 4096, 4096, None),
                                       (10, 100, 1024, None)])
def test_indices_in_range_at_extreme_boundaries(p, L, G, cfg):
    """Boundaries 0 and G with every sign combination index inside the table."""
    D = 8
    config = SCConfig.fully_independent(D, p) if cfg else SCConfig.sobol_simple()
    tabs = enable_tables(config, D, p, L, G, "bitrev", 1 << 30)
    st = Static("per_row", "bipolar", p, L, G, 0, 1, 1)
    lay = layout(tabs.streams_b.shape[0], L, G)
    x_int = jnp.repeat(jnp.asarray([[-1.0], [0.0], [1.0]], jnp.float32), D, axis=1)   # 3 x D
    q = QX.Quantized(x_int, jnp.where(x_int != 0, G, 0).astype(jnp.int32), None,
                     jnp.sign(x_int).astype(jnp.int32))
    ro, co = indices(q, q, tabs, lay, st)
    idx = np.asarray(ro)[0, :, :, None] ^ np.asarray(co)[0, :, None, :]
    assert idx.min() >= 0 and idx.max() < tabs.table.shape[0]
    # and the looked-up counts are the bit-level ones: c(k_table[G], G) = k = L at v = G = 2**p
    t = np.asarray(tabs.table)
    full = t[idx].reshape(-1)
    assert set(np.abs(full)) <= set(range(L + 1))


def test_extreme_operands_match_golden():
    """Rows at +-amax (boundary G) and zeros (boundary 0), both kernels vs golden."""
    a = np.array([[1, -1, 0, 1, -1, 0, 1, 1], [-3, 3, 3, -3, 0, 0, 3, -3]], np.float32)
    b = np.array([[2, 2, -2, 0, -2, 2, 0, 2], [0, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    for kw in [dict(), dict(sc_prec=4), dict(sc_prec=6, stoc_len=10, rng_levels=40),
               dict(mode="unipolar")]:
        ref = golden.sc_matmul(a, b, **kw)
        assert_same_bits(np.asarray(scmp_jax.sc_matmul(a, b, implementation="pallas", **kw)), ref)
