"""rlm-modal: Modal Sandboxes as the rlm-core environment ``modal``.

This module is the plugin (entry point ``rlm``/``modal``). It stays tiny and never imports the
Modal SDK: the factory and the cleanup hook import what they need when called.
"""

from __future__ import annotations

from typing import Any

from rlm_core import hookimpl

__version__ = "0.2.0"


def _modal_environment(**kwargs: Any) -> Any:
    from rlm_modal.environment import modal_environment

    return modal_environment(**kwargs)


@hookimpl
def rlm_register_environments(register: Any) -> None:
    register("modal", _modal_environment)


@hookimpl
def rlm_cleanup_sandboxes(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    from rlm_modal.cleanup import cleanup_sandboxes

    return cleanup_sandboxes(include_live=include_live, dry_run=dry_run)
