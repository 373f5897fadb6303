"""The environment contract suite run against the built-in environments: local, subprocess and docker."""

from __future__ import annotations

import os

import pytest

from rlm_core.environments.base import Environment
from rlm_core.environments.local import LocalEnvironment
from rlm_core.environments.subprocess_env import SubprocessEnvironment
from rlm_core.testing.environment_contract import EnvironmentContract

TEST_IMAGE = os.environ.get("RLM_TEST_IMAGE", "rlm-test-python:3.11")


def _docker_ready() -> str | None:
    """Why docker tests cannot run here, or None when they can. In CI a missing engine is a failure."""
    if os.environ.get("DOCKER_HOST"):
        return None
    if os.environ.get("CI", "").lower() == "true":
        return None  # let the tests fail loudly: CI must run them
    return "DOCKER_HOST is unset; run scripts/setup-podman.sh and export what it prints"


class TestLocalContract(EnvironmentContract):
    def make_environment(self) -> Environment:
        return LocalEnvironment(timeout=30)


class TestSubprocessContract(EnvironmentContract):
    def make_environment(self) -> Environment:
        return SubprocessEnvironment(timeout=30, kill_grace=2)


@pytest.mark.skipif(_docker_ready() is not None, reason=str(_docker_ready()))
class TestDockerContract(EnvironmentContract):
    def make_environment(self) -> Environment:
        from rlm_core.environments.docker_env import DockerEnvironment

        return DockerEnvironment(image=TEST_IMAGE, pull=False, timeout=30, kill_grace=2)
