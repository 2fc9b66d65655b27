"""IEEE float32 arithmetic inside Pallas kernels (SPEC.md: one rounding per
written operation, no FMA contraction, IEEE division).

On the GPU (Triton backend) each operation is one PTX instruction with an
explicit rounding modifier: ``mul.rn``/``add.rn`` are never contracted into an
FMA, ``div.rn`` is the IEEE quotient (Triton's ``/`` is ``div.full``, up to
2 ulp off) and ``cvt.rni`` rounds half to even (Pallas Triton has no lowering
for ``lax.round``). In interpret mode (off GPU) the same kernel body runs as
XLA ops, so the XLA guards of ``_ieee`` are used instead.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _ieee

__all__ = ["KernelMath"]

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


class KernelMath:
    """``mul, add, div, rne`` for float32 arrays inside a kernel body."""

    def __init__(self, interpret: bool):
        self.interpret = interpret or _asm is None

    def mul(self, a, b):
        if self.interpret:
            return _ieee.separate(jnp.asarray(a, F32) * b)
        return _ptx("mul.rn.f32", a, b)

    def add(self, a, b):
        if self.interpret:
            return _ieee.separate(jnp.asarray(a, F32) + b)
        return _ptx("add.rn.f32", a, b)

    def div(self, a, b):
        if self.interpret:
            return _ieee.div(a, b)
        return _ptx("div.rn.f32", a, b)

    def rne(self, a):
        if self.interpret:
            return jnp.round(a)
        return _ptx("cvt.rni.f32.f32", a)
