"""The core's contract suites against the daytona environment, on the fake Daytona cloud: the
environment contract, and the sandbox lifecycle (every path ends the sandbox; owner labels; ``rlm cleanup``)."""

from __future__ import annotations

from rlm_daytona import transport
from rlm_daytona.cleanup import cleanup_sandboxes

from rlm_core.testing.environment_contract import EnvironmentContract
from rlm_core.testing.local_cloud import LocalCloudCase
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


class DaytonaCase(LocalCloudCase):
    environment_name = "daytona"
    live = transport._live
    cleanup_hook = staticmethod(cleanup_sandboxes)


class TestDaytonaEnvironment(DaytonaCase, EnvironmentContract):
    """Output, state, errors, sub-calls, timeouts: what every environment does."""


class TestDaytonaLifecycle(DaytonaCase, SandboxLifecycleContract):
    """Close, failed starts, stuck cells, errors, Ctrl-C, exit, owner labels and cleanup."""
