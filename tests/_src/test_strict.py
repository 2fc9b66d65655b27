"""Strict arguments (SPEC.md section 7.6): flags are bools, ints are ints, one
float dtype policy shared by golden and scmp_jax, a ``simulate`` rule that
matches nothing warns, and bad numbers on the command lines are argparse
errors (exit status 2), not tracebacks."""
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import golden
import scmp_jax
from golden import errors as GE
from golden import mp as GMP
from tests.helpers import assert_same_bits
from scmp_jax import fp4, mp
from scmp_jax import quant as Q
from scmp_jax._src import errors as SE
from scmp_jax._src.dispatch import resolve
from scmp_jax.cli import main as cli_main
from scmp_jax.flax.intercept import Rule, simulate
from scmp_jax.fp4.quantize import pallas as QP

F32 = np.float32
A = np.random.default_rng(0).standard_normal((3, 8)).astype(F32)
B = np.random.default_rng(1).standard_normal((2, 8)).astype(F32)
LEN = np.array([4, 0, 2], np.int32)

# ---------------------------------------------------------------- flags are bools

FLAGS = {
    "halve_bipolar_stoc_len": [
        lambda v: scmp_jax.sc_matmul(A, B, sc_prec=3, halve_bipolar_stoc_len=v),
        lambda v: golden.sc_matmul(A, B, sc_prec=3, halve_bipolar_stoc_len=v),
        lambda v: golden.sc_matmul_bitlevel(A, B, sc_prec=3, halve_bipolar_stoc_len=v),
        lambda v: scmp_jax.sc_matmul(A, B, sc_prec=3, row_stoc_len=LEN,
                                     halve_bipolar_stoc_len=v),
        lambda v: golden.sc_matmul_mixed(A, B, LEN, sc_prec=3, halve_bipolar_stoc_len=v)],
    "chunk": [lambda v: Q.quantize(A, chunk=v)],
    "return_transformed": [lambda v: QP.quantize_fused(
        jnp.asarray(A[:, :4]), F32(4), F32(1), group_size=2, scale_dtype="e8m0",
        rounding=0, backend=resolve("pallas", op="test"), return_transformed=v)],
    "act_act": [lambda v: Rule(".*", None, act_act=v)],
    "enable_pruning": [lambda v: mp.AdaptiveMPConfig((8, 0), enable_pruning=v,
                                                     target_fractions=(0.5, 0.5)),
                       lambda v: mp.FreeBoundaryMPConfig((8, 4, 0), enable_pruning=v)],
    "enabled": [lambda v: mp.AutoMPBudgetLogger(enabled=v),
                lambda v: mp.MetricProfiler(enabled=v)],
    "clear": [lambda v: mp.AutoMPBudgetLogger().snapshot(clear=v),
              lambda v: mp.AutoMPBudgetLogger().totals(clear=v)],
}
FLAG_CASES = [(name, i) for name, fns in FLAGS.items() for i in range(len(fns))]


@pytest.mark.parametrize("name,i", FLAG_CASES)
@pytest.mark.parametrize("value", ["no", 1, 0, None])
def test_flags_must_be_bools(name, i, value):
    with pytest.raises(TypeError, match=f"{name} must be a bool"):
        FLAGS[name][i](value)


def test_bool_flags_still_work():
    """``False`` / ``True`` (NumPy's too) keep their meaning; golden agrees."""
    ref = golden.sc_matmul(A, B, sc_prec=4, halve_bipolar_stoc_len=True)
    assert_same_bits(ref, golden.sc_matmul(A, B, sc_prec=4, stoc_len=8, rng_levels=8))
    for v in (True, np.bool_(True)):
        assert_same_bits(scmp_jax.sc_matmul(A, B, sc_prec=4, halve_bipolar_stoc_len=v), ref)
    assert mp.AdaptiveMPConfig((8, 0), enable_pruning=np.bool_(False),
                               target_fractions=(1.0,)).stoc_len_levels == (8,)
    assert Rule(".*", None, act_act=np.bool_(True)).act_act is True


# ---------------------------------------------------------------- ints are ints

INTS = [
    ("timestep", lambda v: mp.adaptive_classify_rows(
        np.ones(4, F32), mp.AdaptiveMPConfig((8, 0), target_fractions=(0.5, 0.5)),
        timestep=v)),
    ("block_idx", lambda v: mp.adaptive_classify_rows(
        np.ones(4, F32), mp.FreeBoundaryMPConfig((8, 4, 0)), block_idx=v)),
    ("D", lambda v: mp.cycle_budget(LEN, N=None, M=2, D=v)),
    ("M", lambda v: mp.cycle_budget(LEN, M=v)),
    ("max_len", lambda v: mp.cycle_budget(LEN, M=2, max_len=v)),
    ("repeats", lambda v: scmp_jax.cli.demo(shapes=(), repeats=v)),
]


@pytest.mark.parametrize("name,fn", INTS, ids=[n for n, _ in INTS])
@pytest.mark.parametrize("value", [True, 2.0, "3"])
def test_ints_must_be_ints(name, fn, value):
    with pytest.raises(TypeError, match=f"{name} must be an int"):
        fn(value)


