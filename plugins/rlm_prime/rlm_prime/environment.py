"""The ``prime`` environment: the core's SandboxEnvironment over a :class:`PrimeTransport`."""

from __future__ import annotations

import inspect
from typing import Any

from rlm_core.environments import SandboxEnvironment
from rlm_core.errors import ConfigurationError
from rlm_prime.transport import PrimeTransport

# The settings SandboxEnvironment itself takes (cell timeout, output cap, ...): read from its
# signature so they are never listed twice.
SANDBOX_SETTINGS = [name for name in inspect.signature(SandboxEnvironment).parameters if name != "transport"]
TRANSPORT_SETTINGS = list(inspect.signature(PrimeTransport).parameters)


def prime_environment(**kwargs: Any) -> SandboxEnvironment:
    """``RLM(environment="prime", environment_kwargs=...)``: the keywords of PrimeTransport (image,
    python_version, pip, apt, cpu_cores, memory_gb, gpu_count, timeout_minutes, idle_timeout_minutes,
    region, env, secrets, ...) and of SandboxEnvironment (timeout per cell, max_output_chars, kill_grace,
    start_timeout)."""
    unknown = sorted(set(kwargs) - set(SANDBOX_SETTINGS) - set(TRANSPORT_SETTINGS))
    if unknown:
        raise ConfigurationError(
            f"prime environment got unknown environment_kwargs {unknown}; it takes "
            f"{', '.join(TRANSPORT_SETTINGS + SANDBOX_SETTINGS)}"
        )
    settings = {name: kwargs.pop(name) for name in SANDBOX_SETTINGS if name in kwargs}
    environment = SandboxEnvironment(PrimeTransport(**kwargs), **settings)
    environment.name = "prime"
    return environment
