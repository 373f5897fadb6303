"""The core's environment contract, run against the bwrap environment exactly as a third party would."""

from __future__ import annotations

import pytest
from rlm_bwrap import make_environment

from rlm_core.environments import SandboxEnvironment
from rlm_core.testing.environment_contract import EnvironmentContract

pytestmark = pytest.mark.usefixtures("require_bwrap")


class TestBwrapEnvironment(EnvironmentContract):
    def make_environment(self) -> SandboxEnvironment:
        return make_environment(timeout=30, kill_grace=2.0)
