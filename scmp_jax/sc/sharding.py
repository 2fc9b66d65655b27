"""Sharded operands (``jax.sharding.NamedSharding``): the SC matmul per shard
under ``jax.shard_map``, output left distributed, same bits as unsharded.

Supported layouts (D, the inner dim, is never sharded):

* 2D: ``a (N, D)`` rows on mesh axes ``A``, ``b (M, D)`` rows on axes ``B``
  (``A``, ``B`` disjoint; either may be empty) -> out ``(N, M)`` on ``(A, B)``.
* 3D: batch on axes ``H`` (same for a and b), rows on ``A``/``B`` -> out
  ``(H, N, M)`` on ``(H, A, B)``.

What each granularity allows is its own (``Granularity.check_shards``,
``collective``): per_row (any mode, chunk_d) and per_head need no
communication (per_row row groups must not straddle shards; per_head needs
unsharded rows); per_tensor takes the global max/min with one collective per
operand (``pmax``). Both
implementations run per shard, so the Pallas kernels are never replicated.
Inside a user's ``jax.jit`` the tracers' shardings are used when the mesh has
explicit axes (``jax.make_mesh``'s default); with ``Auto`` axes they are not
visible: XLA's own partitioner then handles the XLA path (same bits) and would
replicate a Pallas call. Concrete operands committed elsewhere (e.g. ``b`` on
one device, smooth scales on another) are first copied to the planned
sharding (tables and smooth scales replicated).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

import jax
from jax.sharding import PartitionSpec as P

from .._src.sharding import axes, place, spec_of

__all__ = ["Plan", "plan", "run", "program"]


class Plan(NamedTuple):
    mesh: object
    spec_a: P
    spec_b: P
    out: P


def plan(a, b, st) -> Optional[Plan]:
    """The shard_map layout for sharded ``a``/``b``, or None (nothing sharded).
    ValueError for layouts that would need more than the per_tensor collective."""
    nd = len(a.shape)
    ma, sa = spec_of(a, nd)
    mb, sb = spec_of(b, nd)
    meshes = [m for m in (ma, mb) if m is not None and m.size > 1]
    if not meshes:
        return None
    mesh = meshes[0]
    if any(m != mesh for m in meshes):
        raise ValueError("a and b must be sharded over the same mesh")
    sa = sa if ma is not None and ma.size > 1 else (None,) * nd
    sb = sb if mb is not None and mb.size > 1 else (None,) * nd
    if sa[-1] is not None or sb[-1] is not None:
        raise ValueError("the inner dim D of a and b must not be sharded")
    if nd == 3 and sa[0] != sb[0]:
        raise ValueError(f"a and b must shard the batch dim alike, got {sa[0]!r} and {sb[0]!r}")
    ra, rb = axes(sa[-2]), axes(sb[-2])
    hb = axes(sa[0]) if nd == 3 else ()
    if set(ra) & set(rb) or (set(ra) | set(rb)) & set(hb):
        raise ValueError("a's rows, b's rows and the batch dim must be sharded over different "
                         "mesh axes (the output is sharded over all of them)")
    local = []
    for name, rows, row_axes, g in (("a", a.shape[-2], ra, st.group_a),
                                    ("b", b.shape[-2], rb, st.group_b)):
        n = 1
        for ax in row_axes:
            n *= mesh.shape[ax]
        if rows % n:
            raise ValueError(f"{name}: {rows} rows do not split evenly over {n} shards")
        local.append((name, bool(row_axes), rows // n, g))
    st.granularity.check_shards(local, chunk_d=st.chunk_d)
    out = P(*((sa[0],) if nd == 3 else ()), sa[-2], sb[-2])
    return Plan(mesh, P(*sa), P(*sb), out)


@functools.lru_cache(maxsize=64)
def program(fn, mesh, spec_a, spec_b, out, st, has_smooth):
    """One jitted shard_map program per layout and static config (cached: an
    eager shard_map would re-trace and re-compile on every call)."""
    def local(x, y, tabs, *s):
        return fn(x, y, s[0] if s else None, tabs, st)

    specs = (spec_a, spec_b, P()) + ((P(),) if has_smooth else ())
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=out,
                                 check_vma=False))


def run(fn, a, b, smooth, tabs, st, pl_: Plan):
    """``fn(a, b, smooth, tabs, st)`` per shard; a granularity whose scale is
    reduced across shards (per_tensor) reduces over each operand's sharded
    axes. Tables are replicated."""
    if st.granularity.collective:
        flat = lambda spec: tuple(ax for e in spec for ax in axes(e))
        st = dataclasses.replace(st, axes_a=flat(pl_.spec_a), axes_b=flat(pl_.spec_b))
    prog = program(fn, pl_.mesh, pl_.spec_a, pl_.spec_b, pl_.out, st, smooth is not None)
    m, rep = pl_.mesh, P()
    return prog(place(a, m, pl_.spec_a), place(b, m, pl_.spec_b),
                jax.tree.map(lambda t: place(t, m, rep), tabs),
                *(() if smooth is None else (place(smooth, m, rep),)))
