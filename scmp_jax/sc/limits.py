"""The int32 limits of the exact SC integers (SPEC.md section 4.3).

Counts, accumulators and unipolar row sums are int32 in every path (golden:
int64). Their largest magnitudes follow from static values only (shapes,
``L``, ``p``, the count method), so ``sc_matmul`` rejects, before tracing, a
call whose exact integers could leave int32:

* accumulator ``|acc| <= D_acc * L`` (``0 <= c <= L`` per inner index;
  ``D_acc``: ``D``, or ``min(chunk_d, D)`` under ``chunk_d``), reached by
  all-equal operands. Every partial sum of the gather, of the count kernel's
  split-K slices and of the per-chunk tables is a sub-sum: the same bound;
* ``dense`` counts: per inner index the int8 GEMM adds ``X * Y`` and three
  correction products (``sc.dense``); their positive terms sum to at most
  ``max(128, L)``, as do their negative ones, so every partial sum, in any
  order, stays within ``D_acc * max(128, L)``;
* unipolar row sums ``sum_d x_int <= D * q``, ``q = 2**p - 1``
  (``quant.xla.check_rowsum``).
"""
from __future__ import annotations

from ..quant.xla import INT32_MAX, check_rowsum

__all__ = ["INT32_MAX", "bounds", "check", "fits"]


def bounds(*, mode: str, p: int, L: int, D: int, chunk_d: int = 0,
           counts: str = "gather") -> dict:
    """The largest possible magnitude of each int32 quantity, by name."""
    d_acc = min(chunk_d, D) if chunk_d else D
    out = {"accumulator": d_acc * L}
    if counts == "dense":
        out["dense partial sum"] = d_acc * max(128, L)
    if mode == "unipolar":
        out["row sum"] = D * (2 ** p - 1)
    return out


def fits(**kw) -> bool:
    """``check`` as a predicate (same keywords, without ``op``)."""
    return all(v <= INT32_MAX for v in bounds(**kw).values())


def check(*, mode: str, p: int, L: int, D: int, chunk_d: int = 0, counts: str = "gather",
          op: str = "sc_matmul") -> None:
    """ValueError naming the limit when an exact integer could exceed int32."""
    dim = "min(chunk_d, D)" if chunk_d else "D"
    b = bounds(mode=mode, p=p, L=L, D=D, chunk_d=chunk_d, counts=counts)
    for name, per, what in (("accumulator", L, "stoc_len"),
                            ("dense partial sum", max(128, L), "max(128, stoc_len)")):
        if b.get(name, 0) > INT32_MAX:
            hint = f" with counts='dense' (counts='gather': {INT32_MAX // L})" \
                if name != "accumulator" else ""
            raise ValueError(f"{op}: the exact int32 {name} can reach {dim} * {what} = "
                             f"{b[name]} > 2**31 - 1 = {INT32_MAX} (stoc_len={L}); the largest "
                             f"{dim} allowed here is {INT32_MAX // per}{hint}")
    check_rowsum(mode, p, D, op)
