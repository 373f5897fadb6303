"""Prime Intellect's cloud on this machine, behind autospecs of the real SDK's classes.

Each sandbox is a :class:`~rlm_core.testing.local_cloud.LocalSandbox` (a main process that outlives
its creator until deleted, and real processes with only the sandbox's environment). The
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
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import prime_sandboxes
from connectrpc.client import ConnectClient
from prime_sandboxes._proto.command_session import command_session_pb2 as pb
from rlm_prime.transport import LABELS

from rlm_core.environments.lifecycle import Owner
from rlm_core.testing.local_cloud import LocalCloud, LocalSandbox, bind, output_chunks

REAL_CLIENT = prime_sandboxes.AsyncSandboxClient
REAL_BLOCKING_CLIENT = prime_sandboxes.SandboxClient
REAL_API_CLIENT = prime_sandboxes.APIClient
# The AsyncSandboxClient methods the fake serves (besides aclose), each bound to the real signature.
CLIENT_METHODS = (
    "create",
    "wait_for_creation",
    "execute_command",
    "upload_bytes",
    "open_process",
    "delete",
    "list",
)


class FakePrimeSandbox(LocalSandbox):
    def __init__(self, sandbox_id: str, request: prime_sandboxes.CreateSandboxRequest) -> None:
        super().__init__(sandbox_id, {**(request.environment_vars or {}), **(request.secrets or {})})
        self.request = request
        self.live_processes: list[asyncio.subprocess.Process] = []  # those started by open_process
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


def _event(**fields: Any) -> pb.StartResponse:
    return pb.StartResponse(event=pb.CommandSessionEvent(**fields))


class FakePrimeCloud(LocalCloud):
    """Install with :meth:`install`; inspect ``sandboxes``, ``calls``; inject failures with ``fail``."""

    sdk = prime_sandboxes
    replaces = ("AsyncSandboxClient", "SandboxClient", "APIClient")

    def __init__(self) -> None:
        super().__init__()
        self.clients_made: list[dict[str, Any]] = []
        self.AsyncSandboxClient = create_autospec(REAL_CLIENT)
        self.AsyncSandboxClient.side_effect = self._new_client
        client = self.client = create_autospec(REAL_CLIENT, instance=True)
        for name in CLIENT_METHODS:
            getattr(client, name).side_effect = self._checked(name, getattr(self, f"_{name}"))
        client.aclose.side_effect = self._checked("aclose", lambda arguments: None)
        self.SandboxClient = create_autospec(REAL_BLOCKING_CLIENT)
        self.SandboxClient.return_value.delete.side_effect = self._checked_blocking_delete
        self.APIClient = create_autospec(REAL_API_CLIENT)

    def _new_client(self, *args: Any, **kwargs: Any) -> Any:
        self.clients_made.append(bind(REAL_CLIENT.__init__, args, kwargs))
        return self.client

    def _checked(self, name: str, implementation: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
        real = getattr(REAL_CLIENT, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = implementation(self.record(name, bind(real, args, kwargs)))
            return await result if inspect.isawaitable(result) else result

        return call

    def _checked_blocking_delete(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arguments = self.record("delete", bind(REAL_BLOCKING_CLIENT.delete, args, kwargs))
        self._sandbox(arguments["sandbox_id"]).end()
        return {}

    def _sandbox(self, sandbox_id: str) -> FakePrimeSandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.ended:
            raise prime_sandboxes.SandboxNotRunningError(sandbox_id, "TERMINATED")
        assert isinstance(sandbox, FakePrimeSandbox)
        return sandbox

    # -- what the contract suites ask ----------------------------------------------------------

    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        return LABELS.read(self.sandboxes[sandbox_id].model.labels)

    def leave(self, owner: Owner) -> str:
        request = prime_sandboxes.CreateSandboxRequest(
            name=f"rlm-{owner.run_id}", docker_image="python:3.11-slim", labels=LABELS.labels(owner)
        )
        return str(asyncio.run(self.client.create(request)).id)

    def break_next_start(self) -> str:
        self.fail("execute_command", prime_sandboxes.APIError("gateway timeout"))
        return r"creating the working directory .* failed: gateway timeout"

    # -- the client's methods ------------------------------------------------------------------

    async def _create(self, arguments: dict[str, Any]) -> prime_sandboxes.Sandbox:
        request = arguments["request"]
        assert isinstance(request, prime_sandboxes.CreateSandboxRequest)
        sandbox = FakePrimeSandbox(self.new_id("fake"), request)
        self.sandboxes[sandbox.id] = sandbox
        await self.creation_reached()  # it exists now, whether or not the caller hears of it
        return sandbox.model

    def _wait_for_creation(self, arguments: dict[str, Any]) -> None:
        self._sandbox(arguments["sandbox_id"])

    @staticmethod
    async def _spawn(sandbox: FakePrimeSandbox, arguments: dict[str, Any]) -> asyncio.subprocess.Process:
        """Run a command as the sandbox daemon does: through a shell, with only the sandbox's variables."""
        return await sandbox.spawn(
            ["sh", "-c", arguments["command"]], arguments["working_dir"], arguments["env"]
        )

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
        self._sandbox(arguments["sandbox_id"]).end()
        return {}

    def _list(self, arguments: dict[str, Any]) -> prime_sandboxes.SandboxListResponse:
        wanted = set(arguments["labels"] or [])
        matching = [
            s.model
            for s in self.sandboxes.values()
            if wanted <= set(s.model.labels) and not (arguments["exclude_terminated"] and s.ended)
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
        async with contextlib.aclosing(output_chunks(child)) as chunks:
            async for kind, chunk in chunks:
                yield _event(data=pb.CommandSessionEvent.DataEvent(**{kind: chunk}))
        code = await child.wait()
        yield _event(end=pb.CommandSessionEvent.EndEvent(exit_code=code, exited=True))
