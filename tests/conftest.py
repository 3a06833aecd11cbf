"""Suite-wide settings: float64 for identity checks and a seeded key fixture.

The seed shows in every failure report (the ``getkey`` fixture's repr and the test id),
so a failing case can be repeated exactly: ``LINSAM_TEST_SEED=<seed> pytest ...``.
"""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# Start the backend now, with its one CPU device: a command-line test run in-process (whose
# use_cpu_cores() would otherwise expose one device per core) then changes nothing for later tests.
jax.devices()

SEED = int(os.environ.get("LINSAM_TEST_SEED", "0"))


class KeyGen:
    """Derives a fresh PRNG key per call with ``fold_in``; repr shows the seed."""

    def __init__(self, seed: int):
        self.seed = seed
        self._base = jax.random.PRNGKey(seed)
        self._count = 0

    def __call__(self):
        self._count += 1
        return jax.random.fold_in(self._base, self._count)

    def __repr__(self):
        return f"KeyGen(seed={self.seed}, draws={self._count})"


@pytest.fixture
def getkey(request):
    """A key generator seeded from LINSAM_TEST_SEED (default 0); seed printed on failure."""
    gen = KeyGen(SEED)
    request.node.user_properties.append(("seed", SEED))
    return gen


def pytest_report_header(config):
    return f"linsam test seed: {SEED} (set LINSAM_TEST_SEED to change); jax x64 enabled"
