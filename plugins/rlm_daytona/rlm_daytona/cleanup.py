"""``rlm cleanup`` for Daytona: the core's cleanup loop over Daytona's sandbox listing (filtered on the
owner labels), its labels and delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from rlm_core.environments.lifecycle import Owner, run_sdk_cleanup
from rlm_daytona.transport import TAGS, configured_api_key

CLEANUP_TIMEOUT = 60.0
DELETE_TIMEOUT = 60.0
FIX = "check the network and DAYTONA_API_KEY (and DAYTONA_API_URL for a self-hosted Daytona)"


class DaytonaSandboxes:
    """Daytona's sandboxes as the core's cleanup loop asks for them, over one client for the whole pass."""

    kind = "daytona"

    def __init__(self, sdk: Any) -> None:
        self.sdk = sdk

    async def sandboxes(self) -> AsyncIterator[Any]:
        client = (
            self.sdk.AsyncDaytona()
        )  # made on the loop that uses it; reads DAYTONA_* from the environment
        try:
            # Every page first: deleting while paging could shift the pages under the listing.
            found = [
                sandbox async for sandbox in client.list(self.sdk.ListSandboxesQuery(labels=TAGS.selector()))
            ]
            for sandbox in found:
                yield sandbox
        finally:
            await client.close()

    def identify(self, sandbox: Any) -> str:
        return str(sandbox.id)

    def owner(self, sandbox: Any) -> Owner | None:
        return TAGS.read(sandbox.labels)

    async def end(self, sandbox: Any) -> None:
        await sandbox.delete(timeout=DELETE_TIMEOUT)


def cleanup_sandboxes(*, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    return run_sdk_cleanup(
        "daytona",
        DaytonaSandboxes,
        configured=lambda daytona: configured_api_key(),
        include_live=include_live,
        dry_run=dry_run,
        timeout=CLEANUP_TIMEOUT,
        fix=FIX,
    )
