"""Sharded operands: same bits as unsharded (== golden), output left distributed.

Runs on 4 host devices on CPU (conftest sets XLA_FLAGS); on the GPU machine
with as many GPUs as it has."""
import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.sharding import NamedSharding, PartitionSpec as P

import golden
import scmp_jax
from tests.helpers import DISTS, assert_same_bits, config_dict, make_values
from scmp_jax.sc import SCConfig, dense

pytestmark = pytest.mark.skipif(len(jax.devices()) < 2, reason="needs >= 2 devices")


def _mesh():
    n = len(jax.devices())
    return jax.make_mesh((2, n // 2), ("x", "y"))


LAYOUTS_2D = [(("x", None), ("y", None)), (("x", None), (None, None)),
              ((None, None), ("y", None)), ((("x", "y"), None), (None, None))]
LAYOUTS_3D = [(("x", None, None), ("x", None, None)), (("x", "y", None), ("x", None, None))]


def _lfsr_seed(p, seed):
    return 1 + seed % (2 ** p - 1)


# (SCConfig builder, golden.configs builder) of (D, p, seed): each side built by its own code
BUILDERS = {
    "antithetic": (lambda D, p, s: SCConfig.sobol_antithetic(),
                   lambda D, p, s: golden.configs.sobol_antithetic(D)),
    "shared_lfsr": (lambda D, p, s: SCConfig.shared_lfsr(p, seed=_lfsr_seed(p, s)),
                    lambda D, p, s: golden.configs.shared_lfsr(D, p, seed=_lfsr_seed(p, s))),
    "per_element_scramble": (
        lambda D, p, s: SCConfig.per_element_scramble(D, p, rng_seed=s, k_reverse_of_q=s % 2 == 0),
        lambda D, p, s: golden.configs.per_element_scramble(D, p, rng_seed=s,
                                                            k_reverse_of_q=s % 2 == 0)),
    "fully_independent": (lambda D, p, s: SCConfig.fully_independent(D, p, rng_seed=s),
                          lambda D, p, s: golden.configs.fully_independent(D, p, rng_seed=s)),
}


@st.composite
def cases(draw, dense_ok=False):
    """(a, b, layouts, jax kwargs, golden kwargs): stream length, RNG levels,
    scramble and config vary with the layout. ``dense_ok``: only settings
    counts="dense" takes (unipolar p = 8 has 255 columns per d, over its 128)."""
    rank = draw(st.sampled_from([2, 3]))
    lay_a, lay_b = draw(st.sampled_from(LAYOUTS_2D if rank == 2 else LAYOUTS_3D))
    gran = draw(st.sampled_from(["per_row", "per_tensor"] + (["per_head"] if rank == 3
                                                            and lay_a[1] is None else [])))
    mode = "bipolar" if gran == "per_head" else draw(st.sampled_from(["bipolar", "unipolar"]))
    n_dev = len(jax.devices())
    mult = n_dev if rank == 2 else max(1, n_dev // 2)
    N, M = mult * draw(st.integers(1, 4)), mult * draw(st.integers(1, 4))
    D = draw(st.integers(1, 40))
    H = 2 * draw(st.integers(1, 2)) if rank == 3 else None
    seed = draw(st.integers(0, 2 ** 31 - 1))
    sa = (N, D) if rank == 2 else (H, N, D)
    sb = (M, D) if rank == 2 else (H, M, D)
    a = make_values(sa, draw(st.sampled_from(DISTS)), seed)
    b = make_values(sb, draw(st.sampled_from(DISTS)), seed + 1)
    p = draw(st.sampled_from([4, 6] if dense_ok and mode == "unipolar" else [4, 6, 8]))
    B = 2 ** p
    kw = dict(granularity=gran, mode=mode, sc_prec=p,
              stoc_len=draw(st.one_of(st.none(), st.integers(1, B))),
              rng_levels=draw(st.one_of(st.none(), st.integers(1, B))),
              halve_bipolar_stoc_len=draw(st.booleans()),
              scramble=draw(st.sampled_from(["bitrev", "counter", "off", "random"])))
    if gran == "per_row" and rank == 2 and mode == "bipolar" and draw(st.booleans()):
        kw["chunk_d"] = draw(st.integers(1, D + 2))
    Dt = min(kw.get("chunk_d", D), D)                 # a per-d config covers one chunk
    kind = draw(st.sampled_from(sorted(BUILDERS) + ["default", "true_random", "sobol_custom",
                                                    "independent_lfsr"]))
    if kind in BUILDERS:
        jax_cfg, gold_cfg = (f(Dt, p, seed) for f in BUILDERS[kind])
    else:
        jax_cfg = gold_cfg = config_dict(kind, Dt, p, seed)
    return a, b, lay_a, lay_b, dict(kw, config=jax_cfg), dict(kw, config=gold_cfg)


def _check(case, impl, **extra):
    a, b, lay_a, lay_b, kw, gold_kw = case
    mesh = _mesh()
    A = jax.device_put(a, NamedSharding(mesh, P(*lay_a)))
    B = jax.device_put(b, NamedSharding(mesh, P(*lay_b)))
    out = scmp_jax.sc_matmul(A, B, implementation=impl, **kw, **extra)
    assert_same_bits(np.asarray(out), golden.sc_matmul(a, b, **gold_kw))
    # left distributed: the output is sharded like (batch, rows of a, rows of b)
    want = P(*((lay_a[0],) if a.ndim == 3 else ()), lay_a[-2], lay_b[-2])
    assert out.sharding.spec == want, (out.sharding.spec, want)
    assert len(out.sharding.device_set) == len(jax.devices())


@settings(max_examples=40)
@given(cases())
def test_golden_sharded_xla_matches_golden(case):
    _check(case, "xla")


@settings(max_examples=10)
@given(cases(dense_ok=True))
def test_golden_sharded_dense_counts_match_golden(case):
    """counts="dense" per shard (the int8 matmul on each device's rows)."""
    kw = case[-2]
    B = 2 ** kw["sc_prec"]
    assert dense.eligible(kw["mode"], kw["sc_prec"], B, B)
    _check(case, "xla", counts="dense")


@pytest.mark.gpu
@settings(max_examples=10)
@given(cases())
def test_golden_sharded_pallas_matches_golden(case):
    _check(case, "pallas")


def test_sharded_rejects_unsupported_layouts():
    mesh = _mesh()
    a = np.ones((8, 16), np.float32)
    with pytest.raises(ValueError, match="inner dim"):
        scmp_jax.sc_matmul(jax.device_put(a, NamedSharding(mesh, P(None, "x"))), a)
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    with pytest.raises(ValueError, match="different mesh axes"):
        scmp_jax.sc_matmul(A, A)
    with pytest.raises(ValueError, match="straddle"):
        scmp_jax.sc_matmul(A, a, group_a=3)
    a3 = np.ones((2, 8, 16), np.float32)
    A3 = jax.device_put(a3, NamedSharding(mesh, P("x", "y", None)))
    with pytest.raises(ValueError, match="per_head"):
        scmp_jax.sc_matmul(A3, jax.device_put(a3, NamedSharding(mesh, P("x", None, None))),
                           "per_head")


@pytest.mark.parametrize("gran", ["per_row", "per_tensor"])
@pytest.mark.parametrize("impl", ["xla", pytest.param("pallas", marks=pytest.mark.gpu)])
def test_sharded_inside_jit_with_explicit_mesh(gran, impl):
    """Under jit the tracers' (explicit) shardings route to the per-shard program."""
    mesh = _mesh()
    rng = np.random.default_rng(7)
    a = rng.standard_normal((8, 32)).astype(np.float32)
    b = rng.standard_normal((5, 32)).astype(np.float32)
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    out = jax.jit(lambda x: scmp_jax.sc_matmul(x, b, gran, implementation=impl))(A)
    assert_same_bits(np.asarray(out), golden.sc_matmul(a, b, granularity=gran))
    assert out.sharding.spec == P("x", None)


@pytest.mark.parametrize("impl", ["xla", pytest.param("pallas", marks=pytest.mark.gpu)])
def test_sharded_with_operands_committed_to_one_device(impl):
    """A row-sharded ``a`` next to ``b`` and smooth scales committed to single
    (different) devices: they are copied to the planned layout (jit would refuse
    the mix: "incompatible devices"), same bits as golden, output sharded as a."""
    mesh = _mesh()
    rng = np.random.default_rng(11)
    a = rng.standard_normal((8, 48)).astype(np.float32)
    b = rng.standard_normal((6, 48)).astype(np.float32)
    s = (np.abs(rng.standard_normal(48)) + 0.5).astype(np.float32)
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    B, S = jax.device_put(b, jax.devices()[1]), jax.device_put(s, jax.devices()[-1])
    assert B.committed and S.committed
    for kw in (dict(), dict(smooth_scales=S)):
        out = scmp_jax.sc_matmul(A, B, implementation=impl, **kw)
        ref = golden.sc_matmul(a, b, **({"smooth_scales": s} if kw else {}))
        assert_same_bits(np.asarray(out), ref)
        assert out.sharding.spec == P("x", None)
    # a committed to one device, b sharded: a follows b's mesh
    A1 = jax.device_put(a, jax.devices()[2])
    out = scmp_jax.sc_matmul(A1, jax.device_put(b, NamedSharding(mesh, P("y", None))),
                             implementation=impl)
    assert_same_bits(np.asarray(out), golden.sc_matmul(a, b))
    assert out.sharding.spec == P(None, "y")
