"""Kernel parameters of the fp4 quantize kernels (SPEC.md section 9): the int32
vector each kernel reads (``params``) and, when the scalars are concrete, the
part of it baked into the kernel at trace time (``Known``).

Layout (``PARAMS_LEN`` = 16 words): [0] bits of ``scale_scale *
global_scale``, [1] bits of ``global_scale``, [2] rounding index, [3] 0,
[4:12] ``thresholds.thresholds`` (ok flag, c_0..c_6), zero padding.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from jax import lax

from . import thresholds as TH

__all__ = ["PARAMS_LEN", "Known", "known", "params"]

PARAMS_LEN = 16


@dataclasses.dataclass(frozen=True)
class Known:
    """The params known at trace time (concrete scalars), static in the kernels:
    the rounding index and the thresholds ``c_0..c_6`` (empty: the threshold
    branch cannot be taken, so it is not compiled). Saves the kernel its scalar
    branch on the rounding and the loads of the thresholds."""
    rounding: int
    c: tuple


def known(params):
    """``params``' vector -> ``Known`` when it is concrete, else None."""
    if isinstance(params, jax.core.Tracer):
        return None
    v = np.asarray(params)
    return Known(int(v[2]), tuple(int(t) for t in v[5:12]) if v[4] == 1 else ())


def params(scale_scale, global_scale, rounding, thresholds: bool):
    """int32 (16,): bits of ``scale_scale * gs`` and ``gs``, the rounding index, 0,
    then ``thresholds.thresholds`` (ok flag, c_0..c_6; zeros, i.e. not ok,
    without ``thresholds``: kernels that never try the branch skip finding them),
    zero padding.

    Concrete scalars (python / NumPy constants, also inside a caller's ``jit``)
    are evaluated now on the host by NumPy's IEEE float32 arithmetic
    (``_host_params``, values cached) and reach the kernel as a NumPy constant:
    staged, XLA would constant-fold the softfloat arithmetic of ``thresholds``
    in every program that uses it (measured: minutes of GPU compile; compiling
    the softfloat program for the host CPU instead takes tens of seconds,
    docs/decisions.md). Traced scalars are staged behind an
    ``optimization_barrier`` (softfloat, ``_params_program``), so a traced
    constant (e.g. ``jnp.float32(0.5)`` written inside a jitted function) is
    computed at run time like a jit argument instead of being folded."""
    args = (scale_scale, global_scale, rounding)
    if any(isinstance(v, jax.core.Tracer) for v in args):
        return _params_program(*lax.optimization_barrier(args), thresholds)
    bits = lambda v: int(np.asarray(v, np.float32).view(np.uint32))
    return _host_params(bits(scale_scale), bits(global_scale), int(np.asarray(rounding)),
                        thresholds)


def _canonical(r):
    """float32 results with every NaN as the canonical ``0x7FC00000`` (softfloat's)."""
    r = np.asarray(r, np.float32)
    return np.where(np.isnan(r), np.int32(0x7FC00000), r.view(np.int32)).astype(
        np.int32).view(np.float32)


def _host_op(op):
    def f(a, b):
        with np.errstate(all="ignore"):
            return _canonical(op(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                 dtype=np.float32))
    return f


#: the host CPU's float32 arithmetic through NumPy: IEEE, correctly rounded, the
#: same bits as ``softfloat`` while the host keeps subnormals (``_host_is_ieee``)
HOST = TH.Arith(np, _host_op(np.multiply), _host_op(np.divide),
                lambda x: np.asarray(x, np.float32).view(np.int32),
                lambda b: np.asarray(b, np.int32).view(np.float32))


def _host_is_ieee() -> bool:
    """The host's float32 multiply and divide keep subnormal inputs and results
    (no flush-to-zero / denormals-are-zero mode set by some loaded library)."""
    p = lambda e: np.float32(2.0 ** e)
    with np.errstate(all="ignore"):
        return bool(HOST.mul(p(-149), p(0)) == p(-149) and HOST.div(p(-126), p(2)) == p(-128)
                    and HOST.div(p(-149), p(-1)) == p(-148))


def _vector(ar: TH.Arith, scale_scale, global_scale, rounding, thresholds):
    """The params vector of float32 scalars and a rounding index in arithmetic ``ar``."""
    xp, i32 = ar.xp, ar.xp.int32
    scale_scale = xp.asarray(scale_scale, xp.float32)
    global_scale = xp.asarray(global_scale, xp.float32)
    rounding = xp.asarray(rounding, i32)
    prod = ar.mul(scale_scale, global_scale)
    head = xp.stack([xp.asarray(ar.bits(prod)), xp.asarray(ar.bits(global_scale)), rounding,
                     i32(0)])
    tail = TH.thresholds(global_scale, rounding, ar) if thresholds else xp.zeros(8, i32)
    return xp.concatenate([head, tail, xp.zeros(PARAMS_LEN - 12, i32)]).astype(i32)


@functools.lru_cache(maxsize=256)
def _host_params(ss_bits: int, gs_bits: int, rounding: int, thresholds: bool):
    """``params`` of concrete scalars (float32 bit patterns) as a read-only NumPy
    vector: NumPy's float32 arithmetic (microseconds), or where the host flushes
    subnormals the softfloat program run eagerly on the host CPU."""
    f32 = lambda b: np.asarray(b, np.uint32).view(np.float32)
    args = (f32(ss_bits), f32(gs_bits), np.int32(rounding), thresholds)
    if _host_is_ieee():
        out = _vector(HOST, *args)
    else:
        with jax.default_device(_host_device()), jax.ensure_compile_time_eval():
            out = np.asarray(_vector(TH.SOFT, *args))
    out.setflags(write=False)
    return out


def _host_device():
    try:
        return jax.local_devices(backend="cpu")[0]
    except RuntimeError:                    # JAX_PLATFORMS without cpu: the default device
        return jax.local_devices()[0]


@functools.partial(jax.jit, static_argnums=(3,))
def _params_program(scale_scale, global_scale, rounding, thresholds):
    return _vector(TH.SOFT, scale_scale, global_scale, rounding, thresholds)
