"""``rlm cleanup`` for E2B: the core's cleanup loop over E2B's sandbox listing (filtered on the owner
metadata), its metadata and kill."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from rlm_core.environments.lifecycle import Owner, run_sdk_cleanup
from rlm_e2b.transport import TAGS, configured_api_key

CLEANUP_TIMEOUT = 60.0
PAGE_SIZE = 100
FIX = "check the network and E2B_API_KEY"


class E2BSandboxes:
    """E2B's running and paused sandboxes as the core's cleanup loop asks for them."""

    kind = "e2b"

    def __init__(self, e2b: Any) -> None:
        self.e2b = e2b

    async def sandboxes(self) -> AsyncIterator[Any]:
        # Every page first: killing while paging could shift the pages under the listing.
        paginator = self.e2b.AsyncSandbox.list(
            query=self.e2b.SandboxQuery(metadata=TAGS.selector()), limit=PAGE_SIZE
        )
        found: list[Any] = []
        while paginator.has_next:
            found += await paginator.next_items()
        for sandbox in found:
            yield sandbox

    def identify(self, sandbox: Any) -> str:
        return str(sandbox.sandbox_id)

    def owner(self, sandbox: Any) -> Owner | None:
        return TAGS.read(sandbox.metadata)

    async def end(self, sandbox: Any) -> None:
        await self.e2b.AsyncSandbox.kill(sandbox.sandbox_id)


def cleanup_sandboxes(*, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    return run_sdk_cleanup(
        "e2b",
        E2BSandboxes,
        configured=lambda e2b: configured_api_key(),
        include_live=include_live,
        dry_run=dry_run,
        timeout=CLEANUP_TIMEOUT,
        fix=FIX,
    )
