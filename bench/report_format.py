"""Cell formatters and Markdown tables of ``bench.report`` (BENCHMARKS.md)."""
from __future__ import annotations

import math

__all__ = ["is_number", "f_ms", "f_s", "f_ratio", "f_x", "f_pct", "f_shape", "f_bool",
           "f_bytes", "f_any", "table", "columns"]


def is_number(v):
    """A real number (bool excluded)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def f_ms(v):
    """Milliseconds (or seconds): 4 significant digits."""
    if not is_number(v):
        return "" if v is None else str(v)
    if math.isnan(v):
        return "nan"
    return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"


def f_s(v):
    """Seconds of a first call: one decimal."""
    return "" if not is_number(v) else f"{v:.1f}"


def f_ratio(v, digits=3):
    return "" if not is_number(v) else f"{v:.{digits}f}"


def f_x(v):
    """A time ratio against a baseline, '1.234x'."""
    return "" if not is_number(v) else f"{v:.3f}x"


def f_pct(v):
    return "" if not is_number(v) else f"{v:.1f} %"


def f_shape(v):
    return "" if v is None else ("(" + ",".join(str(x) for x in v) + ")"
                                 if isinstance(v, (list, tuple)) else str(v))


def f_bool(v):
    return "" if v is None else ("yes" if v else "**NO**")


def f_bytes(v):
    if not is_number(v):
        return ""
    for unit, k in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(v) >= k:
            return f"{v / k:.1f} {unit}"
    return f"{v:.0f} B"


def f_any(v):
    if isinstance(v, bool):
        return f_bool(v)
    if is_number(v):
        return f_ms(v)
    if isinstance(v, (list, tuple)):
        return f_shape(v)
    return "" if v is None else str(v).replace("|", "/")


def table(header, rows):
    """Markdown table; ``rows`` are lists of cell strings."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return out


def columns(rows, spec):
    """``spec``: (header, key or function of the row, formatter). Columns whose
    every cell is empty are dropped. Returns the table lines."""
    cells = []
    for r in rows:
        line = []
        for _, key, fmt in spec:
            v = key(r) if callable(key) else r.get(key)
            line.append(fmt(v))
        cells.append(line)
    keep = [i for i in range(len(spec)) if any(c[i] for c in cells)]
    return table([spec[i][0] for i in keep], [[c[i] for i in keep] for c in cells])
