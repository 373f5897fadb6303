"""``rlm cleanup`` for Prime Intellect: delete rlm-core sandboxes whose owner process is gone."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any

from rlm_prime.owner import LABEL_MARK, is_orphan, read_owner
from rlm_prime.transport import configured_api_key

KIND = "prime"
CLEANUP_TIMEOUT = 60.0
PAGE_SIZE = 100


def cleanup_sandboxes(*, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    try:
        import prime_sandboxes
    except ImportError:
        return []
    if not configured_api_key(prime_sandboxes):
        return []  # without a key this machine cannot have started a Prime sandbox
    try:
        return _run(asyncio.wait_for(_cleanup(prime_sandboxes, include_live, dry_run), CLEANUP_TIMEOUT))
    except Exception as exc:
        return [
            {
                "kind": KIND,
                "error": f"could not list Prime sandboxes ({type(exc).__name__}: {exc}); check the network "
                "and PRIME_API_KEY (or `prime login`)",
            }
        ]


def _run(coroutine: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from a running loop (a notebook)
        return pool.submit(asyncio.run, coroutine).result()


async def _cleanup(sdk: Any, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    client = sdk.AsyncSandboxClient()
    try:
        found = []
        page = 1
        while True:
            listing = await client.list(
                labels=[LABEL_MARK], page=page, per_page=PAGE_SIZE, exclude_terminated=True
            )
            found.extend(listing.sandboxes)
            if not listing.has_next:
                break
            page += 1
        entries = []
        for sandbox in found:
            owner = read_owner(sandbox.labels)
            if not (include_live or is_orphan(owner["owner_host"], owner["owner_pid"])):
                continue
            entry: dict[str, Any] = {"kind": KIND, "id": sandbox.id, **owner, "removed": False}
            if not dry_run:
                try:
                    await client.delete(sandbox.id)
                    entry["removed"] = True
                except Exception as exc:
                    entry["error"] = f"delete failed: {exc}"
            entries.append(entry)
        return entries
    finally:
        await client.aclose()
