"""rlm-core's contract suites, run against the prime environment on the fake Prime cloud."""

from __future__ import annotations

from rlm_prime.cleanup import cleanup_sandboxes
from rlm_prime.transport import _live

from rlm_core.testing.environment_contract import EnvironmentContract
from rlm_core.testing.local_cloud import LocalCloudCase
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


class PrimeCase(LocalCloudCase):
    cleanup_hook = staticmethod(cleanup_sandboxes)
    environment_name = "prime"
    live = _live


class TestPrimeEnvironmentContract(PrimeCase, EnvironmentContract):
    pass


class TestPrimeLifecycleContract(PrimeCase, SandboxLifecycleContract):
    pass
