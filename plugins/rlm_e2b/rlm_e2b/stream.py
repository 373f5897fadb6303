"""The byte stream to the runtime: one E2B background command started with stdin, its relayed stdout
decoded back to bytes, its stderr kept as the tail that says why it ended.

The SDK hands the command's stdout over as UTF-8 text (decoded with replacement), which would mangle
the runtime's binary frame headers, so the runtime runs behind the core's stdout relay. stdin needs
nothing: ``send_stdin`` carries bytes unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm_core.environments import lifecycle

if TYPE_CHECKING:
    from rlm_e2b.transport import E2BTransport

_EXIT_GRACE = 0.5
_REQUEST_TIMEOUT = 15.0


class E2BCommandStream(lifecycle.RelayedCommandStream):
    """A :class:`~rlm_core.environments.ByteStream` over ``commands.run(..., background=True,
    stdin=True)``. The SDK calls back with stdout and stderr text; the end of the command (its
    ``wait()``) is the end of stdout."""

    def __init__(self, transport: E2BTransport, group: lifecycle.RuntimeGroup) -> None:
        super().__init__(describe=transport.describe())
        self.transport = transport
        self.group = group
        self.handle: Any = None

    async def launch(self, command: str) -> None:
        """Start ``command`` (one shell line) in the transport's sandbox, in its workdir."""
        sandbox = self.transport.require()
        self.handle = await sandbox.commands.run(
            command,
            background=True,
            stdin=True,
            cwd=self.transport.workdir,
            on_stdout=self.on_stdout,
            on_stderr=self.stderr.add,
            timeout=0,  # the command lives as long as the runtime: no connection limit
            request_timeout=self.transport.request_timeout,
        )
        self.follow(self._wait_for_end(), name="rlm-e2b-command")

    async def _wait_for_end(self) -> None:
        import e2b

        try:
            result = await self.handle.wait()
            self.exit_code = result.exit_code
        except e2b.CommandExitException as exc:
            self.exit_code = exc.exit_code
        except Exception as exc:  # the connection or the sandbox went away
            self.stderr.add(f"\nthe command's connection ended: {exc}\n")

    async def send(self, data: bytes) -> None:
        await self.handle.send_stdin(data, request_timeout=_REQUEST_TIMEOUT)

    async def end_process(self) -> None:
        if self.handle is None:
            return
        # stdin EOF ends the runtime (after the core's in-band `shutdown` it is already ending); then
        # its group is killed from inside the sandbox, and the relay with the command handle.
        handle = self.handle
        await lifecycle.quietly(
            lambda: handle.close_stdin(request_timeout=_REQUEST_TIMEOUT), _REQUEST_TIMEOUT
        )
        self.exit_code = await self.group.end(self.wait, self.transport.run_quietly, _EXIT_GRACE)
        await lifecycle.quietly(handle.kill, _REQUEST_TIMEOUT)
        await self.stop_following()
