"""Hex text files for RTL testbenches (``$readmemh``-style): one value per line.

Every line holds one value as a fixed number of lowercase hex digits
(``ceil(bits / 4)``), no prefix. Signed values are written in ``bits``-bit
two's complement. Bit streams are packed one stream per line with cycle ``t``
at bit ``t`` (LSB = cycle 0). Values are written in row-major (C) order of
their array.
"""
from __future__ import annotations

import numpy as np

__all__ = ["hex_digits", "write_hex", "read_hex", "pack_streams", "unpack_streams",
           "float32_bits"]


def hex_digits(bits: int) -> int:
    """Hex digits per line for a ``bits``-bit value."""
    return max(1, -(-int(bits) // 4))


def write_hex(path, values, bits: int, signed: bool = False) -> int:
    """Write integer ``values`` (any shape, row-major) as hex lines; return the count."""
    flat = [int(v) for v in np.asarray(values).reshape(-1)] if not isinstance(values, list) \
        else [int(v) for v in values]
    w = hex_digits(bits)
    mask = (1 << bits) - 1
    lines = []
    for v in flat:
        if signed:
            if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
                raise ValueError(f"{v} does not fit in {bits}-bit two's complement")
            v &= mask
        elif not 0 <= v <= mask:
            raise ValueError(f"{v} does not fit in {bits} unsigned bits")
        lines.append(format(v, f"0{w}x"))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


def read_hex(path, bits: int, signed: bool = False) -> list[int]:
    """Read a file written by ``write_hex``: Python ints (arbitrary width)."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            v = int(line, 16)
            if signed and v >= 1 << (bits - 1):
                v -= 1 << bits
            out.append(v)
    return out


def pack_streams(bits: np.ndarray) -> list[int]:
    """``(..., L)`` 0/1 array -> one int per stream, cycle ``t`` at bit ``t``."""
    b = np.asarray(bits, bool)
    L = b.shape[-1]
    return [int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")
            for row in b.reshape(-1, L)]


def unpack_streams(words, L: int, shape=None) -> np.ndarray:
    """Inverse of ``pack_streams``: uint8 ``(len(words), L)`` (or ``shape + (L,)``)."""
    out = np.array([[(w >> t) & 1 for t in range(L)] for w in words], np.uint8).reshape(-1, L)
    return out if shape is None else out.reshape(tuple(shape) + (L,))


def float32_bits(x) -> np.ndarray:
    """IEEE-754 bit patterns of float32 values (uint32)."""
    return np.ascontiguousarray(np.asarray(x, np.float32)).view(np.uint32)
