"""Modal's cloud on this machine, behind autospecs of the real SDK's classes.

Each sandbox is a :class:`~rlm_core.testing.local_cloud.LocalSandbox` (a main process that outlives
its creator until terminated, and real processes started by ``exec`` with only the sandbox's
environment). Every SDK object the transport touches is ``create_autospec`` of modal's real class,
and every call is bound against the real method's ``inspect.signature`` (autospec alone cannot
check an instance's ``.aio`` form: it takes the instance for ``self``), so a call the real SDK
would reject fails here too.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, create_autospec

import modal
import modal.container_process
import modal.io_streams
import modal.sandbox.sandbox
from rlm_modal.transport import TAGS

from rlm_core.environments.lifecycle import Owner
from rlm_core.testing.local_cloud import LocalCloud, LocalSandbox, bind

REAL_SANDBOX = modal.Sandbox
REAL_APP = modal.App
REAL_IMAGE = modal.Image
REAL_SECRET = modal.Secret


class FakeModalSandbox(LocalSandbox):
    def __init__(self, sandbox_id: str, arguments: dict[str, Any], env: dict[str, str]) -> None:
        super().__init__(sandbox_id, env)
        self.arguments = arguments
        self.tags: dict[str, str] = dict(arguments.get("tags") or {})
        self.handle: Any = None


class FakeModalCloud(LocalCloud):
    """Install with :meth:`install`; inspect ``sandboxes``, ``calls``; inject failures with ``fail``."""

    sdk = modal
    replaces = ("Sandbox", "App", "Image", "Secret")

    def __init__(self) -> None:
        super().__init__()
        self.named_secrets: dict[str, dict[str, str]] = {}
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

    def _record(
        self, name: str, real: Callable[..., Any], args: Any, kwargs: Any, method: bool
    ) -> dict[str, Any]:
        return self.record(name, bind(real, tuple(args), dict(kwargs), method))

    def aio(self, name: str, real: Callable[..., Any], implementation: Callable[..., Any]) -> AsyncMock:
        """The ``.aio`` form of an instance method: checked against ``real`` (self skipped), then
        ``implementation(arguments)`` runs."""

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = implementation(self._record(name, real, args, kwargs, method=True))
            return await result if inspect.isawaitable(result) else result

        return AsyncMock(side_effect=call)

    # -- what the contract suites ask ----------------------------------------------------------

    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        return TAGS.read(self.sandboxes[sandbox_id].tags)

    def leave(self, owner: Owner) -> str:
        return str(asyncio.run(self.Sandbox.create.aio(app=None, tags=TAGS.tags(owner))).object_id)

    def break_next_start(self) -> str:
        self.fail("make_directory", modal.exception.SandboxFilesystemPermissionError("read-only"))
        return "could not create"

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
        env: dict[str, str] = {}
        for secret in arguments.get("secrets") or []:
            env.update(secret.values)
        env.update({k: v for k, v in (arguments.get("env") or {}).items() if v is not None})
        state = FakeModalSandbox(self.new_id("sb-fake"), arguments, env)
        self.sandboxes[state.id] = state
        state.handle = self._handle(state)
        await self.creation_reached()  # it exists now, whether or not the caller hears of it
        return state.handle

    def _handle(self, state: FakeModalSandbox) -> Any:
        sandbox = create_autospec(REAL_SANDBOX, instance=True)
        sandbox.object_id = state.id

        async def exec_(arguments: dict[str, Any]) -> Any:
            self._check_alive(state)
            return await self._exec(state, arguments)

        def terminate_blocking(*args: Any, **kwargs: Any) -> None:
            self._record("terminate", REAL_SANDBOX.terminate, args, kwargs, method=True)
            state.end()

        sandbox.exec.aio = self.aio("exec", REAL_SANDBOX.exec, exec_)
        sandbox.terminate.aio = self.aio("terminate", REAL_SANDBOX.terminate, lambda _: state.end())
        sandbox.terminate.side_effect = terminate_blocking
        sandbox.get_tags.aio = self.aio("get_tags", REAL_SANDBOX.get_tags, lambda _: dict(state.tags))
        sandbox.filesystem = self._filesystem(state)
        return sandbox

    def _check_alive(self, state: FakeModalSandbox) -> None:
        if state.ended:
            raise modal.exception.SandboxTerminatedError(f"Sandbox {state.id} has been terminated")

    def _filesystem(self, state: FakeModalSandbox) -> Any:
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

    async def _exec(self, state: FakeModalSandbox, arguments: dict[str, Any]) -> Any:
        cwd = arguments.get("workdir") or state.arguments.get("workdir")
        child = await state.spawn(list(arguments["args"]), cwd, arguments.get("env"))
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
                if not state.ended and all(state.tags.get(k) == v for k, v in wanted.items()):
                    yield state.handle

        return running()
