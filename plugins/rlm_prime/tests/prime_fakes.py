"""Prime Intellect's cloud on this machine, behind autospecs of the real SDK's classes.

Each fake sandbox is a directory plus real processes: its main process (``sleep``) runs in its own
session, so like a cloud sandbox it outlives the process that created it until it is deleted. The
client is ``create_autospec`` of the real ``AsyncSandboxClient`` (every call is also bound against
the real method's ``inspect.signature``), it answers with the SDK's real pydantic models, and
``open_process`` returns the SDK's real ``AsyncSandboxProcess`` fed with the real command-session
protobuf events of a local process: the same stdout/stderr iteration, stdin writes, signals and
exit handling the SDK has, with no stdin EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import itertools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import prime_sandboxes
import pytest
from connectrpc.client import ConnectClient
from prime_sandboxes._proto.command_session import command_session_pb2 as pb

REAL_CLIENT = prime_sandboxes.AsyncSandboxClient
REAL_BLOCKING_CLIENT = prime_sandboxes.SandboxClient
REAL_API_CLIENT = prime_sandboxes.APIClient
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def bind(real: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments, with defaults, as the real (unbound) SDK method would receive them."""
    bound = inspect.signature(real).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


class FakePrimeSandbox:
    def __init__(self, sandbox_id: str, request: prime_sandboxes.CreateSandboxRequest) -> None:
        self.id = sandbox_id
        self.request = request
        self.env = {
            "PATH": SANDBOX_PATH,
            "HOME": "/root",
            **(request.environment_vars or {}),
            **(request.secrets or {}),
        }
        self.main = subprocess.Popen(["sleep", "3600"], start_new_session=True)
        self.processes: list[asyncio.subprocess.Process] = []  # every command it ran
        self.live_processes: list[asyncio.subprocess.Process] = []  # those started by open_process
        self.deleted = False
        now = datetime.datetime.now(datetime.UTC)
        self.model = prime_sandboxes.Sandbox.model_validate(
            {
                **request.model_dump(exclude_none=True),
                "id": sandbox_id,
                "docker_image": request.docker_image or "python:3.11-slim",
                "disk_size_gb": request.disk_size_gb or 10.0,
                "disk_mount_path": "/",
                "status": "RUNNING",
                "created_at": now,
                "updated_at": now,
            }
        )

    def kill_everything(self) -> None:
        self.deleted = True
        for pid in [self.main.pid, *(p.pid for p in self.processes)]:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.main.wait(timeout=5)


def _event(**fields: Any) -> pb.StartResponse:
    return pb.StartResponse(event=pb.CommandSessionEvent(**fields))


