"""``implementation=`` of the fp4 ops, resolved once at each API boundary into
a ``_src.dispatch.Backend`` that the op passes down (``.pallas``,
``.interpret``, ``.gpu``). A configuration the Pallas kernels cannot run
(``why_not``: the reason) falls back to XLA with ``implementation=None`` and
raises ValueError naming the reason with ``implementation="pallas"``."""
from __future__ import annotations

from .._src import dispatch
from .._src.dispatch import Backend

__all__ = ["Backend", "resolve"]


def resolve(implementation, *, op: str, why_not: str | None = None) -> Backend:
    """The ``Backend`` of ``implementation`` for ``op``; ``why_not``: why the Pallas
    kernels cannot take these arguments (None: they can)."""
    if implementation == "pallas" and why_not is not None:
        raise ValueError(f"{op}: implementation='pallas': {why_not}")
    return dispatch.resolve(implementation, op=op, pallas_ready=why_not is None)
