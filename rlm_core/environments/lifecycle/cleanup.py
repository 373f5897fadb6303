"""The loop behind every ``rlm cleanup`` answer: list a service's sandboxes, keep ours, end those whose
owner is gone (all of them with ``include_live``), and report one row per sandbox.

A plugin describes its service with a :class:`SandboxService` (four small SDK calls); the rows are
what the ``rlm_cleanup_sandboxes`` hook returns and ``rlm cleanup`` prints (for a cloud SDK,
:func:`run_sdk_cleanup` is the whole hook).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol, TypeVar

from rlm_core.environments.lifecycle.owners import Owner

T = TypeVar("T")
Row = dict[str, Any]


class SandboxService(Protocol):
    """One sandbox service as the cleanup loop sees it. Each method may be plain or ``async``."""

    kind: str  # names the service in the report ("docker", "modal", ...)

    def sandboxes(self) -> Iterable[Any] | AsyncIterable[Any] | Awaitable[Iterable[Any]]:
        """The service's rlm-core sandboxes (filter on the mark tag where the service can)."""
        ...

    def identify(self, sandbox: Any) -> str:
        """The sandbox's id, as users and the service's own tools name it."""
        ...

    def owner(self, sandbox: Any) -> Owner | Awaitable[Owner | None] | None:
        """Who started it, read back from its tags; None when it is not an rlm-core sandbox."""
        ...

    def end(self, sandbox: Any) -> Awaitable[None] | None:
        """Terminate, delete or remove it; raise when that failed."""
        ...


async def _settled(value: T | Awaitable[T]) -> T:
    return await value if inspect.isawaitable(value) else value


async def _each(sandboxes: Any) -> AsyncIterator[Any]:
    """Iterate what ``SandboxService.sandboxes`` returned, whichever of its three forms it is."""
    sandboxes = await _settled(sandboxes)
    if isinstance(sandboxes, AsyncIterable):
        try:
            async for sandbox in sandboxes:
                yield sandbox
        finally:
            close = getattr(sandboxes, "aclose", None)  # a listing that holds a client releases it
            if close is not None:
                await close()
        return
    for sandbox in sandboxes:
        yield sandbox


async def cleanup_rows(
    service: SandboxService, *, include_live: bool, dry_run: bool, rows: list[Row] | None = None
) -> list[Row]:
    """End (unless ``dry_run``) the service's sandboxes whose owner is gone, or all of its rlm-core
    sandboxes with ``include_live``; one row per sandbox acted on. A failure to end one is that row's
    ``error`` and the others still end. Rows are appended to ``rows`` as they are made, so a caller
    keeps them when the listing fails half-way."""
    rows = [] if rows is None else rows
    async for sandbox in _each(service.sandboxes()):
        owner = await _settled(service.owner(sandbox))
        if owner is None or not (include_live or owner.is_gone()):
            continue
        row: Row = {
            "kind": service.kind,
            "id": service.identify(sandbox),
            "run_id": owner.run_id,
            "owner_pid": owner.pid,
            "owner_host": owner.host,
            "removed": False,
        }
        rows.append(row)
        if dry_run:
            continue
        try:
            await _settled(service.end(sandbox))
            row["removed"] = True
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
    return rows


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from synchronous code, also when this thread already runs an
    event loop (a notebook calling ``rlm cleanup``'s hook): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def run_cleanup(
    service: SandboxService,
    *,
    include_live: bool,
    dry_run: bool,
    timeout: float | None = None,
    fix: str = "check that the service is reachable",
) -> list[Row]:
    """:func:`cleanup_rows` from synchronous code, as the ``rlm_cleanup_sandboxes`` hook returns it:
    when the service cannot be listed (or ``timeout`` passes), the rows so far and one error row
    ``{"kind": ..., "error": ...}`` that ends with ``fix``, how to set it right."""
    rows: list[Row] = []

    async def bounded() -> list[Row]:
        return await asyncio.wait_for(
            cleanup_rows(service, include_live=include_live, dry_run=dry_run, rows=rows), timeout
        )

    try:
        return run_blocking(bounded())
    except Exception as exc:
        problem = f"could not list {service.kind} sandboxes ({type(exc).__name__}: {exc}); {fix}"
        return [*rows, {"kind": service.kind, "error": problem}]


def run_sdk_cleanup(
    module: str,
    service: Callable[[Any], SandboxService],
    *,
    configured: Callable[[Any], object],
    include_live: bool,
    dry_run: bool,
    timeout: float | None = None,
    fix: str = "check that the service is reachable",
) -> list[Row]:
    """A cloud plugin's ``rlm_cleanup_sandboxes`` hook: :func:`run_cleanup` over ``service(sdk)``, where
    ``sdk`` is the SDK ``module``. No rows, and no call to the service, when the SDK is not installed
    (this installation never started such a sandbox) or ``configured(sdk)`` finds no credentials
    (this machine cannot have started one, and asking would only fail slowly)."""
    try:
        sdk = importlib.import_module(module)
    except ImportError:
        return []
    if not configured(sdk):
        return []
    return run_cleanup(service(sdk), include_live=include_live, dry_run=dry_run, timeout=timeout, fix=fix)
