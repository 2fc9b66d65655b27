"""IEEE float32 arithmetic inside Pallas kernels (SPEC.md: one rounding per
written operation, no FMA contraction, IEEE division).

On the GPU (Triton backend) each operation is one PTX instruction with an
explicit rounding modifier: ``mul.rn``/``add.rn`` are never contracted into an
FMA, ``div.rn`` is the IEEE quotient (Triton's ``/`` is ``div.full``, up to
2 ulp off) and ``cvt.rni`` rounds half to even (Pallas Triton has no lowering
for ``lax.round``). In interpret mode (off GPU) the same kernel body runs as
XLA ops, so the XLA guards of ``ieee`` are used instead.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import ieee

__all__ = ["XlaMath", "PtxMath", "kernel_math"]

F32 = jnp.float32

try:
    from jax.experimental.pallas import triton as _pltriton
    _asm = _pltriton.elementwise_inline_asm
except (ImportError, AttributeError):  # pragma: no cover
    _asm = None


def _ptx(op: str, *args):
    args = [jnp.asarray(a, F32) for a in args]
    shape = jnp.broadcast_shapes(*(a.shape for a in args))
    args = [jnp.broadcast_to(a, shape) for a in args]
    regs = ", ".join(f"${i}" for i in range(len(args) + 1))
    cons = ",".join(["=r"] + ["r"] * len(args))
    bits = [jax.lax.bitcast_convert_type(a, jnp.int32) for a in args]
    (out,) = _asm(f"{op} {regs};", args=bits, constraints=cons, pack=1,
                  result_shape_dtypes=[jax.ShapeDtypeStruct(shape, jnp.int32)])
    return jax.lax.bitcast_convert_type(out, F32)


class XlaMath:
    """``mul, add, div, rne`` for XLA (and kernels in interpret mode): the
    ``ieee`` guards keep XLA from contracting or approximating them."""

    @staticmethod
    def mul(a, b):
        return ieee.separate(jnp.asarray(a, F32) * b)

    @staticmethod
    def add(a, b):
        return ieee.separate(jnp.asarray(a, F32) + b)

    div = staticmethod(ieee.div)

    @staticmethod
    def rne(a):
        return jnp.round(a)


class PtxMath:
    """``mul, add, div, rne`` as single PTX instructions (compiled GPU kernels)."""

    @staticmethod
    def mul(a, b):
        return _ptx("mul.rn.f32", a, b)

    @staticmethod
    def add(a, b):
        return _ptx("add.rn.f32", a, b)

    @staticmethod
    def div(a, b):
        return _ptx("div.rn.f32", a, b)

    @staticmethod
    def rne(a):
        return _ptx("cvt.rni.f32.f32", a)


def kernel_math(interpret: bool):
    """The arithmetic for a kernel body: PTX on the GPU, XLA's in interpret mode."""
    return XlaMath if (interpret or _asm is None) else PtxMath
