"""The core's environment contract suite against the modal environment (on the fake Modal cloud)."""

from __future__ import annotations

import pytest
from modal_fakes import FakeModalCloud

from rlm_core.environments import Environment
from rlm_core.testing.environment_contract import EnvironmentContract


class TestModalContract(EnvironmentContract):
    @pytest.fixture(autouse=True)
    def _cloud(self, modal_cloud: FakeModalCloud, workdir: str) -> None:
        self.cloud = modal_cloud
        self.workdir = workdir

    def make_environment(self) -> Environment:
        from rlm_modal.environment import modal_environment

        return modal_environment(workdir=self.workdir, timeout=30, kill_grace=2)
