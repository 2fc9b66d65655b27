"""SCConfig: reference shapes, dict round trip, hashing, stream dedupe."""
import jax
import numpy as np
import pytest

import golden
import scmp_jax
from scmp_jax.sc import SCConfig, as_config
from scmp_jax.sc.tables import enable_tables, side_streams

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
    cfg = SCConfig.shared_lfsr(6)
    a = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    f = jax.jit(lambda x: scmp_jax.sc_matmul(x, x, sc_prec=6, config=cfg))
    np.testing.assert_array_equal(f(a), scmp_jax.sc_matmul(a, a, sc_prec=6, config=cfg))


def test_tables_keyed_by_distinct_stream():
    # full length, default config: one stream per side for every d
    t = enable_tables(SCConfig.sobol_simple(), 4096, 8, 256, 256, "bitrev", 1 << 28)
    assert t.ktab.shape == (257,) and t.cum.shape == (257 * 257,)
    assert int(t.sid_b.max()) == 0
    # prefix: bitrev masks give at most 2**p distinct streams
    t = enable_tables(SCConfig.sobol_simple(), 4096, 8, 64, 256, "bitrev", 1 << 30)
    assert int(t.sid_b.max()) + 1 == 256
    assert t.cum.shape == (256 * 65 * 257,)


def test_table_cap_selects_stream_path():
    t = enable_tables(SCConfig.sobol_simple(), 64, 8, 64, 256, "bitrev", 1000)
    assert t.cum is None and t.streams_b.shape == (64, 64)


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
