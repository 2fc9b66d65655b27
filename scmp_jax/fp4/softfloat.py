"""Exact IEEE binary32 arithmetic on int32 bit patterns, shared by every op
family: see ``scmp_jax._src.softfloat``."""
from .._src.softfloat import add, bits, div, from_bits, mul, sub

__all__ = ["mul", "div", "add", "sub", "bits", "from_bits"]
