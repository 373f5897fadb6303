"""The ``daytona`` environment: the core's SandboxEnvironment over a :class:`DaytonaTransport`."""

from __future__ import annotations

from typing import Any

from rlm_core.environments import SandboxEnvironment
from rlm_daytona.transport import DaytonaTransport


def daytona_environment(**kwargs: Any) -> SandboxEnvironment:
    """``RLM(environment="daytona", environment_kwargs=...)``: the keywords of DaytonaTransport (snapshot,
    image, cpu, memory, disk, gpu, target, auto_stop_interval, env, secrets, labels, api_key, ...) and of
    SandboxEnvironment (timeout per cell, max_output_chars, kill_grace, start_timeout)."""
    # SandboxEnvironment.compose splits the keywords by signature, so nothing is listed twice.
    return SandboxEnvironment.compose("daytona", DaytonaTransport, kwargs)
