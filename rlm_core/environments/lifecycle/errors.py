"""A failing service call, reported as what the plugin was doing, or let pass where it changes
nothing: one line instead of a try block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

from rlm_core.errors import RLMError, SandboxError


@contextlib.contextmanager
def reported_as(what: str, error: type[SandboxError] = SandboxError) -> Iterator[None]:
    """Any exception in the block becomes ``error(f"{what}: {exc}")`` (chained to it), e.g.
    ``with reported_as(f"could not write {path} into {self.describe()}"): await sdk.write(...)``.
    rlm-core's own errors pass through unchanged: they already say what happened."""
    try:
        yield
    except RLMError:
        raise
    except Exception as exc:
        raise error(f"{what}: {exc}") from exc


async def quietly(call: Callable[[], Awaitable[object]], timeout: float) -> None:
    """Await ``call()`` for up to ``timeout`` seconds, whatever it raises: for a step of ending a
    process or a sandbox that may be gone already, where a failure leaves nothing more to do."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(call(), timeout)
