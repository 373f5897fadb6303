"""An environment that starts in the background, so a slow sandbox start (a container, a cloud VM)
overlaps the first root model call instead of preceding it; every use waits until it is ready."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from rlm_core.environments.base import Environment, ExecResult, HostCall


class PreparingEnvironment:
    """Wraps ``environment`` while ``prepare`` (start it, load the context) runs as a task."""

    def __init__(self, environment: Environment, prepare: Coroutine[Any, Any, None]) -> None:
        self.inner = environment
        self._task: asyncio.Task[None] = asyncio.ensure_future(prepare)

    @property
    def failure(self) -> BaseException | None:
        """Why preparing failed (None while it runs, when it succeeded, or when it was cancelled)."""
        if not self._task.done() or self._task.cancelled():
            return None
        return self._task.exception()

    async def _ready(self) -> Environment:
        await asyncio.shield(self._task)
        return self.inner

    async def start(self, host: HostCall, tools: dict[str, Any]) -> None:
        await self._ready()  # already being started: nothing more to do

    async def load_context(self, index: int, value: Any) -> None:
        await (await self._ready()).load_context(index, value)

    async def load_history(self, index: int, messages: list[dict[str, str]]) -> None:
        await (await self._ready()).load_history(index, messages)

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        return await (await self._ready()).execute(code, timeout=timeout)

    async def close(self) -> None:
        if not self._task.done():  # the run ended before it needed the REPL
            self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self.inner.close()
