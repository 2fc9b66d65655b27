"""Kernel parameters of the fp4 quantize kernels (SPEC.md section 9): the int32
vector each kernel reads (``params``) and, when the scalars are concrete, the
part of it baked into the kernel at trace time (``Known``).

Layout (``PARAMS_LEN`` = 16 words, 128 with e4m3 threshold sets): [0] bits of
``scale_scale * global_scale``, [1] bits of ``global_scale``, [2] rounding
index, [3] 0, [4:12] ``pallas_thresholds.thresholds`` (ok flag, c_0..c_6),
zero padding; then ``pallas_thresholds.threshold_sets`` from
``pallas_thresholds.SETS_AT`` and zero padding.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import pallas_thresholds as TH
from . import softfloat as SF

__all__ = ["PARAMS_LEN", "Known", "known", "params"]

F32 = jnp.float32
I32 = jnp.int32

PARAMS_LEN = 16


@dataclasses.dataclass(frozen=True)
class Known:
    """The params known at trace time (concrete scalars), static in the kernels:
    the rounding index and the thresholds ``c_0..c_6`` (empty: the threshold
    branch cannot be taken, so it is not compiled). Saves the kernel its scalar
    branch on the rounding and the loads of the thresholds."""
    rounding: int
    c: tuple
    sets: bool = False      # e4m3 threshold sets in the params vector, all found


def known(params):
    """``params``' vector -> ``Known`` when it is concrete, else None."""
    if isinstance(params, jax.core.Tracer):
        return None
    v = np.asarray(params)
    sets = v.shape[0] > TH.SETS_AT and v[TH.SETS_AT] == 1
    return Known(int(v[2]), tuple(int(t) for t in v[5:12]) if v[4] == 1 else (), bool(sets))


def params(scale_scale, global_scale, rounding, thresholds: bool, sets: bool = False):
    """int32 (16,) (128 with ``sets``): bits of ``scale_scale * gs`` and ``gs``, the
    rounding index, 0, then ``pallas_thresholds.thresholds`` (ok flag, c_0..c_6; zeros, i.e. not ok,
    without ``thresholds``: kernels that never try the branch skip finding them),
    zero padding.

    Concrete scalars (python / NumPy constants, also inside a caller's ``jit``)
    are evaluated now, by a small program compiled ahead of time for the host
    CPU (``_params_executable``; values cached), and reach the kernel as a
    NumPy constant: staged, XLA would constant-fold the softfloat arithmetic
    of ``thresholds`` in every program that uses it (on the H200 that is where
    the "very slow compile" of the quantize rows came from); traced scalars
    are staged behind an ``optimization_barrier``, so a traced constant (e.g.
    ``jnp.float32(0.5)`` written inside a jitted function) is computed at run
    time like a jit argument instead of being folded (not yet checked on the GPU).
    ``sets``: append ``pallas_thresholds.threshold_sets`` (e4m3 scales; concrete
    scalars only, traced ones get none), zero padding to 128 words."""
    args = (scale_scale, global_scale, rounding)
    if any(isinstance(v, jax.core.Tracer) for v in args):
        return _params_program(*lax.optimization_barrier(args), thresholds)
    bits = lambda v: int(np.asarray(v, np.float32).view(np.uint32))
    return _host_params(bits(scale_scale), bits(global_scale), int(np.asarray(rounding)),
                        thresholds, sets)


@functools.lru_cache(maxsize=256)
def _host_params(ss_bits: int, gs_bits: int, rounding: int, thresholds: bool, sets: bool):
    """``params`` of concrete scalars (float32 bit patterns): a read-only NumPy vector
    from ``_params_executable``, whatever trace is current."""
    f32 = lambda b: np.asarray(b, np.uint32).view(np.float32)
    out = np.asarray(_params_executable(thresholds, sets)(f32(ss_bits), f32(gs_bits),
                                                          np.int32(rounding)))
    out.setflags(write=False)
    return out


@functools.cache
def _params_executable(thresholds: bool, sets: bool):
    """``_params_program`` compiled ahead of time for the host CPU backend: one XLA
    compile per (thresholds, sets), not an evaluation inside the caller's trace (on
    the H200 with jax 0.11.2 that took 80-100 s per first call, > 200 s on the GPU
    backend for the 8 sets)."""
    try:
        host = jax.local_devices(backend="cpu")[0]
    except RuntimeError:                    # JAX_PLATFORMS without cpu: the default device
        host = jax.local_devices()[0]
    on_host = jax.sharding.SingleDeviceSharding(host)
    spec = lambda dt: jax.ShapeDtypeStruct((), dt, sharding=on_host)
    return _params_program.lower(spec(F32), spec(F32), spec(I32), thresholds, sets).compile()


@functools.partial(jax.jit, static_argnums=(3, 4))
def _params_program(scale_scale, global_scale, rounding, thresholds, sets=False):
    scale_scale, global_scale = jnp.asarray(scale_scale, F32), jnp.asarray(global_scale, F32)
    rounding = jnp.asarray(rounding, I32)
    prod = SF.mul(scale_scale, global_scale)
    head = jnp.stack([SF.bits(prod), SF.bits(global_scale), rounding, I32(0)])
    tail = TH.thresholds(global_scale, rounding) if thresholds else jnp.zeros(8, I32)
    out = [head, tail, jnp.zeros(PARAMS_LEN - 12, I32)]
    if sets:
        out += [TH.threshold_sets(global_scale, rounding),
                jnp.zeros(128 - PARAMS_LEN - TH.SETS_LEN, I32)]
    return jnp.concatenate(out)
