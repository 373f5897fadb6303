"""The byte stream to the runtime: one asynchronous command in a Daytona session, its input sent with
``send_session_command_input``, its logs followed over the session's log stream.

A session command takes its input as text (``send_session_command_input(data: str)``) and its logs
come back as text with ``\\x01\\x01\\x01``/``\\x02\\x02\\x02`` markers between stdout and stderr: the
runtime's binary frames (4-byte length headers) fit neither, so the runtime runs behind the core's
two-way relay (base64 lines both ways).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm_core.environments import lifecycle

if TYPE_CHECKING:
    from rlm_daytona.transport import DaytonaTransport

_EXIT_GRACE = 0.5
_REQUEST_TIMEOUT = 15.0


class DaytonaSessionStream(lifecycle.RelayedCommandStream):
    """A :class:`~rlm_core.environments.ByteStream` over ``execute_session_command(..., run_async=True)``
    in a session of its own. The end of the log stream is the end of stdout; the session's input has
    no EOF, so the core's in-band ``shutdown`` ends the runtime and closing kills what is left."""

    def __init__(self, transport: DaytonaTransport, group: lifecycle.RuntimeGroup, session_id: str) -> None:
        super().__init__(describe=transport.describe())
        self.transport = transport
        self.group = group
        self.session_id = session_id
        self.command_id = ""

    @property
    def process(self) -> Any:
        return self.transport.require().process

    async def launch(self, command: str) -> None:
        """Open the session and start ``command`` (one shell line) in it, asynchronously."""
        import daytona

        await self.process.create_session(self.session_id, request_timeout=_REQUEST_TIMEOUT)
        request = daytona.SessionExecuteRequest(command=command, run_async=True, suppress_input_echo=True)
        response = await self.process.execute_session_command(self.session_id, request)
        self.command_id = str(response.cmd_id)
        self.follow(self._follow_logs(), name="rlm-daytona-logs")

    async def _follow_logs(self) -> None:
        try:
            await self.process.get_session_command_logs_async(
                self.session_id, self.command_id, self.on_stdout, self.stderr.add
            )
            command = await self.process.get_session_command(
                self.session_id, self.command_id, request_timeout=_REQUEST_TIMEOUT
            )
            self.exit_code = command.exit_code
        except Exception as exc:  # the log stream or the sandbox went away
            self.stderr.add(f"\nthe command's log stream ended: {exc}\n")

    async def send(self, data: bytes) -> None:
        await self.process.send_session_command_input(
            self.session_id, self.command_id, lifecycle.encode_input(data), request_timeout=_REQUEST_TIMEOUT
        )

    async def end_process(self) -> None:
        if self.transport.sandbox is not None:  # else the sandbox, and all in it, is gone already
            # The runtime's group is killed from inside the sandbox (Daytona's API cannot signal),
            # then the session goes, with whatever else runs in it.
            self.exit_code = await self.group.end(self.wait, self.transport.run_quietly, _EXIT_GRACE)
            await lifecycle.quietly(
                lambda: self.process.delete_session(self.session_id, request_timeout=_REQUEST_TIMEOUT),
                _REQUEST_TIMEOUT,
            )
        await self.stop_following()  # the log stream of a sandbox gone
