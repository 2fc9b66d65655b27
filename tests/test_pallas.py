"""implementation="pallas" == golden, bit for bit (interpret mode off GPU)."""
import numpy as np
import pytest
from hypothesis import given, settings

import scmp_jax
from helpers import assert_same_bits, call_golden, call_jax, sc_cases


@settings(max_examples=20)
@given(sc_cases(max_rows=20, max_d=48))
def test_golden_pallas_matches_golden(case):
    a, b, kwargs = case
    assert_same_bits(call_jax(a, b, kwargs, "pallas", table_cap_bytes=1 << 28),
                     call_golden(a, b, kwargs))


def test_pallas_without_table_raises():
    a = np.ones((3, 8), np.float32)
    with pytest.raises(NotImplementedError, match="table_cap_bytes"):
        scmp_jax.sc_matmul(a, a, implementation="pallas", table_cap_bytes=0)
