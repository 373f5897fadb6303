"""rlm-e2b: E2B sandboxes as the rlm-core environment ``e2b``.

This module is the plugin (entry point ``rlm``/``e2b``). Its hooks import the transport, and with it
the E2B SDK, only when an environment is built or ``rlm cleanup`` asks for E2B's sandboxes.
"""

from __future__ import annotations

from rlm_core.plugins.sandbox_hooks import sandbox_hooks

__version__ = "0.2.0"

rlm_register_environments, rlm_cleanup_sandboxes = sandbox_hooks(
    "e2b",
    environment="rlm_e2b.environment:e2b_environment",
    cleanup="rlm_e2b.cleanup:cleanup_sandboxes",
)
