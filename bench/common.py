"""The result file every bench module writes (``--out``), read by ``python -m bench.report``.

One JSON object per run (the envelope)::

    {"family": "fp4", "command": "python -m bench.fp4 --repeats 3",
     "device": "NVIDIA H200", "platform": "gpu", "jax": "0.11.2",
     "date": "2026-12-03", "commit": "cf9ae5b", "devices": 1,
     "cpu_count": 16, "load_1min": 1.2, "rows": [{...}, ...]}

``device`` is ``jax.devices()[0].device_kind``, ``platform`` the default
backend, ``date`` the UTC date of the run (ISO), ``commit`` the abbreviated
git commit of the tree the bench ran from (with ``-dirty`` when it had
uncommitted changes; null outside a git checkout), ``devices`` how many jax
devices the process saw, ``cpu_count`` / ``load_1min`` the host's CPUs and its
1-minute load average when the file was written (this run included: on a shared
host a load above the CPU count means other work competed with the timing).
``rows`` are the module's own result rows, unchanged.
The default path is ``bench/results/<family>.json`` on a GPU and
``bench/results/<platform>_<family>.json`` elsewhere (e.g. ``cpu_sc.json``), so a
CPU run never overwrites a GPU result.
"""
from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys

import jax

__all__ = ["RESULTS_DIR", "default_out", "envelope", "write_result"]

RESULTS_DIR = os.path.join("bench", "results")


def default_out(family: str) -> str:
    """``bench/results/<family>.json`` on a GPU, ``bench/results/<platform>_<family>.json``
    on any other backend (relative to the working directory: the repository root)."""
    plat = jax.default_backend()
    name = f"{family}.json" if plat == "gpu" else f"{plat}_{family}.json"
    return os.path.join(RESULTS_DIR, name)


def _commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"],
                             cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):     # not on every OS
        return None


def envelope(family: str, prog: str, argv, rows) -> dict:
    """The result object: ``prog`` is the module as run by ``python -m`` (``bench``,
    ``bench.fp4``, ...), ``argv`` its arguments (``sys.argv[1:]`` when None)."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m", prog] + [shlex.quote(a) for a in args])
    return dict(family=family, command=command,
                device=jax.devices()[0].device_kind, platform=jax.default_backend(),
                jax=jax.__version__,
                date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
                commit=_commit(), devices=len(jax.devices()), cpu_count=os.cpu_count(),
                load_1min=_load(), rows=list(rows))


def write_result(path, family: str, prog: str, argv, rows) -> dict:
    """Write ``envelope(...)`` to ``path`` (``default_out(family)`` when None; parent
    folders created); return it."""
    path = default_out(family) if path is None else path
    env = envelope(family, prog, argv, rows)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(env, f, indent=1)
        f.write("\n")
    print(f"wrote {path}")
    return env
