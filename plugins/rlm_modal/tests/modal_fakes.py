"""Modal's cloud on this machine, behind autospecs of the real SDK's classes.

Each fake sandbox is a directory plus real processes: its main process (``sleep``) runs in its own
session, so like a cloud sandbox it outlives the process that created it until it is terminated.
``exec`` starts real processes with only the sandbox's environment. Every SDK object the transport
touches is ``create_autospec`` of modal's real class, and every call is bound against the real
method's ``inspect.signature`` (autospec alone cannot check an instance's ``.aio`` form: it takes
the instance for ``self``), so a call the real SDK would reject fails here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, create_autospec

import modal
import modal.container_process
import modal.io_streams
import modal.sandbox.sandbox
import pytest

REAL_SANDBOX = modal.Sandbox
REAL_APP = modal.App
REAL_IMAGE = modal.Image
REAL_SECRET = modal.Secret
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def bind(
    real: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], method: bool
) -> dict[str, Any]:
    """The call's arguments, with defaults, as the real SDK function would receive them."""
    signature = inspect.signature(real)
    bound = signature.bind(None, *args, **kwargs) if method else signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


class FakeSandboxState:
    def __init__(self, sandbox_id: str, arguments: dict[str, Any], env: dict[str, str]) -> None:
        self.id = sandbox_id
        self.arguments = arguments
        self.tags: dict[str, str] = dict(arguments.get("tags") or {})
        self.env = env
        self.workdir = arguments.get("workdir") or "/"
        self.main = subprocess.Popen(["sleep", "3600"], start_new_session=True)
        self.processes: list[asyncio.subprocess.Process] = []
        self.terminated = False
        self.handle: Any = None

    def kill_everything(self) -> None:
        self.terminated = True
        for pid in [self.main.pid, *(p.pid for p in self.processes)]:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.main.wait(timeout=5)


