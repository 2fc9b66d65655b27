"""int32 limits of the exact SC integers (SPEC.md section 4.3): the largest
allowed inner length runs and equals golden (int64), one more is a ValueError
naming the limit, never a wrapped-around result."""
import dataclasses

import jax
import numpy as np
import pytest

import golden
import scmp_jax
from golden import quant as GQ
from tests.helpers import assert_same_bits
from scmp_jax import quant
from scmp_jax._src.dispatch import Backend
from scmp_jax.sc import limits
from scmp_jax.sc.api import count_method, validate

I32_MAX = 2 ** 31 - 1


def _largest_d(mode, p, L, counts="gather"):
    """SPEC.md 4.3: D * L, D * max(128, L) (dense) and D * q (unipolar row sums)
    must all stay <= 2**31 - 1."""
    per = [L, max(128, L) if counts == "dense" else 0, 2 ** p - 1 if mode == "unipolar" else 0]
    return I32_MAX // max(per)


@pytest.mark.parametrize("mode,p,L,counts", [
    ("bipolar", 12, 4096, "gather"), ("bipolar", 12, 4095, "gather"), ("bipolar", 8, 256, "dense"),
    ("bipolar", 8, 100, "dense"), ("bipolar", 5, 7, "gather"), ("unipolar", 12, 4096, "gather"),
    ("unipolar", 12, 1, "gather"), ("unipolar", 7, 128, "dense"), ("unipolar", 3, 8, "gather")])
def test_static_check_at_exact_boundary(mode, p, L, counts):
    D = _largest_d(mode, p, L, counts)
    assert max(limits.bounds(mode=mode, p=p, L=L, D=D, counts=counts).values()) <= I32_MAX
    limits.check(mode=mode, p=p, L=L, D=D, counts=counts)
    with pytest.raises(ValueError, match=r"2\*\*31 - 1") as e:
        limits.check(mode=mode, p=p, L=L, D=D + 1, counts=counts)
    assert str(D) in str(e.value)          # the message names the largest allowed D


@pytest.mark.parametrize("L", [4096, 333])
def test_static_check_chunk_d_bounds_the_chunk(L):
    c = I32_MAX // L                       # the chunk length decides, not D
    limits.check(mode="bipolar", p=12, L=L, D=10 * c, chunk_d=c)
    limits.check(mode="bipolar", p=12, L=L, D=c, chunk_d=c + 5)     # min(chunk_d, D)
    with pytest.raises(ValueError, match="chunk_d"):
        limits.check(mode="bipolar", p=12, L=L, D=10 * c, chunk_d=c + 1)


def _shape(D, rows=1):
    return jax.ShapeDtypeStruct((rows, D), np.float32)


@pytest.mark.parametrize("D,kw", [
    (524289, dict(sc_prec=12)),                                     # wrapped to -524287 before
    (524288, dict(sc_prec=12)),
    (2 * 524288, dict(sc_prec=12, halve_bipolar_stoc_len=True)),    # L = 2048
    (I32_MAX // 200 + 1, dict(sc_prec=8, stoc_len=200, counts="dense")),
    (I32_MAX // 128 + 1, dict(sc_prec=8, stoc_len=3, counts="dense")),
    (524417, dict(sc_prec=12, mode="unipolar", stoc_len=1)),
    (I32_MAX // 4096 + 1, dict(sc_prec=12, chunk_d=I32_MAX // 4096 + 1)),
])
def test_sc_matmul_rejects_one_past_the_limit(D, kw):
    """Raised while tracing (shapes only: no operand is allocated)."""
    with pytest.raises(ValueError, match=r"2\*\*31 - 1"):
        jax.eval_shape(lambda a: scmp_jax.sc_matmul(a, a, "per_row", **kw), _shape(D))


def test_mixed_lengths_reject_one_past_the_limit():
    D = I32_MAX // 4096 + 1
    rl = np.full(1, 4096, np.int32)
    with pytest.raises(ValueError, match=r"2\*\*31 - 1"):
        jax.eval_shape(lambda a: scmp_jax.sc_matmul(a, a, "per_row", sc_prec=12,
                                                    row_stoc_len=rl), _shape(D))


def test_auto_counts_avoid_dense_past_its_limit():
    """Where only dense's partial sums would leave int32, auto mode counts by gather."""
    D = I32_MAX // 128 + 1                       # dense: D * 128 > 2**31 - 1; gather: D * 3 fits
    st = validate(_shape(D), _shape(D), "per_row", "bipolar", 8, 3, 0, 1, 1, None, False,
                  None, "bitrev")
    st = dataclasses.replace(st, backend=Backend(gpu=True))
    a = _shape(D, rows=2048)
    assert count_method(None, st, a, a, False) == "gather"
    assert count_method(None, st, _shape(64, 2048), _shape(64, 2048), False) == "dense"


# the largest unipolar D at sc_prec=12 (row sums D * 4095 <= 2**31 - 1), end to end:
# L = 1 and one quantization level keep the tables tiny
_ROWSUM = dict(sc_prec=12, mode="unipolar", stoc_len=1, rng_levels=1, scramble="off")


def _rowsum_operands(D):
    a = np.ones((2, D), np.float32)
    a[1, 1] = 1.5                 # every code still q = 4095: row sums D * 4095
    b = np.ones((1, D), np.float32)
    b[0, 2] = -3.0                # non-zero zero point: the row sums enter the correction
    return a, b


def test_golden_largest_unipolar_d_runs_and_equals_golden():
    D = _largest_d("unipolar", 12, 1)
    a, b = _rowsum_operands(D)
    out = np.asarray(scmp_jax.sc_matmul(a, b, "per_row", **_ROWSUM))
    assert_same_bits(out, golden.sc_matmul(a, b, "per_row", **_ROWSUM))
    with pytest.raises(ValueError, match="row sum"):
        a, b = _rowsum_operands(D + 1)
        scmp_jax.sc_matmul(a, b, "per_row", **_ROWSUM)


def test_golden_quantize_row_sums_at_the_limit():
    D = _largest_d("unipolar", 12, 1)
    x, _ = _rowsum_operands(D)
    q = quant.quantize(x, "per_row", mode="unipolar", sc_prec=12)
    ref = GQ.quantize_per_row(x, "unipolar", 12, 4096)
    assert ref["rowsum"].max() == D * 4095
    assert np.array_equal(np.asarray(q.rowsum), ref["rowsum"])
    with pytest.raises(ValueError, match="row sum"):
        quant.quantize(np.ones((1, D + 1), np.float32), "per_row", mode="unipolar", sc_prec=12)
