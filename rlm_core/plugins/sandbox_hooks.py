"""The two hooks of a sandbox plugin: its environment and its ``rlm cleanup`` answer, each importing
the plugin's modules (and so its SDK) only when called, so discovery and ``rlm --help`` stay light."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlm_core.plugins.hookspecs import hookimpl
from rlm_core.plugins.signatures import lazy_factory, resolve_target


def sandbox_hooks(
    name: str, *, environment: str, cleanup: str
) -> tuple[Callable[[Any], None], Callable[[bool, bool], list[dict[str, Any]]]]:
    """``rlm_register_environments`` registering ``environment`` ("module:factory") as ``name``, and
    ``rlm_cleanup_sandboxes`` calling ``cleanup`` ("module:function", taking ``include_live`` and
    ``dry_run``). Bind them to those names in the plugin's module::

        rlm_register_environments, rlm_cleanup_sandboxes = sandbox_hooks(
            "modal", environment="rlm_modal.environment:modal_environment",
            cleanup="rlm_modal.cleanup:cleanup_sandboxes",
        )
    """

    @hookimpl
    def rlm_register_environments(register: Any) -> None:
        register(name, lazy_factory(environment))

    @hookimpl
    def rlm_cleanup_sandboxes(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = resolve_target(cleanup)(include_live=include_live, dry_run=dry_run)
        return rows

    return rlm_register_environments, rlm_cleanup_sandboxes
