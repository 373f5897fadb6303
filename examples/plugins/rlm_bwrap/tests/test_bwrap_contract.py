"""The core's contract suites, run against the bwrap environment exactly as a third party would: the
environment contract, and the sandbox lifecycle (every path ends the sandbox; owners; rlm cleanup)."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest
import rlm_bwrap
from rlm_bwrap import make_environment
from rlm_bwrap.cleanup import workdir_owner
from rlm_bwrap.transport import LIVE

from rlm_core.environments import SandboxEnvironment
from rlm_core.environments.lifecycle import LiveSandboxes, Owner
from rlm_core.testing.environment_contract import EnvironmentContract
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract

pytestmark = pytest.mark.usefixtures("require_bwrap")


class TestBwrapEnvironment(EnvironmentContract):
    def make_environment(self) -> SandboxEnvironment:
        return make_environment(timeout=30, kill_grace=2.0)


@pytest.mark.usefixtures("private_tempdir", "discoverable")
class TestBwrapLifecycle(SandboxLifecycleContract):
    environment_name = "bwrap"

    def environment_kwargs(self) -> dict[str, Any]:
        return {"timeout": 30, "kill_grace": 2.0}

    def held_sandboxes(self) -> list[str]:
        return [str(path) for path in Path(tempfile.gettempdir()).glob("rlm-bwrap-*")]

    def sandbox_id(self, environment: SandboxEnvironment) -> str:
        return str(environment.transport.workdir)

    def live_sandboxes(self) -> LiveSandboxes[Any]:
        return LIVE

    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        return workdir_owner(sandbox_id)

    def leave_sandbox(self, owner: Owner) -> str | None:
        if owner.host != socket.gethostname():
            return None  # a workdir names its owner's pid only: it is always this machine's
        return tempfile.mkdtemp(prefix=f"rlm-bwrap-{owner.pid}-")

    def cleanup(self, *, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
        return rlm_bwrap.rlm_cleanup_sandboxes(include_live=include_live, dry_run=dry_run)
