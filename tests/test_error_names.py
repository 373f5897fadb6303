"""The sandbox errors read as English where people see them (tracebacks, logs), and the first name
of the sandbox error still imports."""

from __future__ import annotations

import pytest

import rlm_core
from rlm_core.errors import EnvironmentError_, RLMError, SandboxError, SandboxStartError


def test_sandbox_errors_are_named_as_they_read() -> None:
    assert SandboxError.__name__ == "SandboxError"
    assert SandboxStartError.__name__ == "SandboxStartError"
    assert issubclass(SandboxStartError, SandboxError) and issubclass(SandboxError, RLMError)
    assert rlm_core.SandboxStartError is SandboxStartError


def test_the_first_name_still_imports_and_catches_both() -> None:
    assert EnvironmentError_ is SandboxError
    with pytest.raises(EnvironmentError_):
        raise SandboxStartError("no engine")


def test_a_missing_docker_engine_is_a_start_error() -> None:
    pytest.importorskip("docker", reason="docker-py is part of the dev install; without it this path is moot")
    from rlm_core.environments.docker_env import make_client

    with pytest.raises(SandboxStartError, match="no Docker-API engine reachable") as caught:
        make_client("unix:///nonexistent/rlm-test.sock", timeout=2)
    assert type(caught.value).__name__ == "SandboxStartError"
