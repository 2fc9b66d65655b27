import os

# 4 host devices on CPU (tests/test_sharding.py); set before jax is imported
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4").strip()

from hypothesis import HealthCheck, settings

# "ci": derandomized, sized to run the whole suite in a few minutes on 2 cores.
# "thorough": for local runs (HYPOTHESIS_PROFILE=thorough pytest -k golden).
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large],
               print_blob=True)
settings.register_profile("ci", derandomize=True, max_examples=200, **_common)
settings.register_profile("thorough", max_examples=1500, **_common)
settings.register_profile("dev", max_examples=20, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Property tests compile hundreds of distinct programs; release them per
    module so a long run stays under vm.max_map_count (see clear_caches)."""
    yield
    import scmp_jax
    scmp_jax.clear_caches()
