"""rlm-daytona: Daytona sandboxes as the rlm-core environment ``daytona``.

This module is the plugin (entry point ``rlm``/``daytona``). Its hooks import the transport, and with
it the Daytona SDK, only when an environment is built or ``rlm cleanup`` asks for Daytona's sandboxes.
"""

from __future__ import annotations

from rlm_core.plugins.sandbox_hooks import sandbox_hooks

__version__ = "0.2.0"

rlm_register_environments, rlm_cleanup_sandboxes = sandbox_hooks(
    "daytona",
    environment="rlm_daytona.environment:daytona_environment",
    cleanup="rlm_daytona.cleanup:cleanup_sandboxes",
)