class FakePrimeCloud:
    """Install with :meth:`install`; inspect ``sandboxes``, ``calls``; inject failures with ``fail``."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, FakePrimeSandbox] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, BaseException] = {}
        self.create_delay = 0.0
        self.clients_made: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

        self.AsyncSandboxClient = create_autospec(REAL_CLIENT)
        self.AsyncSandboxClient.side_effect = self._new_client
        client = self.client = create_autospec(REAL_CLIENT, instance=True)
        for name in (
            "create",
            "wait_for_creation",
            "execute_command",
            "upload_bytes",
            "open_process",
            "delete",
            "list",
        ):
            getattr(client, name).side_effect = self._checked(name, getattr(self, f"_{name}"))
        client.aclose.side_effect = self._checked("aclose", lambda arguments: None)
        self.SandboxClient = create_autospec(REAL_BLOCKING_CLIENT)
        self.SandboxClient.return_value.delete.side_effect = self._checked_blocking_delete
        self.APIClient = create_autospec(REAL_API_CLIENT)

    # -- installation --------------------------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("AsyncSandboxClient", "SandboxClient", "APIClient"):
            monkeypatch.setattr(prime_sandboxes, name, getattr(self, name))

    def install_for_process(self) -> None:
        """For a script run in a child process (no monkeypatch there; the process ends anyway)."""
        for name in ("AsyncSandboxClient", "SandboxClient", "APIClient"):
            setattr(prime_sandboxes, name, getattr(self, name))

    def fail(self, name: str, error: BaseException) -> None:
        """Make the next call of client method ``name`` (e.g. "create", "upload_bytes") raise ``error``."""
        self.failures[name] = error

    def _new_client(self, *args: Any, **kwargs: Any) -> Any:
        self.clients_made.append(bind(REAL_CLIENT.__init__, args, kwargs))
        return self.client

    def _checked(self, name: str, implementation: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
        real = getattr(REAL_CLIENT, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            arguments = bind(real, args, kwargs)
            self.calls.append((name, arguments))
            failure = self.failures.pop(name, None)
            if failure is not None:
                raise failure
            result = implementation(arguments)
            return await result if inspect.isawaitable(result) else result

        return call

    def _checked_blocking_delete(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = bind(REAL_BLOCKING_CLIENT.delete, args, kwargs)
        self.calls.append(("delete", arguments))
        self._sandbox(arguments["sandbox_id"]).kill_everything()
        return {}

    def _sandbox(self, sandbox_id: str) -> FakePrimeSandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.deleted:
            raise prime_sandboxes.SandboxNotRunningError(sandbox_id, "TERMINATED")
        return sandbox

    # -- the client's methods ------------------------------------------------------------------

    async def _create(self, arguments: dict[str, Any]) -> prime_sandboxes.Sandbox:
        request = arguments["request"]
        assert isinstance(request, prime_sandboxes.CreateSandboxRequest)
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        sandbox = FakePrimeSandbox(f"fake{next(self._ids):04d}", request)
        self.sandboxes[sandbox.id] = sandbox
        return sandbox.model

    def _wait_for_creation(self, arguments: dict[str, Any]) -> None:
        self._sandbox(arguments["sandbox_id"])

    @staticmethod
    async def _spawn(sandbox: FakePrimeSandbox, arguments: dict[str, Any]) -> asyncio.subprocess.Process:
        """Run a command as the sandbox daemon does: through a shell, with only the sandbox's variables."""
        child = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            arguments["command"],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=arguments["working_dir"] or "/",
            env={**sandbox.env, **(arguments["env"] or {})},
            start_new_session=True,  # like a cloud process: it does not die with its creator
        )
        sandbox.processes.append(child)
        return child

    async def _execute_command(self, arguments: dict[str, Any]) -> prime_sandboxes.CommandResponse:
        child = await self._spawn(self._sandbox(arguments["sandbox_id"]), arguments)
        stdout, stderr = await child.communicate()
        return prime_sandboxes.CommandResponse(
            stdout=stdout.decode(), stderr=stderr.decode(), exit_code=child.returncode or 0
        )

    def _upload_bytes(self, arguments: dict[str, Any]) -> prime_sandboxes.FileUploadResponse:
        self._sandbox(arguments["sandbox_id"])
        target = Path(arguments["file_path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(arguments["file_bytes"]))
        return prime_sandboxes.FileUploadResponse(
            success=True,
            path=str(target),
            size=target.stat().st_size,
            timestamp=datetime.datetime.now(datetime.UTC),
        )

    def _delete(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self._sandbox(arguments["sandbox_id"]).kill_everything()
        return {}

    def _list(self, arguments: dict[str, Any]) -> prime_sandboxes.SandboxListResponse:
        wanted = set(arguments["labels"] or [])
        matching = [
            s.model
            for s in self.sandboxes.values()
            if wanted <= set(s.model.labels) and not (arguments["exclude_terminated"] and s.deleted)
        ]
        page, per_page = arguments["page"], arguments["per_page"]
        chunk = matching[(page - 1) * per_page : page * per_page]
        return prime_sandboxes.SandboxListResponse(
            sandboxes=chunk,
            total=len(matching),
            page=page,
            per_page=per_page,
            has_next=page * per_page < len(matching),
        )

    async def _open_process(self, arguments: dict[str, Any]) -> prime_sandboxes.AsyncSandboxProcess:
        sandbox = self._sandbox(arguments["sandbox_id"])
        child = await self._spawn(sandbox, arguments)
        sandbox.live_processes.append(child)
        assert child.stdin is not None
        stdin = child.stdin

        async def write_stdin(data: bytes) -> None:
            stdin.write(data)
            await stdin.drain()

        async def send_signal(kind: str) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM if kind == "terminate" else signal.SIGKILL)

        stream_client = create_autospec(ConnectClient, instance=True)
        return await prime_sandboxes.AsyncSandboxProcess._create(
            stream_client, self._session_events(child), write_stdin, send_signal
        )

    @staticmethod
    async def _session_events(child: asyncio.subprocess.Process) -> AsyncIterator[pb.StartResponse]:
        """What the sandbox daemon streams for one command session: start, output, end."""
        yield _event(start=pb.CommandSessionEvent.StartEvent(pid=child.pid))
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

        async def pump(stream: asyncio.StreamReader | None, kind: str) -> None:
            assert stream is not None
            while chunk := await stream.read(1 << 16):
                await queue.put((kind, chunk))
            await queue.put((kind, b""))

        pumps = [
            asyncio.create_task(pump(child.stdout, "stdout")),
            asyncio.create_task(pump(child.stderr, "stderr")),
        ]
        try:
            open_streams = 2
            while open_streams:
                kind, chunk = await queue.get()
                if not chunk:
                    open_streams -= 1
                    continue
                yield _event(data=pb.CommandSessionEvent.DataEvent(**{kind: chunk}))
            code = await child.wait()
            yield _event(end=pb.CommandSessionEvent.EndEvent(exit_code=code, exited=True))
        finally:
            for task in pumps:
                task.cancel()

    # -- test helpers --------------------------------------------------------------------------

    def live(self) -> list[FakePrimeSandbox]:
        return [sandbox for sandbox in self.sandboxes.values() if not sandbox.deleted]

    def shutdown(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.kill_everything()
