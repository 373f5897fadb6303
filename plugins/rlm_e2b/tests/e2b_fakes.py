"""E2B's cloud on this machine, behind autospecs of the real SDK's classes.

Each sandbox is a :class:`~rlm_core.testing.local_cloud.LocalSandbox` (a main process that outlives
its creator until killed, and real processes with only the sandbox's variables). ``AsyncSandbox`` and
``Sandbox`` are ``create_autospec`` of e2b's real classes, a sandbox's ``files`` and ``commands`` are
autospecs of the real ``Filesystem`` and ``Commands``, and every call is also bound against the real
method's ``inspect.signature`` (with the SDK's ``ApiParams`` keys for its ``**opts``), so a keyword the
real SDK would reject fails here too. A background command is the SDK's own ``AsyncCommandHandle``
fed with the real envd protobuf events of a local process: the same UTF-8 decoding of stdout, the
same ``wait()``, ``send_stdin``, ``close_stdin`` and ``kill`` paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import os
import shlex
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import e2b
import e2b.sandbox_async.commands.command
import e2b.sandbox_async.filesystem.filesystem
from e2b.envd.process import process_pb
from protobuf import Oneof
from rlm_e2b.environment import e2b_environment
from rlm_e2b.transport import TAGS

from rlm_core.environments.lifecycle import Owner
from rlm_core.testing.local_cloud import LocalCloud, LocalSandbox, bind, output_chunks

API_KEY = "e2b_" + "k" * 40  # set on the host by the tests' cloud fixture
REAL_ASYNC_SANDBOX = e2b.AsyncSandbox
REAL_SANDBOX = e2b.Sandbox
REAL_COMMANDS = e2b.sandbox_async.commands.command.Commands
REAL_FILESYSTEM = e2b.sandbox_async.filesystem.filesystem.Filesystem
REAL_PAGINATOR = e2b.AsyncSandboxPaginator
API_PARAMS = frozenset(e2b.ApiParams.__annotations__)


def bind_api(real: Callable[..., Any], args: Any, kwargs: Any, method: bool) -> dict[str, Any]:
    """``bind``, and the ``**opts`` a real call passes on as ``ApiParams`` must be ApiParams keys."""
    arguments = bind(real, tuple(args), dict(kwargs), method)
    opts = arguments.pop("opts", {})
    unknown = set(opts) - API_PARAMS
    if unknown:
        raise TypeError(f"{real.__qualname__}() got unexpected keyword arguments {sorted(unknown)}")
    return {**arguments, **opts}


def _event(**fields: Any) -> process_pb.StartResponse:
    return process_pb.StartResponse(event=process_pb.ProcessEvent(**fields))


class FakeE2BSandbox(LocalSandbox):
    def __init__(self, sandbox_id: str, arguments: dict[str, Any]) -> None:
        super().__init__(sandbox_id, arguments.get("envs") or {})
        self.arguments = arguments
        self.metadata: dict[str, str] = dict(arguments.get("metadata") or {})
        self.started_at = datetime.datetime.now(datetime.UTC)
        self.background: list[asyncio.subprocess.Process] = []  # the commands run with background=True

    def info(self) -> e2b.SandboxInfo:
        """What the real listing returns for this sandbox."""
        return e2b.SandboxInfo(
            sandbox_id=self.id,
            sandbox_domain=None,
            template_id=self.arguments.get("template") or "base",
            name=None,
            metadata=dict(self.metadata),
            started_at=self.started_at,
            end_at=self.started_at + datetime.timedelta(seconds=self.arguments.get("timeout") or 300),
            state=e2b.SandboxState.RUNNING,
            cpu_count=2,
            memory_mb=512,
            envd_version="0.2.0",
        )


class FakeE2BCloud(LocalCloud):
    """Install with :meth:`install`; inspect ``sandboxes``, ``calls``; inject failures with ``fail``."""

    sdk = e2b
    replaces = ("AsyncSandbox", "Sandbox")

    def __init__(self) -> None:
        super().__init__()
        self.AsyncSandbox = create_autospec(REAL_ASYNC_SANDBOX)
        self.AsyncSandbox.create.side_effect = self._create
        self.AsyncSandbox.kill.side_effect = lambda *a, **k: self._kill_async(a, k)
        self.AsyncSandbox.list.side_effect = self._list
        self.Sandbox = create_autospec(REAL_SANDBOX)
        self.Sandbox.kill.side_effect = self._kill_blocking
        self.login_greeting = ""  # what a template's login profile prints before each command

    def _record(
        self, name: str, real: Callable[..., Any], args: Any, kwargs: Any, method: bool
    ) -> dict[str, Any]:
        return self.record(name, bind_api(real, args, kwargs, method))

    def _sandbox(self, sandbox_id: str) -> FakeE2BSandbox:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.ended:
            raise e2b.SandboxNotFoundException(f"sandbox {sandbox_id} not found")
        assert isinstance(sandbox, FakeE2BSandbox)
        return sandbox

    # -- what the contract suites ask ----------------------------------------------------------

    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        return TAGS.read(self.sandboxes[sandbox_id].metadata)

    def leave(self, owner: Owner) -> str:
        return str(asyncio.run(self.AsyncSandbox.create(metadata=TAGS.tags(owner))).sandbox_id)

    def break_next_start(self) -> str:
        self.fail("make_dir", e2b.SandboxException("envd is not ready"))
        return "could not create .* envd is not ready"

    # -- the class's methods -------------------------------------------------------------------

    async def _create(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._record("create", REAL_ASYNC_SANDBOX.create, args, kwargs, method=False)
        state = FakeE2BSandbox(self.new_id("fake-e2b-"), arguments)
        self.sandboxes[state.id] = state
        handle = self._handle(state)
        await self.creation_reached()  # it exists now, whether or not the caller hears of it
        return handle

    def _end(self, sandbox_id: str) -> bool:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.ended:
            return False  # the real kill answers False for a sandbox that is not found
        sandbox.end()
        return True

    async def _kill_async(self, args: Any, kwargs: Any) -> bool:
        arguments = self._record("kill", REAL_ASYNC_SANDBOX._cls_kill, args, kwargs, method=False)
        return self._end(arguments["sandbox_id"])

    def _kill_blocking(self, *args: Any, **kwargs: Any) -> bool:
        arguments = self._record("kill_blocking", REAL_SANDBOX._cls_kill, args, kwargs, method=False)
        return self._end(arguments["sandbox_id"])

    def _list(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._record("list", REAL_ASYNC_SANDBOX.list, args, kwargs, method=False)
        query = arguments["query"] or e2b.SandboxQuery()
        wanted = query.metadata or {}
        matching = [
            s.info()
            for s in self.sandboxes.values()
            if not s.ended and all(s.metadata.get(k) == v for k, v in wanted.items())
        ]
        limit = arguments["limit"] or 100
        pages = [matching[i : i + limit] for i in range(0, len(matching), limit)] or [[]]
        paginator = create_autospec(REAL_PAGINATOR, instance=True)
        paginator.has_next = True

        async def next_items(*a: Any, **k: Any) -> list[Any]:
            self._record("next_items", REAL_PAGINATOR.next_items, a, k, method=True)
            page = pages.pop(0)
            paginator.has_next = bool(pages)
            return page

        paginator.next_items.side_effect = next_items
        return paginator

    # -- a sandbox's methods -------------------------------------------------------------------

    def _handle(self, state: FakeE2BSandbox) -> Any:
        sandbox = create_autospec(REAL_ASYNC_SANDBOX, instance=True)
        sandbox.sandbox_id = state.id
        sandbox.files = create_autospec(REAL_FILESYSTEM, instance=True)
        sandbox.commands = create_autospec(REAL_COMMANDS, instance=True)

        def checked(name: str, real: Callable[..., Any], implementation: Callable[..., Any]) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                arguments = self._record(name, real, args, kwargs, method=True)
                self._sandbox(state.id)  # a killed sandbox answers nothing
                result = implementation(arguments)
                return await result if inspect.isawaitable(result) else result

            return call

        sandbox.files.make_dir.side_effect = checked("make_dir", REAL_FILESYSTEM.make_dir, self._make_dir)
        sandbox.files.write.side_effect = checked("write", REAL_FILESYSTEM.write, self._write)
        sandbox.commands.run.side_effect = checked("run", REAL_COMMANDS.run, lambda a: self._run(state, a))
        sandbox.commands.kill.side_effect = checked(
            "kill_command", REAL_COMMANDS.kill, lambda a: self._signal(a["pid"])
        )
        return sandbox

    @staticmethod
    def _make_dir(arguments: dict[str, Any]) -> bool:
        path = Path(arguments["path"])
        existed = path.is_dir()
        path.mkdir(parents=True, exist_ok=True)
        return not existed

    @staticmethod
    def _write(arguments: dict[str, Any]) -> Any:
        path, data = Path(arguments["path"]), arguments["data"]
        path.parent.mkdir(parents=True, exist_ok=True)  # the real write creates missing directories
        path.write_bytes(data.encode() if isinstance(data, str) else bytes(data))
        return create_autospec(e2b.WriteInfo, instance=True)

    @staticmethod
    def _signal(pid: int) -> bool:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    async def _run(self, state: FakeE2BSandbox, arguments: dict[str, Any]) -> Any:
        # envd runs every command as `/bin/bash -l -c cmd` with the sandbox's and the command's variables.
        script = arguments["cmd"]
        if self.login_greeting:
            script = f"printf %s {shlex.quote(self.login_greeting)}; {script}"
        child = await state.spawn(["/bin/bash", "-c", script], arguments["cwd"], arguments["envs"])
        if arguments["background"]:
            state.background.append(child)
        else:
            assert child.stdin is not None
            child.stdin.close()
        handle = self._command_handle(child, arguments)
        return handle if arguments["background"] else await handle.wait()

    def _command_handle(self, child: asyncio.subprocess.Process, arguments: dict[str, Any]) -> Any:
        stdin = child.stdin
        assert stdin is not None

        async def send_stdin(data: str | bytes, request_timeout: float | None = None) -> None:
            if not arguments["stdin"]:
                raise e2b.SandboxException("the command was started without stdin")
            try:
                stdin.write(data.encode() if isinstance(data, str) else data)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise e2b.SandboxException(f"process {child.pid} not found") from exc

        async def close_stdin(request_timeout: float | None = None) -> None:
            stdin.close()

        async def kill() -> bool:
            return self._signal(child.pid)

        return e2b.AsyncCommandHandle(
            pid=child.pid,
            handle_kill=kill,
            events=self._events(child),
            on_stdout=arguments["on_stdout"],
            on_stderr=arguments["on_stderr"],
            handle_send_stdin=send_stdin,
            handle_close_stdin=close_stdin,
        )

    @staticmethod
    async def _events(child: asyncio.subprocess.Process) -> AsyncIterator[process_pb.StartResponse]:
        """What envd streams for one process: start, output chunks, end (a start event comes first:
        the SDK reads it before it builds the handle, so it is not yielded here)."""
        async with contextlib.aclosing(output_chunks(child)) as chunks:
            async for kind, chunk in chunks:
                yield _event(
                    event=Oneof("data", process_pb.ProcessEvent.DataEvent(output=Oneof(kind, chunk)))
                )
        code = await child.wait()
        end = process_pb.ProcessEvent.EndEvent(exit_code=code if code >= 0 else 128 - code, exited=True)
        yield _event(event=Oneof("end", end))


def signalled_owner(workdir: str) -> tuple[Any, Callable[[], int]]:
    """The owner process of test_e2b_signals: an e2b environment on a fake cloud of its own."""
    return FakeE2BCloud().signalled_owner(e2b_environment(workdir=workdir))
