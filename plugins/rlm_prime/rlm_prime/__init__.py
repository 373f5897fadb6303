"""rlm-prime: Prime Intellect Sandboxes as the rlm-core environment ``prime``.

This module is the plugin (entry point ``rlm``/``prime``). It stays tiny and never imports the
Prime SDK: the factory and the cleanup hook import what they need when called.
"""

from __future__ import annotations

from typing import Any

from rlm_core import hookimpl

__version__ = "0.2.0"


def _prime_environment(**kwargs: Any) -> Any:
    from rlm_prime.environment import prime_environment

    return prime_environment(**kwargs)


@hookimpl
def rlm_register_environments(register: Any) -> None:
    register("prime", _prime_environment)


@hookimpl
def rlm_cleanup_sandboxes(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    from rlm_prime.cleanup import cleanup_sandboxes

    return cleanup_sandboxes(include_live=include_live, dry_run=dry_run)
