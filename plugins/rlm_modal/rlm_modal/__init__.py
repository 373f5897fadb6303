"""rlm-modal: Modal Sandboxes as the rlm-core environment ``modal``.

This module is the plugin (entry point ``rlm``/``modal``). Its hooks import the transport, and with
it the Modal SDK, only when an environment is built or ``rlm cleanup`` asks for Modal's sandboxes.
"""

from __future__ import annotations

from rlm_core.plugins.sandbox_hooks import sandbox_hooks

__version__ = "0.2.0"

rlm_register_environments, rlm_cleanup_sandboxes = sandbox_hooks(
    "modal",
    environment="rlm_modal.environment:modal_environment",
    cleanup="rlm_modal.cleanup:cleanup_sandboxes",
)
