"""The ``modal`` environment: the core's SandboxEnvironment over a :class:`ModalTransport`."""

from __future__ import annotations

from typing import Any

from rlm_core.environments import SandboxEnvironment
from rlm_modal.transport import ModalTransport


def modal_environment(**kwargs: Any) -> SandboxEnvironment:
    """``RLM(environment="modal", environment_kwargs=...)``: the keywords of ModalTransport (image,
    pip, apt, app_name, sandbox_timeout, idle_timeout, cpu, memory, gpu, region, secrets, env, ...)
    and of SandboxEnvironment (timeout per cell, max_output_chars, kill_grace, start_timeout)."""
    # SandboxEnvironment.compose splits the keywords by signature, so nothing is listed twice.
    return SandboxEnvironment.compose("modal", ModalTransport, kwargs)
