"""Reading and placing ``NamedSharding`` layouts, shared by the sharded ops."""
from __future__ import annotations

import jax
from jax.sharding import NamedSharding

__all__ = ["axes", "spec_of", "sharded", "shards", "place"]


def axes(entry) -> tuple:
    """The mesh axes of one PartitionSpec entry, as a tuple."""
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def spec_of(x, ndim):
    """(mesh, spec) of a concrete array's sharding, or of a tracer's under
    explicit sharding (``jax.typeof(x).sharding``); (None, None) when unsharded."""
    try:
        sh = x.sharding if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) \
            else jax.typeof(x).sharding
    except Exception:          # numpy inputs, or a jax without typed shardings
        return None, None
    if not isinstance(sh, NamedSharding):
        return None, None
    spec = tuple(sh.spec) + (None,) * (ndim - len(sh.spec))
    if all(e is None for e in spec):
        return None, None
    return sh.mesh, spec


def sharded(x, ndim):
    """``spec_of`` for meshes of more than one device, else (None, None)."""
    m, s = spec_of(x, ndim)
    return (m, s) if m is not None and m.size > 1 else (None, None)


def shards(mesh, entry) -> int:
    """How many shards one PartitionSpec entry splits a dim into."""
    n = 1
    for ax in axes(entry):
        n *= mesh.shape[ax]
    return n


def place(x, mesh, spec):
    """A concrete array committed to other devices or another layout -> ``spec``
    on ``mesh`` (jit would refuse it); tracers and uncommitted arrays unchanged."""
    if (isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
            and getattr(x, "committed", False)):
        want = NamedSharding(mesh, spec)
        if not x.sharding.is_equivalent_to(want, x.ndim):
            return jax.device_put(x, want)
    return x
