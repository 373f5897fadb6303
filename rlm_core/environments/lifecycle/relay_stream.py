"""A process byte stream over a relayed command whose output an SDK hands over through callbacks: the
text lines of the relay in, the runtime's stdout out as bytes, the end of the command its EOF."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from rlm_core.environments.lifecycle.relay import Base64Lines
from rlm_core.environments.lifecycle.streams import ProcessByteStream


class RelayedCommandStream(ProcessByteStream):
    """A :class:`ProcessByteStream` whose stdout is the relay's lines (see
    :mod:`~rlm_core.environments.lifecycle.relay`). A transport subclasses it with ``send`` and
    ``end_process``, passes :meth:`on_stdout` (and ``stderr.add``) to the SDK as the command's
    output callbacks, and hands :meth:`follow` what waits for the command to end."""

    def __init__(self, *, describe: str) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._lines = Base64Lines()
        self._following: asyncio.Task[None] | None = None
        super().__init__(self._stdout(), describe=describe)

    def on_stdout(self, text: str) -> None:
        try:
            data = self._lines.feed(text)
        except ConnectionError as exc:
            self.stderr.add(f"\n{exc}\n")
            self._queue.put_nowait(None)
            return
        self._set_aside_stray()
        if data:
            self._queue.put_nowait(data)

    def follow(self, until_ended: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``until_ended`` (it waits for the command's end and sets ``exit_code``; it handles its
        own errors) in a background task named ``name``; when it is over, so is stdout."""
        self._following = asyncio.create_task(self._follow(until_ended), name=name)

    async def _follow(self, until_ended: Coroutine[Any, Any, None]) -> None:
        try:
            await until_ended
        finally:
            self._lines.finish()
            self._set_aside_stray()
            self._queue.put_nowait(None)

    def _set_aside_stray(self) -> None:
        for line in self._lines.stray:  # not the runtime's: shown with stderr, where it may explain a failure
            self.stderr.add(f"stray output: {line}\n")
        self._lines.stray.clear()

    async def _stdout(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    async def wait(self) -> int | None:
        """The command's exit code once it has ended (None when it did not say)."""
        if self._following is not None:
            await asyncio.shield(self._following)
        return self.exit_code

    async def stop_following(self) -> None:
        """Stop waiting for an end that will not come (the connection of a sandbox that is gone)."""
        task = self._following
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