class FakeModalCloud:
    """Install with :meth:`install`; inspect ``sandboxes``, ``calls``; inject failures with ``fail``."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, FakeSandboxState] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, BaseException] = {}
        self.named_secrets: dict[str, dict[str, str]] = {}
        self.create_delay = 0.0
        self._ids = itertools.count(1)

        self.Sandbox = create_autospec(REAL_SANDBOX)
        self.Sandbox.create.aio.side_effect = self._create
        self.Sandbox.list.aio.side_effect = self._list
        self.App = create_autospec(REAL_APP)
        self.App.lookup.aio.side_effect = self._lookup
        self.Image = create_autospec(REAL_IMAGE)
        self.Image.debian_slim.side_effect = lambda *a, **k: self._image(
            "debian_slim", REAL_IMAGE.debian_slim, a, k
        )
        self.Image.from_registry.side_effect = lambda *a, **k: self._image(
            "from_registry", REAL_IMAGE.from_registry, a, k
        )
        self.Secret = create_autospec(REAL_SECRET)
        self.Secret.from_dict.side_effect = self._secret_from_dict
        self.Secret.from_name.side_effect = self._secret_from_name

    # -- installation --------------------------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("Sandbox", "App", "Image", "Secret"):
            monkeypatch.setattr(modal, name, getattr(self, name))

    def install_for_process(self) -> None:
        """For a script run in a child process (no monkeypatch there; the process ends anyway)."""
        for name in ("Sandbox", "App", "Image", "Secret"):
            setattr(modal, name, getattr(self, name))

    def _record(
        self, name: str, real: Callable[..., Any], args: Any, kwargs: Any, method: bool
    ) -> dict[str, Any]:
        arguments = bind(real, tuple(args), dict(kwargs), method)
        self.calls.append((name, arguments))
        failure = self.failures.pop(name, None)
        if failure is not None:
            raise failure
        return arguments

    def aio(self, name: str, real: Callable[..., Any], implementation: Callable[..., Any]) -> AsyncMock:
        """The ``.aio`` form of an instance method: checked against ``real`` (self skipped), then
        ``implementation(arguments)`` runs."""

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = implementation(self._record(name, real, args, kwargs, method=True))
            return await result if inspect.isawaitable(result) else result

        return AsyncMock(side_effect=call)

    def fail(self, name: str, error: BaseException) -> None:
        """Make the next call of SDK method ``name`` (e.g. "create", "make_directory") raise ``error``."""
        self.failures[name] = error

    # -- App, Image, Secret --------------------------------------------------------------------

    async def _lookup(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._record("lookup", REAL_APP.lookup, args, kwargs, method=False)
        app = create_autospec(REAL_APP, instance=True)
        app.name = arguments["name"]
        return app

    def _image(self, name: str, real: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        arguments = self._record(name, real, args, kwargs, method=False)
        image = create_autospec(REAL_IMAGE, instance=True)
        image.layers = [(name, arguments)]

        def add(layer: str, real_method: Callable[..., Any]) -> Callable[..., Any]:
            def side_effect(*a: Any, **k: Any) -> Any:
                image.layers.append((layer, self._record(layer, real_method, a, k, method=True)))
                return image

            return side_effect

        image.pip_install.side_effect = add("pip_install", REAL_IMAGE.pip_install)
        image.apt_install.side_effect = add("apt_install", REAL_IMAGE.apt_install)
        return image

    def _secret_from_dict(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._record("from_dict", REAL_SECRET.from_dict, args, kwargs, method=False)
        secret = create_autospec(REAL_SECRET, instance=True)
        secret.values = {k: v for k, v in arguments["env_dict"].items() if v is not None}
        return secret

    def _secret_from_name(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._record("from_name", REAL_SECRET.from_name, args, kwargs, method=False)
        secret = create_autospec(REAL_SECRET, instance=True)
        secret.values = self.named_secrets[arguments["name"]]
        return secret

    # -- Sandbox -------------------------------------------------------------------------------

    async def _create(self, *args: Any, **kwargs: Any) -> Any:
        arguments = self._record("create", REAL_SANDBOX.create, args, kwargs, method=False)
        if self.create_delay:
            await asyncio.sleep(self.create_delay)
        env = {"PATH": SANDBOX_PATH, "HOME": "/root"}
        for secret in arguments.get("secrets") or []:
            env.update(secret.values)
        env.update({k: v for k, v in (arguments.get("env") or {}).items() if v is not None})
        state = FakeSandboxState(f"sb-fake{next(self._ids):04d}", arguments, env)
        self.sandboxes[state.id] = state
        state.handle = self._handle(state)
        return state.handle

    def _handle(self, state: FakeSandboxState) -> Any:
        sandbox = create_autospec(REAL_SANDBOX, instance=True)
        sandbox.object_id = state.id

        async def exec_(arguments: dict[str, Any]) -> Any:
            self._check_alive(state)
            return await self._exec(state, arguments)

        def terminate_blocking(*args: Any, **kwargs: Any) -> None:
            self._record("terminate", REAL_SANDBOX.terminate, args, kwargs, method=True)
            state.kill_everything()

        sandbox.exec.aio = self.aio("exec", REAL_SANDBOX.exec, exec_)
        sandbox.terminate.aio = self.aio(
            "terminate", REAL_SANDBOX.terminate, lambda _: state.kill_everything()
        )
        sandbox.terminate.side_effect = terminate_blocking
        sandbox.get_tags.aio = self.aio("get_tags", REAL_SANDBOX.get_tags, lambda _: dict(state.tags))
        sandbox.filesystem = self._filesystem(state)
        return sandbox

    def _check_alive(self, state: FakeSandboxState) -> None:
        if state.terminated:
            raise modal.exception.SandboxTerminatedError(f"Sandbox {state.id} has been terminated")

    def _filesystem(self, state: FakeSandboxState) -> Any:
        real = modal.sandbox.sandbox.SandboxFilesystem
        filesystem = create_autospec(real, instance=True)

        def make_directory(arguments: dict[str, Any]) -> None:
            self._check_alive(state)
            Path(arguments["remote_path"]).mkdir(parents=arguments["create_parents"], exist_ok=True)

        def write_bytes(arguments: dict[str, Any]) -> None:
            self._check_alive(state)
            Path(arguments["remote_path"]).write_bytes(bytes(arguments["data"]))

        filesystem.make_directory.aio = self.aio("make_directory", real.make_directory, make_directory)
        filesystem.write_bytes.aio = self.aio("write_bytes", real.write_bytes, write_bytes)
        return filesystem

    async def _exec(self, state: FakeSandboxState, arguments: dict[str, Any]) -> Any:
        env = dict(state.env)
        env.update({k: v for k, v in (arguments.get("env") or {}).items() if v is not None})
        child = await asyncio.create_subprocess_exec(
            *arguments["args"],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=arguments.get("workdir") or state.workdir,
            env=env,
            start_new_session=True,  # like a cloud process: it does not die with its creator
        )
        state.processes.append(child)
        text = bool(arguments["text"])
        real = modal.container_process.ContainerProcess
        process = create_autospec(real, instance=True)
        process.stdin = create_autospec(modal.io_streams.StreamWriter, instance=True)
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        stdin = child.stdin
        process.stdin.write.side_effect = lambda data: stdin.write(
            data.encode() if isinstance(data, str) else bytes(data)
        )
        writer = modal.io_streams.StreamWriter
        process.stdin.drain.aio = self.aio("drain", writer.drain, lambda _: stdin.drain())
        process.stdin.write_eof.side_effect = stdin.write_eof
        process.stdout = self._reader(child.stdout, text)
        process.stderr = self._reader(child.stderr, text)
        process.wait.aio = self.aio("wait", real.wait, lambda _: child.wait())
        process.poll.side_effect = lambda: child.returncode
        return process

    @staticmethod
    def _reader(stream: asyncio.StreamReader, text: bool) -> Any:
        reader = create_autospec(modal.io_streams.StreamReader, instance=True)

        async def chunks() -> AsyncIterator[bytes | str]:
            while True:
                chunk = await stream.read(1 << 16)
                if not chunk:
                    return
                yield chunk.decode("utf-8", "replace") if text else chunk

        reader.__aiter__.side_effect = chunks
        return reader

    def _list(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        arguments = self._record("list", REAL_SANDBOX.list, args, kwargs, method=False)
        wanted = arguments.get("tags") or {}

        async def running() -> AsyncIterator[Any]:
            for state in list(self.sandboxes.values()):
                if not state.terminated and all(state.tags.get(k) == v for k, v in wanted.items()):
                    yield state.handle

        return running()

    # -- test helpers --------------------------------------------------------------------------

    def live(self) -> list[FakeSandboxState]:
        return [state for state in self.sandboxes.values() if not state.terminated]

    def shutdown(self) -> None:
        for state in self.sandboxes.values():
            state.kill_everything()
