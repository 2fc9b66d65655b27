"""The package's shape: imports flow downward, files stay small, kernels are
named, and the tree speaks of the product only."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import PKG, ROOT, module_imports, package_modules, project_graph

MAX_LINES = 400
_modules, _imports, _project_graph = package_modules, module_imports, project_graph


def test_no_import_cycles():
    graph = _project_graph()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            # a package's __init__ re-exports its children: parent -> child is not a cycle
            if m.startswith(n + ".") and state.get(n) == 1:
                continue
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules():
    mods = dict(_modules())
    bad = []
    for mod, path in mods.items():
        for node, target, name in _imports(mod, path, top_level_only=False):
            if target.startswith("scmp_jax") and name and name.startswith("_") \
                    and not name.startswith("__") and f"{target}.{name}" not in mods:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}.{name}")
    assert not bad, "\n".join(bad)


def test_project_imports_at_module_level():
    """Function-local imports of the project hide cycles; only the CLI may defer
    its subcommands (and optional extras may be imported lazily anywhere)."""
    bad = []
    for mod, path in _modules():
        if mod.startswith(("scmp_jax.cli", "scmp_jax.cli_tools")):
            continue
        # each _imports call parses anew: nodes are matched by position, not identity
        top = {(n.lineno, n.col_offset) for n, _, _ in _imports(mod, path, top_level_only=True)}
        for node, target, _ in _imports(mod, path, top_level_only=False):
            if (node.lineno, node.col_offset) not in top and (target.startswith("scmp_jax") or getattr(node, "level", 0) > 0):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target} inside "
                           "a function")
    assert not bad, "\n".join(bad)


def test_files_are_small():
    big = [f"{p.relative_to(ROOT)}: {n} lines" for _, p in _modules()
           if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not big, "\n".join(big)


def test_every_pallas_call_is_named():
    bad = []
    for _, path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if fname == "pallas_call" and not any(k.arg == "name" for k in node.keywords):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "pallas_call without name=: " + ", ".join(bad)


def test_init_only_reexports():
    tree = ast.parse((PKG / "__init__.py").read_text())
    for node in tree.body:
        ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) or (
            isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets))
        assert ok, f"scmp_jax/__init__.py line {node.lineno} does more than re-export"


_HISTORY = re.compile(r"\bsession[s]? \d+|\bsession \d|device call|\bissue \d+|\bissue #\d+"
                      r"|minutes left|\bsession's\b", re.IGNORECASE)
_TREES = ("scmp_jax", "golden", "tests", "bench", "docs", "scmp_jax_examples", "scripts")


@pytest.mark.parametrize("tree", _TREES, ids=[t.replace("golden", "reference_model") for t in _TREES])
def test_no_history_words(tree):
    """Code, tests, docs and bench describe the product, not how it was built."""
    bad = []
    paths = [ROOT / "README.md"] if tree == "docs" else []
    for path in paths + sorted((ROOT / tree).rglob("*")):
        if path.suffix not in (".py", ".md", ".sh", ".txt", ".toml") or not path.is_file() \
                or path == Path(__file__).resolve():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if _HISTORY.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:100]}")
    assert not bad, f"{len(bad)} lines:\n" + "\n".join(bad[:60])
