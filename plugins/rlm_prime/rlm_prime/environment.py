"""The ``prime`` environment: the core's SandboxEnvironment over a :class:`PrimeTransport`."""

from __future__ import annotations

from typing import Any

from rlm_core.environments import SandboxEnvironment
from rlm_prime.transport import PrimeTransport


def prime_environment(**kwargs: Any) -> SandboxEnvironment:
    """``RLM(environment="prime", environment_kwargs=...)``: the keywords of PrimeTransport (image,
    python_version, pip, apt, cpu_cores, memory_gb, gpu_count, timeout_minutes, idle_timeout_minutes,
    region, env, secrets, ...) and of SandboxEnvironment (timeout per cell, max_output_chars, kill_grace,
    start_timeout)."""
    # SandboxEnvironment.compose splits the keywords by signature, so nothing is listed twice.
    return SandboxEnvironment.compose("prime", PrimeTransport, kwargs)
