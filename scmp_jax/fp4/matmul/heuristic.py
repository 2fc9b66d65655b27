"""The fp4 Pallas matmul schedule by shape (SPEC.md section 9), from the H100 /
H200 sweeps at K = M = 4096 (``python -m bench.fp4 --sweep``, ``bench.fp4_probe``;
measurements: docs/decisions.md). ``gpu``: the kernels compile for the GPU
(off it they run interpreted, where the fused kernel is used throughout).

* N <= 2, equal group sizes, GPU: ``decode_layout``: ``"dp4a"`` at G = 32
  (MXFP4), else ``"gemv"``;
* N <= 16: ``"fused"``, grouped, 16 x 64 tiles, K split in up to 16 ranges;
* N >= 256, GPU: ``"dequant"`` (decode once + XLA's dense GEMM);
* else ``"fused"``: 64 x 64 tiles up to N = 64 (and always off the GPU),
  256 x 128 with 8 warps above.
"""
from __future__ import annotations

from .tilings import DequantTiling, Dp4aTiling, FusedTiling, GemvTiling, Tiling

__all__ = ["choose", "decode_layout"]


def choose(N: int, M: int, K: int, Ga: int, Gw: int, *, gpu: bool) -> tuple[str, Tiling]:
    """(schedule name, tiling) for activations (N, K) with groups of ``Ga`` times
    weights (M, K) with groups of ``Gw``."""
    t = _tiling(N, M, K, Ga, Gw, gpu)
    return t.schedule, t


def _tiling(N, M, K, Ga, Gw, gpu) -> Tiling:
    bk = max(128, Ga, Gw)
    if N <= 2 and Ga == Gw and gpu:
        return decode_layout(N, M, K, Ga)
    if N <= 16:
        bk = max(bk, 256)
        return FusedTiling(16, 64, bk, 4, 3, max(1, min(16, K // bk)), grouped=True)
    if N >= 256 and gpu:
        return DequantTiling()
    if N <= 64 or not gpu:
        return FusedTiling(64, 64, bk, 4, 3)
    return FusedTiling(256, 128, bk, 8, 3)


def decode_layout(N: int, M: int, K: int, G: int) -> Tiling:
    """The tiling of N <= 2 rows.

    G = 32: integer group dots (``Dp4aTiling``), one step per program (``bk`` = the
    K range: all its loads issued at once), ``bk`` the largest power of two <=
    4096 dividing K (no padding, so no copy of the weight) when that is >= 256,
    else 256 with K padded; ``split = K / bk`` ranges (XLA adds them when > 1);
    programs of about 32 KB of weight bytes (``bm = 65536 / bk`` rows, 16..64;
    halved while M is not a multiple, down to 16). Measured fastest at K = M =
    4096 (docs/decisions.md); other K by this rule.

    Other G (NVFP4's 16): the float gemv, ``32 N`` rows x 256, split K / 256 up to
    16 (its decoded float tile would not fit in registers at 16 x 4096)."""
    if G != 32:
        bk = max(256, G)
        return GemvTiling(32 * N, bk, 4, 3, max(1, min(16, K // bk)))
    d = K & -K
    bk = min(4096, d) if d >= 256 else 256
    bm = max(16, min(64, 65536 // bk))
    while bm > 16 and M % bm:
        bm //= 2
    return Dp4aTiling(bm, bk, 8 if bk >= 1024 else 4, 1, -(-K // bk))