def test_int_bounds():
    with pytest.raises(ValueError, match="D must be >= 0"):
        mp.cycle_budget(LEN, M=2, D=-1)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        scmp_jax.cli.demo(shapes=(), repeats=0)


# ---------------------------------------------------------------- one float dtype policy

def test_float_policy_is_one_tuple():
    assert GE.FLOAT_DTYPES == SE.FLOAT_DTYPES == golden.FLOAT_DTYPES
    assert SE.FLOAT_DTYPES == ("float16", "bfloat16", "float32", "float64")


BAD_DTYPES = [jnp.float8_e4m3fn, jnp.float8_e5m2, jnp.float8_e8m0fnu, jnp.float4_e2m1fn,
              np.int32, np.uint8, np.bool_, np.complex64]
GOOD_DTYPES = [np.float16, jnp.bfloat16, np.float32, np.float64]


def _ones(shape, dtype):
    return np.ones(shape, dtype)


S8 = np.ones(8, F32)
W8 = np.ones((4, 8), F32)
CFG = mp.RangeMPConfig((8, 4))
# (argument, golden call, scmp_jax call): ``v`` replaces that argument
ENTRIES = [
    ("a", lambda v: golden.sc_matmul(v, B), lambda v: scmp_jax.sc_matmul(v, B)),
    ("b", lambda v: golden.sc_matmul_bitlevel(A, v), lambda v: scmp_jax.sc_matmul(A, v)),
    ("smooth_scales", lambda v: golden.sc_matmul(A, B, smooth_scales=v[0]),
     lambda v: scmp_jax.sc_matmul(A, B, smooth_scales=v[0])),
    ("a", lambda v: golden.sc_matmul_mixed(v, B, LEN),
     lambda v: scmp_jax.sc_matmul(v, B, row_stoc_len=LEN)),
    ("x", lambda v: golden.quant.quantize_per_row(v, "bipolar", 8, 256),
     lambda v: Q.quantize(v)),
    ("x", lambda v: golden.fp4.quantize(v, **{**golden.fp4.PRESETS["nvfp4"], "group_size": 8}),
     lambda v: fp4.quantize(v, "nvfp4", group_size=8)),
    ("x", lambda v: golden.fp4.block_transform(v, np.eye(4, dtype=F32)),
     lambda v: fp4.block_transform(v, np.eye(4, dtype=F32))),
    ("transform", lambda v: golden.fp4.block_transform(W8, v[:, :4]),
     lambda v: fp4.block_transform(W8, v[:, :4])),
    ("x", lambda v: golden.accumulate_act_scales(v), lambda v: scmp_jax.accumulate_act_scales(v)),
    ("running", lambda v: golden.accumulate_act_scales(W8, v[0]),
     lambda v: scmp_jax.accumulate_act_scales(W8, v[0])),
    ("act", lambda v: golden.compute_smooth_scales(v[0], W8),
     lambda v: scmp_jax.compute_smooth_scales(v[0], W8)),
    ("w", lambda v: golden.compute_smooth_scales(S8, v),
     lambda v: scmp_jax.compute_smooth_scales(S8, v)),
    ("a", lambda v: golden.apply_smoothing(v, W8, S8),
     lambda v: scmp_jax.apply_smoothing(v, W8, S8)),
    ("s", lambda v: golden.apply_smoothing(W8, W8, v[0]),
     lambda v: scmp_jax.apply_smoothing(W8, W8, v[0])),
    ("w", lambda v: golden.apply_smoothing_offline(v, S8),
     lambda v: scmp_jax.apply_smoothing_offline(v, S8)),
    ("weight", lambda v: GMP.classify_groups_by_range(v, 2, 2, 0.3),
     lambda v: mp.classify_groups_by_range(v, 2, CFG)),
]
# the scmp_jax name of the argument where it differs
JAX_NAME = {(11, "w"): "weight", (14, "w"): "weight", (10, "act"): "act_scales",
            (13, "s"): "smooth_scales"}


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("i", range(len(ENTRIES)))
def test_both_reject_the_same_dtypes(i, dtype):
    name, gold, jx = ENTRIES[i]
    v = _ones((4, 8), dtype)
    with pytest.raises(golden.InvalidDtypeError, match=f"{name} must be a float array"):
        gold(v)
    jname = JAX_NAME.get((i, name), name)
    with pytest.raises(SE.InvalidDtypeError, match=f"{jname} must be a float array"):
        jx(v)


@pytest.mark.parametrize("i", [4, 8, 12, 14])
def test_both_accept_the_float_dtypes(i):
    _, gold, jx = ENTRIES[i]
    for dtype in GOOD_DTYPES:
        gold(_ones((4, 8), dtype))
        jx(_ones((4, 8), dtype))


@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.float4_e2m1fn, np.bool_,
                                   np.complex64], ids=lambda d: np.dtype(d).name)
