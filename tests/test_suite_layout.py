"""The test suite's shape: folders mirror the package, no test module imports
another, and ``-k golden`` selects exactly the golden comparisons."""
from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT, load_durations, slow_ids

TESTS = ROOT / "tests"
#: test folders that mirror something outside scmp_jax/, and the folder each mirrors
OUTSIDE = {"reference_model": "golden", "examples": "scmp_jax_examples", "bench": "bench",
           "cli": "scmp_jax/cli_tools"}
NOT_TESTS = {"data", "__pycache__"}


def _test_folders():
    return sorted(p.relative_to(TESTS).as_posix() for p in TESTS.rglob("*")
                  if p.is_dir() and not NOT_TESTS & set(p.relative_to(TESTS).parts))


def _package_folders():
    pkg = ROOT / "scmp_jax"
    return sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*")
                  if p.is_dir() and (p / "__init__.py").exists())


def test_tree_mirrors_the_package():
    """Each scmp_jax subpackage has a test folder of its name (cli_tools: cli), and
    each test folder names a package folder (or golden, the examples, bench)."""
    packages = _package_folders()
    mirrored = {f: f"scmp_jax/{f}" for f in packages if f != "cli_tools"} | OUTSIDE
    folders = _test_folders()
    stray = [f for f in folders if f not in mirrored]
    assert not stray, f"test folders mirroring no package folder: {stray}"
    required = {"cli" if f == "cli_tools" else f for f in packages if "/" not in f} | set(OUTSIDE)
    missing = sorted(required - set(folders))
    assert not missing, f"package folders without a test folder: {missing}"
    for f in folders:
        assert (ROOT / mirrored[f]).is_dir(), mirrored[f]
        assert (TESTS / f / "__init__.py").exists(), f"tests/{f} needs an __init__.py"


def _suite_files():
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_test_module_imports_another():
    """Shared code lives in tests/helpers.py (imported as ``tests.helpers``) and
    fixtures in tests/conftest.py; test modules import neither each other nor bare names."""
    bad = []
    for path in _suite_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                last = name.rsplit(".", 1)[-1]
                if name.startswith(".") or last.startswith(("test_", "conftest")) \
                        or name in ("helpers", "tests") \
                        or (name.startswith("tests.") and name != "tests.helpers"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    assert not bad, "\n".join(bad)


class _Collected:
    """Records what an in-process ``--collect-only -k golden`` kept and dropped."""

    def __init__(self):
        self.kept, self.dropped = [], []

    def pytest_deselected(self, items):
        self.dropped += items

    def pytest_collection_finish(self, session):
        self.kept = list(session.items)


@pytest.fixture(scope="module")
def keyword_run():
    rec = _Collected()
    code = pytest.main(["--collect-only", "-q", "-k", "golden", "-p", "no:cacheprovider",
                        "-p", "no:xdist", "--rootdir", str(ROOT), str(TESTS)], plugins=[rec])
    assert code == 0, code
    return rec


def _ids(items):
    return {i.nodeid for i in items}


def test_keyword_selects_exactly_the_reference_comparisons(keyword_run):
    """``-k golden`` keeps every test that compares a scmp_jax path with golden
    (conftest's marker) and nothing else: no module, test or parameter id says
    "golden" unless the test is one of those comparisons."""
    kept, dropped = keyword_run.kept, keyword_run.dropped
    unmarked = sorted(i.nodeid for i in kept if not i.get_closest_marker("golden"))
    assert not unmarked, "selected by name but not golden comparisons:\n" + "\n".join(unmarked)
    missed = sorted(i.nodeid for i in dropped if i.get_closest_marker("golden"))
    assert not missed, "golden comparisons -k golden misses:\n" + "\n".join(missed)
    assert len(kept) > 150 and len(dropped) > 300, (len(kept), len(dropped))


@pytest.mark.parametrize("nodeid,golden", [
    # compare with golden through helpers, fixtures or a monkeypatched plan
    ("tests/sc/test_dense.py::test_dense_any_d", True),
    ("tests/sc/test_dense.py::test_dense_chunk_plans", True),
    ("tests/fp4/test_pallas.py::test_codes_near_thresholds", True),
    ("tests/sc/test_validation.py::test_halve_fills_only_unset_values", True),
    ("tests/sc/test_xla.py::test_golden_xla_matches_golden", True),
    ("tests/reference_model/test_rng.py::test_golden_sobol_and_lfsr_match_vectorized", True),
    # argument validation (inside pytest.raises), golden's self-tests, no golden at all
    ("tests/sc/test_validation.py::test_value_errors_name_the_argument", False),
    ("tests/reference_model/test_rng.py::test_lfsr_hand_derived", False),
    ("tests/reference_model/test_fp4.py::test_e2m1_decode_all_codes", False),
    ("tests/sc/test_xla.py::test_bitlevel_equals_table_form", False),
    ("tests/sc/test_dense.py::test_counts_argument_is_validated", False),
], ids=lambda v: v.rsplit("::", 1)[-1].replace("golden", "gm") if isinstance(v, str) else str(v))
def test_marker_on_known_tests(keyword_run, nodeid, golden):
    """The marker's rule on tests whose nature is known (a parametrized id stands
    for the function's every case)."""
    items = [i for i in keyword_run.kept + keyword_run.dropped
             if i.nodeid == nodeid or i.nodeid.startswith(nodeid + "[")]
    assert items, f"no test {nodeid}"
    for item in items:
        assert bool(item.get_closest_marker("golden")) == golden, item.nodeid


def test_durations_name_collected_tests(keyword_run):
    """Each measured test in tests/durations.json is a collected test (a renamed
    test would otherwise lose its measurement and move to the fast run), and
    exactly the tests the cost rule picks carry the ``slow`` marker."""
    ids = {i.nodeid for i in keyword_run.kept + keyword_run.dropped}
    durations = load_durations()
    stale = sorted(set(durations) - ids)
    assert not stale, f"re-record tests/durations.json; stale: {stale[:5]}"
    slow = {i.nodeid for i in keyword_run.kept + keyword_run.dropped
            if i.get_closest_marker("slow")}
    assert slow == slow_ids(durations) and slow
