"""Daytona's cloud on this machine, behind autospecs of the real SDK's classes.

Each sandbox is a :class:`~rlm_core.testing.local_cloud.LocalSandbox` (a main process that outlives
its creator until deleted, and real processes with only the sandbox's variables). ``AsyncDaytona``
and ``Daytona`` are ``create_autospec`` of the SDK's real clients, a sandbox is an autospec of the real
``AsyncSandbox`` whose ``process`` and ``fs`` are autospecs of the real ``AsyncProcess`` and
``AsyncFileSystem``, every call is also bound against the real method's ``inspect.signature``, and the
answers are the SDK's real models. A session command's logs go through the SDK's own demultiplexer
(the ``\\x01``/``\\x02`` markers, incremental UTF-8 decoding) and its input is echoed into its stdout
unless ``suppress_input_echo`` is set, as the daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import daytona
from daytona._async.filesystem import AsyncFileSystem
from daytona._async.process import AsyncProcess
from daytona._utils.stream import _std_demux_loop
from daytona.common.process import STDERR_PREFIX, STDOUT_PREFIX
from daytona_toolbox_api_client_async import Command
from rlm_daytona.environment import daytona_environment
from rlm_daytona.transport import TAGS

from rlm_core.environments.lifecycle import Owner
from rlm_core.testing.local_cloud import LocalCloud, LocalSandbox, bind

API_KEY = "dtn_" + "k" * 40  # set on the host by the tests' cloud fixture
REAL_CLIENT = daytona.AsyncDaytona
REAL_BLOCKING_CLIENT = daytona.Daytona
REAL_SANDBOX = daytona.AsyncSandbox
REAL_BLOCKING_SANDBOX = daytona.Sandbox
REAL_PROCESS = AsyncProcess
REAL_FS = AsyncFileSystem
SECRET_PLACEHOLDER = "daytona-secret-placeholder:"  # what a sandbox sees of an organization Secret


class FakeSessionCommand:
    """One asynchronous session command: its process and its logs, as the daemon keeps them."""

    def __init__(self, command_id: str, child: asyncio.subprocess.Process, echo: bool) -> None:
        self.id = command_id
        self.child = child
        self.echo = echo
        self.logs: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.pumps = [
            asyncio.create_task(self._pump(child.stdout, STDOUT_PREFIX)),
            asyncio.create_task(self._pump(child.stderr, STDERR_PREFIX)),
        ]
        self.finished = asyncio.create_task(self._finish())

    async def _pump(self, stream: asyncio.StreamReader | None, prefix: bytes) -> None:
        assert stream is not None
        while chunk := await stream.read(1 << 16):
            await self.logs.put(prefix + chunk)

    async def _finish(self) -> None:
        await asyncio.gather(*self.pumps, return_exceptions=True)
        await self.child.wait()
        await self.logs.put(None)


class FakeDaytonaSandbox(LocalSandbox):
    def __init__(self, sandbox_id: str, params: Any) -> None:
        secrets = {name: SECRET_PLACEHOLDER + secret for name, secret in (params.secrets or {}).items()}
        super().__init__(sandbox_id, {**(params.env_vars or {}), **secrets})
        self.params = params
        self.labels: dict[str, str] = dict(params.labels or {})
        self.sessions: dict[str, dict[str, FakeSessionCommand]] = {}
        self.commands: list[FakeSessionCommand] = []  # every session command, deleted sessions' too
        self.handle: Any = None


class FakeDaytonaCloud(LocalCloud):
    """Install with :meth:`install`; inspect ``sandboxes``, ``calls``; inject failures with ``fail``."""

    sdk = daytona
    replaces = ("AsyncDaytona", "Daytona")

    def __init__(self) -> None:
        super().__init__()
        self.configs: list[Any] = []
        self.AsyncDaytona = create_autospec(REAL_CLIENT)
        self.AsyncDaytona.side_effect = self._new_client
        self.Daytona = create_autospec(REAL_BLOCKING_CLIENT)
        self.Daytona.side_effect = self._new_blocking_client

    def _checked(
        self, name: str, real: Callable[..., Any], implementation: Callable[[dict[str, Any]], Any]
    ) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            result = implementation(self.record(name, bind(real, args, kwargs)))
            return await result if inspect.isawaitable(result) else result

        return call

    def _live_sandbox(self, sandbox_id: str) -> FakeDaytonaSandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.ended:
            raise daytona.DaytonaNotFoundError(f"Sandbox with ID or name {sandbox_id} not found")
        assert isinstance(sandbox, FakeDaytonaSandbox)
        return sandbox

    # -- what the contract suites ask ----------------------------------------------------------

    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        return TAGS.read(self.sandboxes[sandbox_id].labels)

    def leave(self, owner: Owner) -> str:
        client = self.AsyncDaytona()
        params = daytona.CreateSandboxFromSnapshotParams(labels=TAGS.tags(owner))
        return str(asyncio.run(client.create(params)).id)

    def break_next_start(self) -> str:
        self.fail("exec", daytona.DaytonaError("Failed to execute command: toolbox unreachable"))
        return "creating .* failed: Failed to execute command: toolbox unreachable"

    # -- the clients ---------------------------------------------------------------------------

    def _new_client(self, *args: Any, **kwargs: Any) -> Any:
        self.configs.append(self.record("AsyncDaytona", bind(REAL_CLIENT.__init__, args, kwargs))["config"])
        client = create_autospec(REAL_CLIENT, instance=True)
        client.create.side_effect = self._checked("create", REAL_CLIENT.create, self._create)
        client.get.side_effect = self._checked(
            "get", REAL_CLIENT.get, lambda a: self._live_sandbox(a["sandbox_id_or_name"]).handle
        )
        client.list.side_effect = self._list
        client.close.side_effect = self._checked("close", REAL_CLIENT.close, lambda a: None)
        return client

    def _new_blocking_client(self, *args: Any, **kwargs: Any) -> Any:
        self.configs.append(
            self.record("Daytona", bind(REAL_BLOCKING_CLIENT.__init__, args, kwargs))["config"]
        )
        client = create_autospec(REAL_BLOCKING_CLIENT, instance=True)

        def get(*a: Any, **k: Any) -> Any:
            arguments = self.record("get_blocking", bind(REAL_BLOCKING_CLIENT.get, a, k))
            state = self._live_sandbox(arguments["sandbox_id_or_name"])
            sandbox = create_autospec(REAL_BLOCKING_SANDBOX, instance=True)
            sandbox.id = state.id

            def delete(*a: Any, **k: Any) -> None:
                self.record("delete_blocking", bind(REAL_BLOCKING_SANDBOX.delete, a, k))
                self._live_sandbox(state.id).end()

            sandbox.delete.side_effect = delete
            return sandbox

        client.get.side_effect = get
        return client

    async def _create(self, arguments: dict[str, Any]) -> Any:
        # The real create fills in the default snapshot's parameters when given none.
        params = arguments["params"] or daytona.CreateSandboxFromSnapshotParams(language="python")
        assert isinstance(
            params, daytona.CreateSandboxFromSnapshotParams | daytona.CreateSandboxFromImageParams
        )
        state = FakeDaytonaSandbox(self.new_id("fake-daytona-"), params)
        self.sandboxes[state.id] = state
        state.handle = self._handle(state)
        await self.creation_reached()  # it exists now, whether or not the caller hears of it
        return state.handle

    def _list(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        arguments = self.record("list", bind(REAL_CLIENT.list, args, kwargs))
        query = arguments["query"] or daytona.ListSandboxesQuery()
        wanted = query.labels or {}

        async def matching() -> AsyncIterator[Any]:
            for state in list(self.sandboxes.values()):
                if not state.ended and all(state.labels.get(k) == v for k, v in wanted.items()):
                    yield state.handle

        return matching()

    # -- a sandbox -----------------------------------------------------------------------------

    def _handle(self, state: FakeDaytonaSandbox) -> Any:
        sandbox = create_autospec(REAL_SANDBOX, instance=True)
        sandbox.id = state.id
        sandbox.labels = dict(state.labels)
        sandbox.delete.side_effect = self._checked(
            "delete", REAL_SANDBOX.delete, lambda a: self._live_sandbox(state.id).end()
        )
        sandbox.fs = create_autospec(REAL_FS, instance=True)
        sandbox.fs.upload_file.side_effect = self._in(
            state, "upload_file", REAL_FS.upload_file, self._upload_file
        )
        process = sandbox.process = create_autospec(REAL_PROCESS, instance=True)
        methods: dict[str, Callable[[FakeDaytonaSandbox, dict[str, Any]], Any]] = {
            "exec": self._exec,
            "create_session": self._create_session,
            "execute_session_command": self._execute_session_command,
            "get_session_command_logs_async": self._logs,
            "send_session_command_input": self._send_input,
            "get_session_command": self._get_command,
            "delete_session": self._delete_session,
        }
        for name, implementation in methods.items():
            getattr(process, name).side_effect = self._in(
                state, name, getattr(REAL_PROCESS, name), implementation
            )
        return sandbox

    def _in(
        self,
        state: FakeDaytonaSandbox,
        name: str,
        real: Callable[..., Any],
        implementation: Callable[..., Any],
    ) -> Any:
        """A call of a sandbox's toolbox: checked, then refused once the sandbox is gone."""

        def run(arguments: dict[str, Any]) -> Any:
            return implementation(self._live_sandbox(state.id), arguments)

        return self._checked(name, real, run)

    @staticmethod
    def _upload_file(state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> None:
        source, target = arguments["src"], Path(arguments["dst"])
        assert isinstance(source, bytes), "a str src is a local file's path to the real SDK"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source)

    @staticmethod
    async def _exec(state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> daytona.ExecuteResponse:
        child = await state.spawn(
            ["/bin/bash", "-c", arguments["command"]], arguments["cwd"], arguments["env"]
        )
        output, _ = await child.communicate()  # the real result holds stdout only
        return daytona.ExecuteResponse(
            exit_code=child.returncode or 0, result=output.decode("utf-8", "replace")
        )

    @staticmethod
    def _create_session(state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> None:
        if arguments["session_id"] in state.sessions:
            raise daytona.DaytonaConflictError(f"session {arguments['session_id']} already exists")
        state.sessions[arguments["session_id"]] = {}

    def _session(self, state: FakeDaytonaSandbox, session_id: str) -> dict[str, FakeSessionCommand]:
        if session_id not in state.sessions:
            raise daytona.DaytonaNotFoundError(f"session {session_id} not found")
        return state.sessions[session_id]

    async def _execute_session_command(self, state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> Any:
        session = self._session(state, arguments["session_id"])
        request = arguments["req"]
        assert isinstance(request, daytona.SessionExecuteRequest) and request.run_async
        child = await state.spawn(["/bin/bash", "-c", request.command], None)  # in the session's shell's cwd
        command = FakeSessionCommand(self.new_id("cmd-"), child, echo=not request.suppress_input_echo)
        session[command.id] = command
        state.commands.append(command)
        return daytona.SessionExecuteResponse(cmd_id=command.id)

    def _command(self, state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> FakeSessionCommand:
        command = self._session(state, arguments["session_id"]).get(arguments["command_id"])
        if command is None:
            raise daytona.DaytonaNotFoundError(f"command {arguments['command_id']} not found")
        return command

    async def _logs(self, state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> None:
        command = self._command(state, arguments)

        async def receive() -> bytes | None:
            return await command.logs.get()

        await _std_demux_loop(receive, arguments["on_stdout"], arguments["on_stderr"])

    async def _send_input(self, state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> None:
        command = self._command(state, arguments)
        data = arguments["data"].encode("utf-8")
        stdin = command.child.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise daytona.DaytonaError(f"Failed to send session command input: {exc}") from exc
        if command.echo:
            await command.logs.put(STDOUT_PREFIX + data)

    def _get_command(self, state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> Command:
        command = self._command(state, arguments)
        code = command.child.returncode
        exit_code = None if code is None else (code if code >= 0 else 128 - code)
        return Command(command="", exit_code=exit_code, id=command.id)

    @staticmethod
    def _delete_session(state: FakeDaytonaSandbox, arguments: dict[str, Any]) -> None:
        for command in state.sessions.pop(arguments["session_id"], {}).values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(command.child.pid, signal.SIGKILL)


def signalled_owner(workdir: str) -> tuple[Any, Callable[[], int]]:
    """The owner process of test_daytona_signals: a daytona environment on a fake cloud of its own."""
    return FakeDaytonaCloud().signalled_owner(daytona_environment(workdir=workdir))
