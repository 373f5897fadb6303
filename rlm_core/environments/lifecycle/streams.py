"""A process's byte stream as the transports read it: stdout as buffered chunks, the tail of stderr
kept for the messages that say why the process ended."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterable, AsyncIterator

logger = logging.getLogger("rlm_core.sandbox")

STDERR_TAIL_CHARS = 4000  # what is kept
STDERR_SHOWN_CHARS = 600  # what an error message shows of it
_DRAIN_CHUNK = 1 << 14


def exit_status(code: int | None) -> str:
    """How a process ended, in words: ``"exit code 1"``, ``"killed by SIGKILL"``; "" while unknown."""
    if code is None:
        return ""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    # 137 is how shells and sandbox services report a SIGKILLed process.
    return f"exit code {code}" + (" (killed: often the memory limit)" if code == 137 else "")


class StderrTail:
    """The last ``limit`` characters of a process's stderr. Drain the pipe into it: a process whose
    stderr nobody reads blocks once the pipe is full."""

    def __init__(self, limit: int = STDERR_TAIL_CHARS) -> None:
        self.limit = limit
        self.text = ""
        self._task: asyncio.Task[None] | None = None

    def add(self, chunk: bytes | str) -> None:
        text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes | bytearray) else str(chunk)
        self.text = (self.text + text)[-self.limit :]

    def drain(self, source: asyncio.StreamReader | AsyncIterable[bytes | str]) -> None:
        """Read ``source`` to its end in a background task (on the running loop)."""
        self._task = asyncio.create_task(self._read_all(source), name="rlm-sandbox-stderr")

    async def _read_all(self, source: asyncio.StreamReader | AsyncIterable[bytes | str]) -> None:
        with contextlib.suppress(Exception):  # a stderr that fails just ends the tail
            if isinstance(source, asyncio.StreamReader):  # iterating one would yield lines
                while chunk := await source.read(_DRAIN_CHUNK):
                    self.add(chunk)
                return
            async for piece in source:
                self.add(piece)

    async def finish(self, timeout: float = 1.0) -> None:
        """Wait (up to ``timeout``) for the drain to reach the end of stderr, then stop it."""
        task = self._task
        if task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        task.cancel()

    def summary(self, chars: int = STDERR_SHOWN_CHARS) -> str:
        """``"stderr: <its last chars>"``, or "" when the process wrote nothing there."""
        tail = self.text.strip()
        return f"stderr: {tail[-chars:]}" if tail else ""


class ProcessByteStream(abc.ABC):
    """A :class:`~rlm_core.environments.ByteStream` over a process whose stdout arrives as chunks (an
    SDK's async iterator of bytes or str, a socket reader). A transport subclasses it with ``send``
    (write to stdin) and ``end_process`` (stop the process and what it started); reading, EOF,
    closing once and ``diagnostics`` are done here.

    ``stderr``, when given, is drained into :attr:`stderr` (construct the stream on the event loop's
    thread then); a transport that gets stderr mixed into one channel calls ``stderr.add`` itself.
    """

    exit_code: int | None = None  # set (or overridden) by the transport once the process has ended

    def __init__(
        self,
        stdout: AsyncIterable[bytes | str],
        *,
        stderr: asyncio.StreamReader | AsyncIterable[bytes | str] | None = None,
        describe: str = "the sandbox",
    ) -> None:
        self.describe = describe
        self.stderr = StderrTail()
        self._chunks: AsyncIterator[bytes | str] = aiter(stdout)
        self._buffer = bytearray()
        self._eof = False
        self._closed = False
        if stderr is not None:
            self.stderr.drain(stderr)

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer and not self._eof:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._eof = True
                break
            except Exception as exc:  # the stream or the sandbox went away under it: that is EOF too
                logger.info("reading from %s ended: %s", self.describe, exc)
                self._eof = True
                break
            self._buffer += chunk.encode("utf-8") if isinstance(chunk, str) else chunk
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    async def write(self, data: bytes) -> None:
        try:
            await self.send(data)
        except Exception as exc:
            raise ConnectionError(f"the runtime in {self.describe} is gone: {exc}") from exc

    @abc.abstractmethod
    async def send(self, data: bytes) -> None:
        """Write all of ``data`` to the process's stdin; raise when it is gone."""

    @abc.abstractmethod
    async def end_process(self) -> None:
        """Make sure the process and everything it started have ended; never raise for one already gone."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.end_process()
        finally:
            await self.stderr.finish()
            close_chunks = getattr(self._chunks, "aclose", None)
            if close_chunks is not None:
                with contextlib.suppress(Exception):
                    await close_chunks()

    def status(self) -> str:
        """How the process ended, for :meth:`diagnostics`; a transport may say more (a sandbox gone)."""
        return exit_status(self.exit_code)

    def diagnostics(self) -> str:
        return "; ".join(part for part in (self.status(), self.stderr.summary()) if part)
