"""The core's contract suites against the modal environment, on the fake Modal cloud: the environment
contract, and the sandbox lifecycle (every path ends the sandbox; owner tags; ``rlm cleanup``)."""

from __future__ import annotations

from rlm_modal import transport
from rlm_modal.cleanup import cleanup_sandboxes

from rlm_core.testing.environment_contract import EnvironmentContract
from rlm_core.testing.local_cloud import LocalCloudCase
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


class ModalCase(LocalCloudCase):
    environment_name = "modal"
    live = transport._live
    cleanup_hook = staticmethod(cleanup_sandboxes)


class TestModalEnvironment(ModalCase, EnvironmentContract):
    """Output, state, errors, sub-calls, timeouts: what every environment does."""


class TestModalLifecycle(ModalCase, SandboxLifecycleContract):
    """Close, failed starts, stuck cells, errors, Ctrl-C, exit, owner tags and cleanup."""
