import os

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
