"""Progress reporting: tqdm when it is installed, plain prints otherwise.

tqdm is an optional dependency; nothing in ``scmp_jax`` requires it.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import Iterable, Iterator, TypeVar

__all__ = ["progress", "have_tqdm"]

T = TypeVar("T")


def have_tqdm() -> bool:
    """Whether ``tqdm`` can be imported."""
    return importlib.util.find_spec("tqdm") is not None


def progress(items: Iterable[T], desc: str = "", total: int | None = None,
             enabled: bool = True, file=None) -> Iterator[T]:
    """Yield ``items`` while reporting progress on ``file`` (default stderr).

    With tqdm: a progress bar. Without: one line ``desc [i/total]`` per item.
    ``enabled=False`` reports nothing.
    """
    file = sys.stderr if file is None else file
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if not enabled:
        yield from items
        return
    if have_tqdm():
        from tqdm import tqdm
        yield from tqdm(items, desc=desc, total=total, file=file, leave=False)
        return
    for i, item in enumerate(items, 1):
        print(f"{desc} [{i}/{total if total is not None else '?'}]", file=file, flush=True)
        yield item
