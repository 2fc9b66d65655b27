"""Every ValueError of SPEC.md section 7, in golden and in scmp_jax, naming the argument."""
import numpy as np
import pytest

import golden
import scmp_jax

A = np.ones((4, 8), np.float32)
B = np.ones((3, 8), np.float32)
A3 = np.ones((2, 4, 8), np.float32)
B3 = np.ones((2, 3, 8), np.float32)

CASES = [
    ((A, B), dict(granularity="per_col"), "granularity"),
    ((A, B), dict(mode="ternary"), "mode"),
    ((A, B), dict(scramble="zigzag"), "scramble"),
    ((A, B), dict(chunk_d=4, mode="unipolar"), "chunk_d"),
    ((A, B), dict(chunk_d=4, granularity="per_tensor"), "chunk_d"),
    ((A3, B3), dict(chunk_d=4), "chunk_d"),
    ((A, B), dict(chunk_d=-1), "chunk_d"),
    ((A, B), dict(granularity="per_head"), "per_head"),
    ((A3, B3), dict(granularity="per_head", mode="unipolar"), "per_head"),
    ((A, np.ones((3, 7), np.float32)), {}, "inner dim"),
    ((A3, np.ones((3, 3, 8), np.float32)), {}, "batch"),
    ((np.ones(8, np.float32), B), {}, "a must be 2D or 3D"),
    ((A, np.ones((1, 2, 3, 8), np.float32)), {}, "b must be 2D or 3D"),
    ((A3, B), {}, "same rank"),
    ((A, B), dict(sc_prec=1), "sc_prec"),
    ((A, B), dict(sc_prec=13), "sc_prec"),
    ((A, B), dict(sc_prec=8.0), "sc_prec"),
    ((A, B), dict(stoc_len=0), "stoc_len"),
    ((A, B), dict(sc_prec=4, stoc_len=17), "stoc_len"),
    ((A, B), dict(rng_levels=0), "rng_levels"),
    ((A, B), dict(sc_prec=4, rng_levels=17), "rng_levels"),
    ((A, B), dict(group_a=0), "group_a"),
    ((A, B), dict(group_b=0), "group_b"),
    ((A, B), dict(smooth_scales=np.ones(7, np.float32)), "smooth_scales"),
    ((A, B), dict(smooth_scales=np.ones((8, 1), np.float32)), "smooth_scales"),
    ((A.astype(np.int32), B), {}, "a must be a float"),
    ((A, B.astype(np.int8)), {}, "b must be a float"),
    ((np.ones((0, 8), np.float32), B), {}, "non-empty"),
]


@pytest.mark.parametrize("args,kwargs,match", CASES)
@pytest.mark.parametrize("impl", ["golden", "xla"], ids=["reference", "xla"])
def test_value_errors_name_the_argument(args, kwargs, match, impl):
    kw = dict(kwargs)
    g = kw.pop("granularity", "per_row")
    with pytest.raises(ValueError, match=match):
        if impl == "golden":
            golden.sc_matmul(*args, g, **kw)
        else:
            scmp_jax.sc_matmul(*args, g, implementation="xla", **kw)


def test_non_float_is_also_a_type_error():
    with pytest.raises(TypeError):
        scmp_jax.sc_matmul(A.astype(np.int32), B)


def test_named_implementation_that_cannot_run_raises():
    with pytest.raises(ValueError, match="implementation"):
        scmp_jax.sc_matmul(A, B, implementation="cuda")


def test_halve_fills_only_unset_values():
    a = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    halved = golden.sc_matmul(a, b, halve_bipolar_stoc_len=True, sc_prec=6)
    np.testing.assert_array_equal(halved, golden.sc_matmul(a, b, sc_prec=6, stoc_len=32,
                                                           rng_levels=32))
    kept = golden.sc_matmul(a, b, halve_bipolar_stoc_len=True, sc_prec=6, stoc_len=50)
    np.testing.assert_array_equal(kept, golden.sc_matmul(a, b, sc_prec=6, stoc_len=50,
                                                         rng_levels=32))
    uni = golden.sc_matmul(a, b, mode="unipolar", halve_bipolar_stoc_len=True, sc_prec=6)
    np.testing.assert_array_equal(uni, golden.sc_matmul(a, b, mode="unipolar", sc_prec=6))
    np.testing.assert_array_equal(
        np.asarray(scmp_jax.sc_matmul(a, b, halve_bipolar_stoc_len=True, sc_prec=6)), halved)
