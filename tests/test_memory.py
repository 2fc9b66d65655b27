"""Memory bound: no (N, M, D)-sized intermediate anywhere in the traced program."""
import jax
import numpy as np
import pytest

import scmp_jax


def _sub_jaxprs(params):
    for val in params.values():
        for v in val if isinstance(val, (tuple, list)) else (val,):
            if hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):     # ClosedJaxpr
                yield v.jaxpr
            elif hasattr(v, "eqns"):                                 # Jaxpr
                yield v


def _max_intermediate(jaxpr) -> int:
    biggest = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            shape = getattr(v.aval, "shape", ())
            biggest = max(biggest, int(np.prod(shape)) if shape else 1)
        for sub in _sub_jaxprs(eqn.params):
            biggest = max(biggest, _max_intermediate(sub))
    return biggest


@pytest.mark.parametrize("cap", [256 << 20, 0])
def test_no_nmd_intermediate(cap):
    N, M, D = 96, 80, 4096
    a = np.zeros((N, D), np.float32)
    b = np.zeros((M, D), np.float32)
    jaxpr = jax.make_jaxpr(lambda x, y: scmp_jax.sc_matmul(x, y, stoc_len=64, table_cap_bytes=cap))(a, b)
    assert _max_intermediate(jaxpr.jaxpr) < N * M * D // 2
