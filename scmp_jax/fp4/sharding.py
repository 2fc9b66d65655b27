"""Sharded fp4 operands (``jax.sharding.NamedSharding``): quantize and matmul per
shard under ``jax.shard_map``, outputs left distributed, same bits as unsharded.

* ``quantize``: ``x (..., K)`` sharded on any dims. No communication (the
  global scale is an input). K may be sharded when each shard holds whole
  groups and, with a shared ``(g, g)`` transform, whole transform blocks; a
  per-block ``(K/g, g, g)`` transform needs K unsharded. ``codes`` and
  ``scales`` keep ``x``'s sharding.
* ``matmul``: ``a (..., N, K)`` sharded on its leading / row dims, ``w (M, K)``
  on its rows (mesh axes disjoint from a's), K unsharded -> out ``(..., N, M)``
  sharded as ``(a's leading and row axes, w's row axes)``. No communication.
  Each shard runs the Pallas kernel with the tiling chosen for the GLOBAL shape
  (the same K split and tile order, so the same float32 accumulation); the
  decode+GEMM schedule (N >= 256 on GPU) calls XLA's dense dot per shard, whose
  algorithm cuBLAS may pick per shape.
* ``weight_only``: float ``x (..., N, K)`` times fp4 ``w (M, K)``, laid out as
  ``matmul`` (``x`` in place of ``a``'s codes). No communication.

Concrete arrays and, inside a user's jit, tracers under explicit-axis meshes
are recognised (as in ``scmp_jax.sc.sharding``); replicated or unsharded
inputs take the ordinary path. Concrete operands committed elsewhere (e.g.
weights on one device) are first copied to the planned sharding.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
from jax.sharding import PartitionSpec as P

from .._src.sharding import axes, place, sharded, shards

__all__ = ["Plan", "plan_quantize", "plan_matmul", "quantize", "matmul", "weight_only"]


class Plan(NamedTuple):
    mesh: object
    specs: tuple          # one PartitionSpec per operand
    out: object           # PartitionSpec, or a tuple of them


def plan_quantize(x, group_size: int, transform_shape=None) -> Optional[Plan]:
    """Layout for a sharded ``x``, or None. ValueError for K splits that cut groups
    or transform blocks."""
    nd = len(x.shape)
    mesh, spec = sharded(x, nd)
    if mesh is None:
        return None
    n = shards(mesh, spec[-1])
    if n > 1:
        K = x.shape[-1]
        if K % n or (K // n) % group_size:
            raise ValueError(f"x: K={K} sharded {n} ways must give each shard whole groups "
                             f"of group_size={group_size}")
        if transform_shape is not None and len(transform_shape) == 3:
            raise ValueError("transform: a per-block (K/g, g, g) transform needs x's last "
                             "axis K unsharded")
        if transform_shape is not None and (K // n) % transform_shape[-1]:
            raise ValueError(f"transform: x's K={K} sharded {n} ways must give each shard "
                             f"whole transform blocks of g={transform_shape[-1]}")
    for d, e in enumerate(spec[:-1]):
        if x.shape[d] % shards(mesh, e):
            raise ValueError(f"x: dim {d} of size {x.shape[d]} does not split evenly over "
                             f"{shards(mesh, e)} shards")
    return Plan(mesh, (P(*spec),), (P(*spec), P(*spec)))


def plan_matmul(a_codes, w_codes, names=("a", "w")) -> Optional[Plan]:
    """Layout for sharded activation codes (..., N, K/2) (or float activations
    (..., N, K)) / weight codes (M, K/2), or None; errors name the operands ``names``."""
    nd = len(a_codes.shape)
    ma, sa = sharded(a_codes, nd)
    mw, sw = sharded(w_codes, 2)
    meshes = [m for m in (ma, mw) if m is not None]
    if not meshes:
        return None
    mesh = meshes[0]
    if any(m != mesh for m in meshes):
        raise ValueError(f"{names[0]} and {names[1]} must be sharded over the same mesh")
    sa = sa or (None,) * nd
    sw = sw or (None, None)
    for name, s in zip(names, (sa, sw)):
        if s[-1] is not None:
            raise ValueError(f"{name}: the inner dim K must not be sharded (got "
                             f"{P(*s)}); shard rows or leading dims")
    used = [ax for e in sa[:-1] for ax in axes(e)]
    if set(used) & set(axes(sw[0])) or len(set(used)) != len(used):
        raise ValueError(f"{names[0]}'s dims and {names[1]}'s rows must be sharded over "
                         "different mesh axes (the output is sharded over all of them)")
    for name, shape, spec in zip(names, (a_codes.shape, w_codes.shape), (sa, sw)):
        for d, e in enumerate(spec[:-1]):
            if shape[d] % shards(mesh, e):
                raise ValueError(f"{name}: dim {d} of size {shape[d]} does not split evenly "
                                 f"over {shards(mesh, e)} shards")
    # scales (..., K/G) share the codes' spec (K unsharded)
    return Plan(mesh, (P(*sa), P(*sw)), P(*sa[:-1], sw[0]))


@functools.lru_cache(maxsize=64)
def _quantize_program(fn, mesh, spec, out, static, has_t):
    def local(x, ss, gs, r, *t):
        return fn(x, ss, gs, t[0] if t else None, r, *static)

    rep = P()
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec, rep, rep, rep) +
                                 ((rep,) if has_t else ()), out_specs=out, check_vma=False))


def quantize(fn, x, scale_scale, global_scale, transform, rounding, static, pl_: Plan):
    """``fn(x, scale_scale, global_scale, transform, rounding, *static)`` per shard
    (the transform, if any, replicated)."""
    prog = _quantize_program(fn, pl_.mesh, pl_.specs[0], pl_.out, static,
                             transform is not None)
    m, rep = pl_.mesh, P()
    return prog(place(x, m, pl_.specs[0]), scale_scale, place(global_scale, m, rep), rounding,
                *(() if transform is None else (place(transform, m, rep),)))


@functools.lru_cache(maxsize=64)
def _matmul_program(fn, mesh, spec_a, spec_w, out, static):
    def local(ac, as_, gsa, wc, ws, gsw):
        return fn((ac, as_, gsa), (wc, ws, gsw), *static)

    rep = P()
    return jax.jit(jax.shard_map(local, mesh=mesh,
                                 in_specs=(spec_a, spec_a, rep, spec_w, spec_w, rep),
                                 out_specs=out, check_vma=False))


def matmul(fn, a, w, static, pl_: Plan):
    """``fn(a, w, *static)`` per shard; ``a``, ``w`` = (codes, scales, global scale)."""
    prog = _matmul_program(fn, pl_.mesh, pl_.specs[0], pl_.specs[1], pl_.out, static)
    m, (sa, sw), rep = pl_.mesh, pl_.specs, P()
    return prog(*(place(v, m, s) for v, s in zip(a + w, (sa, sa, rep, sw, sw, rep))))


@functools.lru_cache(maxsize=64)
def _weight_only_program(fn, mesh, spec_x, spec_w, out, static):
    def local(x, wc, ws, gsw):
        return fn(x, (wc, ws, gsw), *static)

    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec_x, spec_w, spec_w, P()),
                                 out_specs=out, check_vma=False))


def weight_only(fn, x, w, static, pl_: Plan):
    """``fn(x, w, *static)`` per shard; ``x`` float, ``w`` = (codes, scales, global
    scale); ``pl_`` from ``plan_matmul(x, w codes)``."""
    prog = _weight_only_program(fn, pl_.mesh, pl_.specs[0], pl_.specs[1], pl_.out, static)
    m, (sx, sw) = pl_.mesh, pl_.specs
    return prog(*(place(v, m, s) for v, s in zip((x,) + tuple(w), (sx, sw, sw, P()))))
