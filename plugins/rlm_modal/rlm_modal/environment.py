"""The ``modal`` environment: the core's SandboxEnvironment over a :class:`ModalTransport`."""

from __future__ import annotations

import inspect
from typing import Any

from rlm_core.environments import SandboxEnvironment
from rlm_core.errors import ConfigurationError
from rlm_modal.transport import ModalTransport

# The settings SandboxEnvironment itself takes (cell timeout, output cap, ...): read from its
# signature so they are never listed twice.
SANDBOX_SETTINGS = [name for name in inspect.signature(SandboxEnvironment).parameters if name != "transport"]
TRANSPORT_SETTINGS = list(inspect.signature(ModalTransport).parameters)


def modal_environment(**kwargs: Any) -> SandboxEnvironment:
    """``RLM(environment="modal", environment_kwargs=...)``: the keywords of ModalTransport (image,
    pip, apt, app_name, sandbox_timeout, idle_timeout, cpu, memory, gpu, region, secrets, env, ...)
    and of SandboxEnvironment (timeout per cell, max_output_chars, kill_grace, start_timeout)."""
    unknown = sorted(set(kwargs) - set(SANDBOX_SETTINGS) - set(TRANSPORT_SETTINGS))
    if unknown:
        raise ConfigurationError(
            f"modal environment got unknown environment_kwargs {unknown}; it takes "
            f"{', '.join(TRANSPORT_SETTINGS + SANDBOX_SETTINGS)}"
        )
    settings = {name: kwargs.pop(name) for name in SANDBOX_SETTINGS if name in kwargs}
    environment = SandboxEnvironment(ModalTransport(**kwargs), **settings)
    environment.name = "modal"
    return environment
