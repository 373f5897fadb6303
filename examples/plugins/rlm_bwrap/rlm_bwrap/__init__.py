"""rlm-bwrap: the ``bwrap`` environment, the core's sandbox runtime isolated with bubblewrap.

The plugin is a transport (``rlm_bwrap.transport``) plus this factory; the core's ``SandboxEnvironment``
does the protocol, sub-calls, timeouts and restarts.
"""

from __future__ import annotations

from typing import Any

import rlm_core
from rlm_bwrap.transport import HIDDEN_PATHS, BwrapStream, BwrapTransport
from rlm_core.environments import SandboxEnvironment
from rlm_core.errors import ConfigurationError

__all__ = ["HIDDEN_PATHS", "BwrapStream", "BwrapTransport", "make_environment"]
__version__ = "0.2.0"

TRANSPORT_SETTINGS = ("python", "bwrap", "env", "hidden_paths")
COMMON_SETTINGS = ("timeout", "max_output_chars", "kill_grace", "start_timeout", "inline_context_chars")


def make_environment(**environment_kwargs: Any) -> SandboxEnvironment:
    """``RLM(environment="bwrap", environment_kwargs={...})`` lands here: transport settings go to the
    transport, the settings every sandbox shares go to ``SandboxEnvironment``."""
    unknown = sorted(set(environment_kwargs) - {*TRANSPORT_SETTINGS, *COMMON_SETTINGS})
    if unknown:
        raise ConfigurationError(
            f"the bwrap environment got unknown environment_kwargs {unknown}; it takes "
            f"{', '.join(TRANSPORT_SETTINGS + COMMON_SETTINGS)}"
        )
    transport_settings = {k: v for k, v in environment_kwargs.items() if k in TRANSPORT_SETTINGS}
    common_settings = {k: v for k, v in environment_kwargs.items() if k in COMMON_SETTINGS}
    return SandboxEnvironment(BwrapTransport(**transport_settings), **common_settings)


@rlm_core.hookimpl
def rlm_register_environments(register: Any) -> None:
    register("bwrap", make_environment)


@rlm_core.hookimpl
def rlm_cleanup_sandboxes(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    """``rlm cleanup``: workdirs of killed owners (with ``include_live``, live ones and their processes too)."""
    from rlm_bwrap.cleanup import cleanup_workdirs

    return cleanup_workdirs(include_live=include_live, dry_run=dry_run)
