"""The ``e2b`` environment: the core's SandboxEnvironment over an :class:`E2BTransport`."""

from __future__ import annotations

from typing import Any

from rlm_core.environments import SandboxEnvironment
from rlm_e2b.transport import E2BTransport


def e2b_environment(**kwargs: Any) -> SandboxEnvironment:
    """``RLM(environment="e2b", environment_kwargs=...)``: the keywords of E2BTransport (template,
    sandbox_timeout, env, secrets, allow_internet_access, metadata, domain, api_key, ...) and of
    SandboxEnvironment (timeout per cell, max_output_chars, kill_grace, start_timeout)."""
    # SandboxEnvironment.compose splits the keywords by signature, so nothing is listed twice.
    return SandboxEnvironment.compose("e2b", E2BTransport, kwargs)
