"""rlm-prime: Prime Intellect Sandboxes as the rlm-core environment ``prime``.

The entry point ``rlm``/``prime`` names this module; ``prime_sandboxes`` is imported by the factory
and the cleanup when they run, never at discovery.
"""

from __future__ import annotations

from rlm_core.plugins.sandbox_hooks import sandbox_hooks

__version__ = "0.2.0"

rlm_register_environments, rlm_cleanup_sandboxes = sandbox_hooks(
    "prime",
    environment="rlm_prime.environment:prime_environment",
    cleanup="rlm_prime.cleanup:cleanup_sandboxes",
)
