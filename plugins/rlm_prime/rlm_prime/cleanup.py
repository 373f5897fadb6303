"""``rlm cleanup`` for Prime Intellect: the core's cleanup loop over Prime's paged listing and delete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from rlm_core.environments.lifecycle import Owner, run_sdk_cleanup
from rlm_prime.transport import LABELS, configured_api_key

CLEANUP_TIMEOUT = 60.0
PAGE_SIZE = 100


class PrimeSandboxes:
    """Prime's sandboxes as the core's cleanup loop asks for them, over one client for the whole pass."""

    kind = "prime"

    def __init__(self, sdk: Any) -> None:
        self.sdk = sdk
        self.client: Any = None

    async def sandboxes(self) -> AsyncIterator[Any]:
        self.client = self.sdk.AsyncSandboxClient()  # made on the loop that uses it
        try:
            # Every page first: deleting while paging would shift the pages under the listing.
            found, page, more = [], 1, True
            while more:
                listing = await self.client.list(
                    labels=[LABELS.mark], page=page, per_page=PAGE_SIZE, exclude_terminated=True
                )
                found += listing.sandboxes
                page, more = page + 1, listing.has_next
            for sandbox in found:
                yield sandbox
        finally:
            await self.client.aclose()

    def identify(self, sandbox: Any) -> str:
        return str(sandbox.id)

    def owner(self, sandbox: Any) -> Owner | None:
        return LABELS.read(sandbox.labels)

    async def end(self, sandbox: Any) -> None:
        await self.client.delete(sandbox.id)


def cleanup_sandboxes(*, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    return run_sdk_cleanup(
        "prime_sandboxes",
        PrimeSandboxes,
        configured=configured_api_key,
        include_live=include_live,
        dry_run=dry_run,
        timeout=CLEANUP_TIMEOUT,
        fix="check the network and PRIME_API_KEY (or `prime login`)",
    )
