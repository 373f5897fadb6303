"""The core's contract suites against the e2b environment, on the fake E2B cloud: the environment
contract, and the sandbox lifecycle (every path ends the sandbox; owner metadata; ``rlm cleanup``)."""

from __future__ import annotations

from rlm_e2b import transport
from rlm_e2b.cleanup import cleanup_sandboxes

from rlm_core.testing.environment_contract import EnvironmentContract
from rlm_core.testing.local_cloud import LocalCloudCase
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


class E2BCase(LocalCloudCase):
    environment_name = "e2b"
    live = transport._live
    cleanup_hook = staticmethod(cleanup_sandboxes)


class TestE2BEnvironment(E2BCase, EnvironmentContract):
    """Output, state, errors, sub-calls, timeouts: what every environment does."""


class TestE2BLifecycle(E2BCase, SandboxLifecycleContract):
    """Close, failed starts, stuck cells, errors, Ctrl-C, exit, owner metadata and cleanup."""