def test_metric_policy(dtype):
    """A metric may also be an int array (a count); other dtypes follow the policy."""
    v = _ones(4, dtype)
    cfg = mp.AdaptiveMPConfig((8, 0), target_fractions=(0.5, 0.5))
    for fn in (lambda m: GMP.classify_quantile(m, (0.5, 0.5)),
               lambda m: GMP.classify_thresholds(m, (0.5,)),
               lambda m: GMP.classify_free_boundaries(m, (0.5,))):
        with pytest.raises(golden.InvalidDtypeError, match="metric must be a float array"):
            fn(v)
    for fn in (lambda m: mp.classify_rows_by_metric(m, (8, 4)),
               lambda m: mp.adaptive_classify_rows(m, cfg)):
        with pytest.raises(SE.InvalidDtypeError, match="metric must be a float array"):
            fn(v)
    with pytest.raises(SE.InvalidDtypeError, match="x must be a float array"):
        mp.row_metric(_ones((2, 4), dtype))
    m = np.array([3, 1, 2, 0], np.int32)
    np.testing.assert_array_equal(np.asarray(mp.classify_rows_by_metric(m, (8, 4)).row_levels),
                                  GMP.classify_quantile(m, (0.5, 0.5)))


# ---------------------------------------------------------------- unmatched simulate rules

class _Two(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="fc2")(nn.Dense(4, name="fc1")(x))


def _run(rules):
    m = _Two()
    x = jnp.ones((2, 5), jnp.float32)
    v = m.init(jax.random.key(0), x)
    sim = simulate(m, rules)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        sim.apply(v, x)
        sim.apply(v, x)
    return [str(w.message) for w in rec if issubclass(w.category, UserWarning)], sim


def test_unmatched_rule_warns_once_per_call():
    msgs, sim = _run([Rule("fc1", None), Rule("fc9|nowhere", None),
                      Rule(".*", None, op_names=("einsum",))])
    assert len(msgs) == 2, msgs                        # one per call, naming both rules
    assert all("fc9|nowhere" in m and "'einsum'" in m and "rule 1" in m and "rule 2" in m
               for m in msgs), msgs
    assert "rule 0" not in msgs[0]
    assert [i for i, _ in sim.report.unused_rules] == [1, 2]


def test_all_rules_matched_no_warning():
    msgs, _ = _run([Rule("fc1", None), Rule("fc2", None)])
    assert msgs == []


# ---------------------------------------------------------------- command lines

CLI = [
    (["export-vectors", "--sc-prec", "1"], "--sc-prec"),
    (["export-vectors", "--sc-prec", "13"], "--sc-prec"),
    (["export-vectors", "--stoc-len", "0"], "--stoc-len"),
    (["export-vectors", "--sc-prec", "4", "--stoc-len", "17"], "--stoc-len"),
    (["export-vectors", "--rng-levels", "0"], "--rng-levels"),
    (["export-vectors", "--sc-prec", "4", "--rng-levels", "17"], "--rng-levels"),
    (["export-vectors", "-D", "0"], "-D/--dim"),
    (["export-vectors", "--rows", "-3"], "--rows"),
    (["export-vectors", "--cols", "0"], "--cols"),
    (["export-vectors", "--seed", "-1"], "--seed"),
    (["export-vectors", "--rows", "x"], "--rows"),
    (["demo", "--sc-prec", "1"], "--sc-prec"),
    (["demo", "--repeats", "0"], "--repeats"),
    (["demo", "--stoc-lens", "64", "0"], "--stoc-lens"),
    (["demo", "--sc-prec", "5", "--stoc-lens", "33"], "--stoc-lens"),
    (["profile", "--rows", "0"], "--rows"),
    (["profile", "--seed", "-2"], "--seed"),
    (["profile", "--sc-prec", "13"], "--sc-prec"),
    (["profile", "--chunk-d", "-1"], "--chunk-d"),
    (["profile", "--stoc-lens", "0"], "--stoc-lens"),
    (["profile", "--sc-prec", "4"], "--stoc-lens"),          # default lengths up to 256
    (["bench", "--repeats", "0"], "--repeats"),
]


def _exit(fn, argv, capsys):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    err = capsys.readouterr().err
    return e.value.code, err


@pytest.mark.parametrize("argv,opt", CLI, ids=[" ".join(a) for a, _ in CLI])
def test_cli_bad_numbers_are_argparse_errors(argv, opt, capsys):
    code, err = _exit(cli_main, argv, capsys)
    assert code == 2
    assert f"error: argument {opt}" in err and "Traceback" not in err, err


BENCH = ["bench.__main__", "bench.fp4", "bench.fp4_probe", "bench.mixed", "bench.scaling",
         "bench.sc_probe", "bench.tune"]


@pytest.mark.parametrize("module", BENCH)
@pytest.mark.parametrize("repeats", ["0", "-1"])
def test_bench_repeats_at_least_one(module, repeats, capsys):
    mod = __import__(module, fromlist=["main"])
    code, err = _exit(mod.main, ["--repeats", repeats], capsys)
    assert code == 2 and "error: argument --repeats: must be an int >= 1" in err, err
