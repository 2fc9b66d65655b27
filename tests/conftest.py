import os

# 4 host devices on CPU (tests/test_sharding.py); set before jax is imported
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4").strip()

import subprocess
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# "ci": the README's test command; "thorough": long local runs
# (HYPOTHESIS_PROFILE=thorough pytest -k golden); "dev": quick iteration.
# No example database: a run is fully determined by its seed (below).
_common = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, **_common)
settings.register_profile("thorough", max_examples=1500, **_common)
settings.register_profile("dev", max_examples=10, **_common)
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
