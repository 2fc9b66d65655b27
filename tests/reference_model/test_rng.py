"""RNG sources: hand-derived values, LFSR periods, and golden == scmp_jax host RNGs."""
import ast
import pathlib
import random

import numpy as np
import pytest

import golden
from scmp_jax.sc import rng as R


def test_sobol_hand_derived_p3():
    # v = [4, 2, 1]; x0=0; n=0 (lsz 0) ^4 -> 4; n=1 (lsz 1) ^2 -> 6; n=2 (lsz 0) ^4 -> 2;
    # n=3 (lsz 2) ^1 -> 3; n=4 ^4 -> 7; n=5 ^2 -> 5; n=6 ^4 -> 1
    assert golden.sobol_sequence(3).tolist() == [0, 4, 6, 2, 3, 7, 5, 1]


def test_sobol_k_seed_p8_prefix():
    # v = [128, 64, 32, 16, 9*8=72, 4, 41*2=82, 255]
    seq = golden.sobol_sequence(8, side="k")
    assert seq[:8].tolist() == [0, 128, 192, 64, 96, 224, 160, 32]
    assert seq[16] == 16 ^ 72 ^ 0  # gray(16)=24 -> v3 ^ v4 = 16 ^ 72
    assert sorted(seq.tolist()) == list(range(256))   # a permutation at full length


def test_default_seeds():
    assert golden.sobol_default_seed(8, "k") == [1, 1, 1, 1, 9, 1, 41, 255]
    assert golden.sobol_default_seed(6, "k") == [1, 1, 1, 1, 9, 1]
    assert golden.sobol_default_seed(10, "k") == [1, 1, 1, 1, 9, 1, 41, 1, 1, 1]
    assert golden.sobol_default_seed(4, "q") == [1, 1, 1, 1]


def test_lfsr_hand_derived():
    # p=3, taps [2, 0], seed 1: fb = b2 ^ b0
    # 001 -> fb=1 -> 100 -> fb=1 -> 110 -> fb=1 -> 111 -> fb=0 -> 011 -> fb=1 -> 101 -> fb=0
    # -> 010 -> fb=0 -> 001
    assert golden.lfsr_sequence(3, 1, [2, 0], 8).tolist() == [1, 4, 6, 7, 3, 5, 2, 1]


@pytest.mark.parametrize("p", range(2, 11))
def test_lfsr_default_taps_have_full_period(p):
    taps = golden.default_lfsr_taps(p)
    seq = golden.lfsr_sequence(p, 1, taps, 2 ** p)
    assert len(set(seq[: 2 ** p - 1].tolist())) == 2 ** p - 1
    assert seq[2 ** p - 1] == 1              # period exactly 2**p - 1
    assert 0 not in seq.tolist()


@pytest.mark.parametrize("p", range(2, 11))
def test_golden_tap_search_matches_vectorized(p):
    assert golden.lfsr_tap_sets(p) == [list(t) for t in R.lfsr_tap_sets(p)]
    assert golden.default_lfsr_taps(p) == list(R.default_lfsr_taps(p))


@pytest.mark.parametrize("p", range(2, 13))
def test_golden_sobol_and_lfsr_match_vectorized(p):
    for side in ("q", "k"):
        assert np.array_equal(golden.sobol_sequence(p, side=side), R.sobol(p, R.sobol_seed(p, side)))
    for taps in R.lfsr_tap_sets(p)[:3]:
        for seed in (1, 2 ** p - 1, (2 ** p) // 3 or 1):
            assert np.array_equal(golden.lfsr_sequence(p, seed, taps), R.lfsr(p, seed, taps))


def test_true_random_is_python_random():
    gen = random.Random(42)
    assert golden.true_random_sequence(5, 42).tolist() == [gen.randint(0, 31) for _ in range(32)]


def test_rng_validation():
    with pytest.raises(ValueError, match="non-zero"):
        golden.lfsr_sequence(4, 0, [3, 0])
    with pytest.raises(ValueError, match="non-zero"):
        R.lfsr(4, 0, (3, 0))
    with pytest.raises(ValueError):
        golden.lfsr_sequence(4, 16, [3, 0])       # seed wider than the register
    with pytest.raises(ValueError):
        golden.sobol_sequence(4, [1, 2, 1, 1])    # even seed entry
    with pytest.raises(ValueError):
        R.sobol(4, (1, 1, 9, 1))                  # 9 >= 2**3


def test_imports_only_numpy_and_stdlib():
    import sys
    allowed = {"numpy", "__future__"} | set(sys.stdlib_module_names)
    for path in pathlib.Path(golden.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [node.module]
            else:
                continue
            for n in names:
                assert n.split(".")[0] in allowed, f"{path.name} imports {n}"
