"""``rlm cleanup`` for Modal: the core's cleanup loop over Modal's sandbox listing, tags and terminate."""

from __future__ import annotations

import os
from typing import Any

from rlm_core.environments.lifecycle import Owner, run_sdk_cleanup
from rlm_modal.transport import TAGS

CLEANUP_TIMEOUT = 60.0
FIX = "check the network and your Modal token (`modal token new`, or MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)"


def has_credentials(modal: Any) -> bool:
    """Whether a Modal token is configured (environment or ~/.modal.toml): without one this machine
    cannot have started a sandbox, and asking Modal would only fail slowly."""
    if os.environ.get("MODAL_TOKEN_ID"):
        return True
    try:
        return bool(modal.config.config.get("token_id"))
    except Exception:
        return False


class ModalSandboxes:
    """Modal's sandboxes as the core's cleanup loop asks for them."""

    kind = "modal"

    def __init__(self, modal: Any) -> None:
        self.modal = modal

    def sandboxes(self) -> Any:
        return self.modal.Sandbox.list.aio(tags=TAGS.selector())

    def identify(self, sandbox: Any) -> str:
        return str(sandbox.object_id)

    async def owner(self, sandbox: Any) -> Owner | None:
        return TAGS.read(await sandbox.get_tags.aio())

    async def end(self, sandbox: Any) -> None:
        await sandbox.terminate.aio()


def cleanup_sandboxes(*, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    return run_sdk_cleanup(
        "modal",
        ModalSandboxes,
        configured=has_credentials,
        include_live=include_live,
        dry_run=dry_run,
        timeout=CLEANUP_TIMEOUT,
        fix=FIX,
    )
