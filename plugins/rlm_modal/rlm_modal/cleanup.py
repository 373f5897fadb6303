"""``rlm cleanup`` for Modal: terminate rlm-core sandboxes whose owner process is gone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Coroutine
from typing import Any

from rlm_modal.owner import TAG_MARK, TAG_OWNER_HOST, TAG_OWNER_PID, TAG_RUN_ID, is_orphan, parse_pid

KIND = "modal"
CLEANUP_TIMEOUT = 60.0


def has_credentials(modal: Any) -> bool:
    """Whether a Modal token is configured (environment or ~/.modal.toml): without one this machine
    cannot have started a sandbox, and asking Modal would only fail slowly."""
    if os.environ.get("MODAL_TOKEN_ID"):
        return True
    try:
        return bool(modal.config.config.get("token_id"))
    except Exception:
        return False


def cleanup_sandboxes(*, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    try:
        import modal
    except ImportError:
        return []
    if not has_credentials(modal):
        return []
    try:
        return _run(asyncio.wait_for(_cleanup(modal, include_live, dry_run), CLEANUP_TIMEOUT))
    except Exception as exc:
        return [
            {
                "kind": KIND,
                "error": f"could not list Modal sandboxes ({type(exc).__name__}: {exc}); check the network "
                "and your Modal token (`modal token new`, or MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)",
            }
        ]


def _run(coroutine: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from a running loop (a notebook)
        return pool.submit(asyncio.run, coroutine).result()


async def _cleanup(modal: Any, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    entries = []
    async for sandbox in modal.Sandbox.list.aio(tags={TAG_MARK: "1"}):
        tags = await sandbox.get_tags.aio()
        owner_host = tags.get(TAG_OWNER_HOST, "")
        owner_pid = parse_pid(tags.get(TAG_OWNER_PID))
        if not (include_live or is_orphan(owner_host, owner_pid)):
            continue
        entry: dict[str, Any] = {
            "kind": KIND,
            "id": sandbox.object_id,
            "run_id": tags.get(TAG_RUN_ID, ""),
            "owner_pid": owner_pid,
            "owner_host": owner_host,
            "removed": False,
        }
        if not dry_run:
            try:
                await sandbox.terminate.aio()
                entry["removed"] = True
            except Exception as exc:
                entry["error"] = f"terminate failed: {exc}"
        entries.append(entry)
    return entries
