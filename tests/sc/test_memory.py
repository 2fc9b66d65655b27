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


def test_clear_caches_releases_compiled_programs():
    import gc

    def maps():
        try:
            with open("/proc/self/maps") as f:
                return sum(1 for _ in f)
        except OSError:
            pytest.skip("no /proc/self/maps on this OS")

    scmp_jax.clear_caches()
    base = maps()
    r = np.random.default_rng(0)
    for n in range(1, 9):
        a = r.standard_normal((n, 12)).astype(np.float32)
        scmp_jax.sc_matmul(a, a, stoc_len=n + 3).block_until_ready()
    grown = maps()
    scmp_jax.clear_caches()
    gc.collect()
    assert maps() < base + (grown - base) // 2
