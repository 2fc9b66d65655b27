"""argparse ``type=`` validators: a bad number is an argparse error (usage, one
error line naming the option, exit status 2), never a traceback."""
from __future__ import annotations

import argparse

__all__ = ["int_in", "SC_PREC"]

#: ``sc_prec`` bounds of ``sc_matmul`` (SPEC.md section 7.1)
SC_PREC = (2, 12)


def int_in(lo: int | None = None, hi: int | None = None):
    """A ``type=`` for an int in ``[lo, hi]`` (a missing bound is open)."""
    if lo is not None and hi is not None:
        want = f"an int in [{lo}, {hi}]"
    else:
        want = f"an int >= {lo}" if lo is not None else f"an int <= {hi}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {want}, got {v}")
        return v

    parse.__name__ = want                       # argparse names the type in some messages
    return parse
