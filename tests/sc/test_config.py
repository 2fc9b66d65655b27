"""SCConfig: reference shapes, dict round trip, hashing, stream dedupe."""
import jax
import numpy as np
import pytest

import golden
import scmp_jax
from scmp_jax.sc import SCConfig, as_config
from scmp_jax.sc.tables import Layout, enable_tables, layout, signed_table, side_streams
from tests.helpers import assert_same_bits

D, P = 24, 8


@pytest.mark.parametrize("ours,theirs", [
    (lambda: SCConfig.sobol_simple(), lambda: golden.configs.sobol_simple(D)),
    (lambda: SCConfig.sobol_antithetic(), lambda: golden.configs.sobol_antithetic(D)),
    (lambda: SCConfig.shared_lfsr(P, seed=77), lambda: golden.configs.shared_lfsr(D, P, seed=77)),
    (lambda: SCConfig.per_element_scramble(D, P, rng_seed=5),
     lambda: golden.configs.per_element_scramble(D, P, rng_seed=5)),
    (lambda: SCConfig.fully_independent(D, P, rng_seed=9),
     lambda: golden.configs.fully_independent(D, P, rng_seed=9)),
])
def test_golden_builders_match(ours, theirs):
    mine = ours().to_dict(D)
    ref = theirs()
    # same streams for every d, whatever the representation
    for side in ("q", "k"):
        for L, G, s in ((256, 256, "bitrev"), (100, 64, "random")):
            r_ref = golden.side_streams(ref, side, D, P, L, G, s)
            r_dict = golden.side_streams(mine, side, D, P, L, G, s)
            rows, sid = side_streams(ours(), side, D, P, L, G, s)
            assert np.array_equal(r_ref, r_dict)
            assert np.array_equal(r_ref, rows[sid])


def test_dict_round_trip_and_hash():
    d = golden.configs.per_element_scramble(D, P, rng_seed=3)
    c1, c2 = as_config(d), SCConfig.from_dict(d)
    assert c1 == c2 and hash(c1) == hash(c2)
    assert as_config(c1.to_dict(D)) == c1
    assert as_config(None) == SCConfig.sobol_simple()


def test_config_is_static_under_jit():
    """An SCConfig closed over by a jitted function: golden's bits (its own
    builder's config), and the eager call's."""
    cfg = SCConfig.shared_lfsr(6)
    a = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    f = jax.jit(lambda x: scmp_jax.sc_matmul(x, x, sc_prec=6, config=cfg))
    out = np.asarray(f(a))
    assert_same_bits(out, golden.sc_matmul(a, a, sc_prec=6,
                                           config=golden.configs.shared_lfsr(10, 6)))
    assert_same_bits(out, np.asarray(scmp_jax.sc_matmul(a, a, sc_prec=6, config=cfg)))


def test_tables_keyed_by_distinct_stream():
    # full length, default config: one stream per side for every d
    t = enable_tables(SCConfig.sobol_simple(), 4096, 8, 256, 256, "bitrev", 1 << 28)
    assert t.ktab.shape == (257,) and t.streams_b.shape == (1, 256)
    assert int(t.sid_b.max()) == 0
    # signed layout: rows of vp=512, the negated copy at 1 << 18 (>= 257 * 512)
    assert layout(1, 256, 256) == Layout(512, 257 * 512, 18, (1 << 18) + 257 * 512)
    assert t.table.shape == (layout(1, 256, 256).size,)
    # prefix: bitrev masks give at most 2**p distinct streams
    t = enable_tables(SCConfig.sobol_simple(), 4096, 8, 64, 256, "bitrev", 1 << 30)
    assert int(t.sid_b.max()) + 1 == 256
    assert t.table.shape == (layout(256, 64, 256).size,)


@pytest.mark.parametrize("S,L,G", [(1, 256, 256), (3, 64, 255), (256, 8, 7)])
def test_layout_decoders_invert_the_indices(S, L, G):
    """``Layout.row / level / neg`` recover what ``ro`` and ``co`` encode."""
    lay = layout(S, L, G)
    s, k, v = np.meshgrid(np.arange(S), np.arange(L + 1), np.arange(G + 1), indexing="ij")
    for neg in (0, 1):
        ro = s * lay.row_s + k * lay.vp | neg << lay.shift
        co = v | neg << lay.shift
        assert np.array_equal(lay.row(ro), s * (L + 1) + k)
        assert np.array_equal(lay.level(co), v)
        assert (lay.neg(ro) == neg).all() and (lay.neg(co) == neg).all()


def test_signed_table_values():
    """table[ro ^ co] is +cum / -cum by the XOR of the sign bits, cum by definition."""
    rb = np.array([[5, 0, 3, 7, 1, 6, 2, 4], [1, 2, 3, 4, 5, 6, 7, 0]], np.int32)
    G = 8
    lay = layout(2, 8, G)
    t = np.asarray(signed_table(rb, G))
    for s in range(2):
        for k in range(9):
            for v in range(G + 1):
                c = int(np.sum(rb[s, :k] < v))
                ro = s * lay.row_s + k * lay.vp
                assert t[ro ^ v] == c
                assert t[(ro | 1 << lay.shift) ^ v] == -c
                assert t[ro ^ (v | 1 << lay.shift)] == -c
                assert t[(ro | 1 << lay.shift) ^ (v | 1 << lay.shift)] == c


def test_table_cap_selects_chunked_path():
    t = enable_tables(SCConfig.sobol_simple(), 64, 8, 64, 256, "bitrev", 1000)
    assert t.table is None and t.streams_b.shape == (64, 64)


def test_config_errors():
    with pytest.raises(ValueError, match="config"):
        scmp_jax.sc_matmul(np.ones((2, 8), np.float32), np.ones((2, 8), np.float32),
                           config=golden.configs.sobol_simple(4))      # fewer entries than D
    with pytest.raises(ValueError, match="config"):
        as_config("sobol")
    with pytest.raises(ValueError, match="rng_id"):
        SCConfig.from_dict({"rng_pool": [{"type": "sobol"}],
                            "sng": {"q": [{"rng_id": 1}], "k": [{"rng_id": 0}]}})
    with pytest.raises(ValueError, match="non-zero"):
        as_config({"rng_pool": [{"type": "lfsr", "seed": 0, "taps": [7, 0]}],
                   "sng": {"q": [{"rng_id": 0}], "k": [{"rng_id": 0}]}})
