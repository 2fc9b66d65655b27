"""The SC and quant ops' shape: the XLA references never reach a Pallas module,
the platform is asked in one place (dispatch), and granularities come from
one registry."""
from __future__ import annotations

import ast

import numpy as np
import pytest

import scmp_jax
from scmp_jax._src import granularity as GR
from tests.helpers import PKG, ROOT, project_graph as _project_graph

OPS = ("scmp_jax.sc", "scmp_jax.quant")


def _reach(graph, start):
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(graph[m])
    return seen


@pytest.mark.parametrize("ref", ["scmp_jax.sc.xla", "scmp_jax.quant.xla"])
def test_xla_reference_imports_no_pallas_module(ref):
    graph = _project_graph()
    # a package's __init__ re-exports every child: follow modules, not packages
    graph = {m: {n for n in deps if (PKG.parent / (n.replace(".", "/") + ".py")).is_file()}
             for m, deps in graph.items()}
    pallas = sorted(m for m in _reach(graph, ref) if m.rsplit(".", 1)[-1].startswith("pallas"))
    assert not pallas, f"{ref} reaches {pallas}"


def test_only_dispatch_asks_the_platform():
    """sc/quant modules get the target from the resolved Backend, never from
    ``_src.platform`` (``on_gpu``) themselves."""
    bad = []
    for op in OPS:
        for path in sorted((ROOT / op.replace(".", "/")).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ()
                if isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] + [a.name for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, (ast.Name, ast.Attribute)):
                    names = [getattr(node, "id", None) or getattr(node, "attr", "")]
                if any(n and (n.endswith("platform") or n in ("on_gpu", "default_backend"))
                       for n in names):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad


def test_one_granularity_registry():
    assert scmp_jax.sc.GRANULARITIES is GR.GRANULARITIES
    assert GR.GRANULARITIES == ("per_tensor", "per_row", "per_head")
    x = np.ones((2, 4, 8), np.float32)
    for fn in (lambda: scmp_jax.sc_matmul(x, x, "per_col"),
               lambda: scmp_jax.quant.quantize(x, "per_col")):
        with pytest.raises(ValueError, match=r"granularity must be one of \('per_tensor'"):
            fn()
    for name in GR.GRANULARITIES:
        g = GR.get(name)
        assert g.name == name and GR.get(g) is g and hash(g) == hash(type(g)())
