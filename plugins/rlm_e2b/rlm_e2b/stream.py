"""The byte stream to the runtime: one E2B background command started with stdin, its relayed stdout
decoded back to bytes, its stderr kept as the tail that says why it ended."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from rlm_core.environments import lifecycle
from rlm_e2b.relay import Base64Lines

if TYPE_CHECKING:
    from rlm_e2b.transport import E2BTransport

_EXIT_GRACE = 0.5
_REQUEST_TIMEOUT = 15.0


class E2BCommandStream(lifecycle.ProcessByteStream):
    """A :class:`~rlm_core.environments.ByteStream` over ``commands.run(..., background=True,
    stdin=True)``. The SDK calls back with stdout and stderr text; the end of the command (its
    ``wait()``) is the end of stdout."""

    def __init__(self, transport: E2BTransport, group: lifecycle.RuntimeGroup) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._lines = Base64Lines()
        super().__init__(self._stdout(), describe=transport.describe())
        self.transport = transport
        self.group = group
        self.handle: Any = None
        self._ended: asyncio.Task[None] | None = None

    async def launch(self, command: str) -> None:
        """Start ``command`` (one shell line) in the transport's sandbox, in its workdir."""
        sandbox = self.transport.require()
        self.handle = await sandbox.commands.run(
            command,
            background=True,
            stdin=True,
            cwd=self.transport.workdir,
            on_stdout=self._on_stdout,
            on_stderr=self.stderr.add,
            timeout=0,  # the command lives as long as the runtime: no connection limit
            request_timeout=self.transport.request_timeout,
        )
        self._ended = asyncio.create_task(self._wait_for_end(), name="rlm-e2b-command")

    def _on_stdout(self, text: str) -> None:
        try:
            data = self._lines.feed(text)
        except ConnectionError as exc:
            self.stderr.add(f"\n{exc}\n")
            self._queue.put_nowait(None)
            return
        self._set_aside_stray()
        if data:
            self._queue.put_nowait(data)

    async def _wait_for_end(self) -> None:
        import e2b

        try:
            result = await self.handle.wait()
            self.exit_code = result.exit_code
        except e2b.CommandExitException as exc:
            self.exit_code = exc.exit_code
        except Exception as exc:  # the connection or the sandbox went away
            self.stderr.add(f"\nthe command's connection ended: {exc}\n")
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

    async def send(self, data: bytes) -> None:
        await self.handle.send_stdin(data, request_timeout=_REQUEST_TIMEOUT)

    async def _wait(self) -> int | None:
        if self._ended is not None:
            await asyncio.shield(self._ended)
        return self.exit_code

    async def end_process(self) -> None:
        if self.handle is None:
            return
        # stdin EOF ends the runtime (after the core's in-band `shutdown` it is already ending); then
        # its group is killed from inside the sandbox, and the relay with the command handle.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.handle.close_stdin(request_timeout=_REQUEST_TIMEOUT), _REQUEST_TIMEOUT
            )
        self.exit_code = await self.group.end(self._wait, self.transport.run_quietly, _EXIT_GRACE)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.handle.kill(), _REQUEST_TIMEOUT)
        if self._ended is not None and not self._ended.done():
            self._ended.cancel()
            with contextlib.suppress(BaseException):
                await self._ended
