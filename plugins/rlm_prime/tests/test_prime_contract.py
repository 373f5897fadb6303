"""The core's environment contract suite against the prime environment (on the fake Prime cloud)."""

from __future__ import annotations

import pytest
from prime_fakes import FakePrimeCloud

from rlm_core.environments import Environment
from rlm_core.testing.environment_contract import EnvironmentContract


class TestPrimeContract(EnvironmentContract):
    @pytest.fixture(autouse=True)
    def _cloud(self, prime_cloud: FakePrimeCloud, workdir: str) -> None:
        self.cloud = prime_cloud
        self.workdir = workdir

    def make_environment(self) -> Environment:
        from rlm_prime.environment import prime_environment

        return prime_environment(workdir=self.workdir, timeout=30, kill_grace=2)
