"""One live runtime process in a sandbox, seen from the host: framed messages both ways, the requests
waiting for their results, and the sub-calls the runtime has in flight."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from rlm_core.environments.runtime import FRAME_HEADER_BYTES, MAX_FRAME_BYTES, encode_frame
from rlm_core.environments.transport import ByteStream
from rlm_core.errors import SandboxError

logger = logging.getLogger("rlm_core.sandbox")

_READ_CHUNK = 1 << 16


class SandboxDiedError(SandboxError):
    """The runtime process in the sandbox ended (crash, kill, OOM, sandbox removed)."""


class Connection:
    """One live runtime process: framed messages both ways, pending requests, sub-calls in flight."""

    def __init__(
        self,
        stream: ByteStream,
        serve_call: Callable[[str, dict[str, Any]], Any],
    ) -> None:
        self.stream = stream
        self.serve_call = serve_call
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.call_tasks: set[asyncio.Task[None]] = set()
        self.write_lock = asyncio.Lock()
        self.ids = itertools.count(1)
        self.dead_reason: str | None = None
        self.reader = asyncio.create_task(self._read_loop(), name="rlm-sandbox-reader")

    @property
    def alive(self) -> bool:
        return self.dead_reason is None

    async def send(self, message: dict[str, Any]) -> None:
        data = encode_frame(message)
        async with self.write_lock:
            if not self.alive:
                raise SandboxDiedError(self.dead_reason or "the sandbox runtime is gone")
            try:
                await self.stream.write(data)
            except (OSError, ConnectionError) as exc:
                raise SandboxDiedError(f"writing to the sandbox runtime failed: {exc}") from exc

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a message with a fresh id and wait for the ``result`` with that id."""
        request_id = f"h{next(self.ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            await self.send({**message, "id": request_id})
            return await future
        finally:
            self.pending.pop(request_id, None)

    async def _read_loop(self) -> None:
        buffer = bytearray()
        reason = "the sandbox runtime closed its output (the process exited)"
        try:
            while True:
                while len(buffer) < FRAME_HEADER_BYTES:
                    chunk = await self.stream.read(_READ_CHUNK)
                    if not chunk:
                        return
                    buffer += chunk
                size = int.from_bytes(buffer[:FRAME_HEADER_BYTES], "big")
                if size > MAX_FRAME_BYTES:
                    reason = f"the sandbox runtime sent a {size}-byte frame (corrupt stream)"
                    return
                end = FRAME_HEADER_BYTES + size
                while len(buffer) < end:
                    chunk = await self.stream.read(max(_READ_CHUNK, end - len(buffer)))
                    if not chunk:
                        return
                    buffer += chunk
                body = bytes(buffer[FRAME_HEADER_BYTES:end])
                del buffer[:end]
                try:
                    message = json.loads(body.decode("utf-8"))
                except ValueError:
                    reason = "the sandbox runtime sent a frame that is not JSON (corrupt stream)"
                    return
                self._dispatch(message)
        except asyncio.CancelledError:
            reason = "the connection to the sandbox runtime was closed"
            raise
        except Exception as exc:
            reason = f"reading from the sandbox runtime failed: {type(exc).__name__}: {exc}"
        finally:
            self._mark_dead(reason)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "result":
            future = self.pending.get(str(message.get("id")))
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "call":
            task = asyncio.create_task(self._serve(message), name="rlm-sandbox-call")
            self.call_tasks.add(task)
            task.add_done_callback(self.call_tasks.discard)
        elif kind == "ready":
            if not self.ready.done():
                self.ready.set_result(message)
        elif kind == "log":
            logger.log(
                logging.WARNING if message.get("level") == "warning" else logging.INFO,
                "sandbox runtime: %s",
                message.get("message"),
            )

    async def _serve(self, message: dict[str, Any]) -> None:
        call_id = message.get("id")
        reply: dict[str, Any] = {"type": "reply", "id": call_id}
        try:
            result = await self.serve_call(str(message.get("function")), dict(message.get("args") or {}))
            json.dumps(result)  # fail here, with a clear message, rather than in the runtime
            reply["result"] = result
        except asyncio.CancelledError:
            raise
        except (TypeError, ValueError) as exc:
            reply["error"] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            reply["error"] = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(SandboxError):
            await self.send(reply)

    def _mark_dead(self, reason: str) -> None:
        if self.dead_reason is not None:
            return
        self.dead_reason = reason
        error = SandboxDiedError(reason)
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()  # mark retrieved: nobody may be waiting yet
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(error)
        for task in list(self.call_tasks):
            task.cancel()

    async def close(self) -> None:
        """Kill the process (the stream does) and stop the reader and every sub-call in flight."""
        self._mark_dead("the connection to the sandbox runtime was closed")
        with contextlib.suppress(Exception):
            await self.stream.close()
        self.reader.cancel()
        for task in [self.reader, *self.call_tasks]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
