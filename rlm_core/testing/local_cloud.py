"""A cloud sandbox service on this machine, for testing a cloud sandbox plugin without an account.

A plugin's fake of its SDK subclasses :class:`LocalCloud` (the bookkeeping: sandboxes, recorded
calls, injected failures, a gate that holds a creation) and makes each sandbox a
:class:`LocalSandbox`: a main process in a session of its own, so like a cloud sandbox it outlives
the process that created it until it is ended, plus the real processes started in it.
:class:`LocalCloudCase` then implements the hooks of the contract suites for such a fake::

    class ModalCase(LocalCloudCase):
        environment_name = "modal"
        live = rlm_modal.transport.LIVE
        cleanup_hook = staticmethod(rlm_modal.cleanup.cleanup_sandboxes)

    class TestModalEnvironment(ModalCase, EnvironmentContract): ...
    class TestModalLifecycle(ModalCase, SandboxLifecycleContract): ...

with a ``cloud`` fixture (the installed fake) and a ``workdir`` fixture (the sandboxes' working
directory: the fake's sandboxes share this machine's filesystem).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import itertools
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import ModuleType
from typing import Any, ClassVar, Self

import pytest

from rlm_core.environments.lifecycle.live import LiveSandboxes
from rlm_core.environments.lifecycle.owners import Owner
from rlm_core.testing.sandbox_lifecycle_contract import Gate

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def bind(
    real: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], method: bool = True
) -> dict[str, Any]:
    """The call's arguments, with defaults, as the real SDK function would receive them; a call the
    real signature rejects raises ``TypeError`` here too (``method``: ``real`` takes ``self`` first)."""
    signature = inspect.signature(real)
    bound = signature.bind(None, *args, **kwargs) if method else signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


async def output_chunks(child: asyncio.subprocess.Process) -> AsyncIterator[tuple[str, bytes]]:
    """A process's stdout and stderr as a sandbox daemon streams them, ``("stdout" | "stderr",
    chunk)`` in the order they come, until both have ended: what a fake turns into the SDK's events."""
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
            yield kind, chunk
    finally:
        for task in pumps:
            task.cancel()


class LocalSandbox:
    """One sandbox of a :class:`LocalCloud`: a main process in its own session and the processes
    started in it, all with only the sandbox's environment ``env``."""

    def __init__(self, sandbox_id: str, env: Mapping[str, str]) -> None:
        self.id = sandbox_id
        self.env = {"PATH": SANDBOX_PATH, "HOME": "/root", **env}
        self.main = subprocess.Popen(["sleep", "3600"], start_new_session=True)
        self.processes: list[asyncio.subprocess.Process] = []
        self.ended = False

    async def spawn(
        self, argv: list[str], cwd: str | None, env: Mapping[str, str | None] | None = None
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in the sandbox with three pipes, like the service's own process API."""
        extra = {name: value for name, value in (env or {}).items() if value is not None}
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd or "/",
            env={**self.env, **extra},
            start_new_session=True,  # like a cloud process: it does not die with its creator
        )
        self.processes.append(child)
        return child

    def end(self) -> None:
        """What the service does when the sandbox is terminated: everything in it is killed."""
        self.ended = True
        for pid in [self.main.pid, *(process.pid for process in self.processes)]:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.main.wait(timeout=5)


class LocalCloud(abc.ABC):
    """The bookkeeping of a fake sandbox service. ``calls`` lists every SDK call as ``(name,
    arguments)``; :meth:`fail` makes the next call of a name raise; while ``creation_gate`` is set,
    a creation stops at it once the sandbox exists (see :meth:`creation_reached`)."""

    sdk: ClassVar[ModuleType]  # the module whose classes the fake replaces
    replaces: ClassVar[tuple[str, ...]]  # their names; the fake has an attribute of each name

    def __init__(self) -> None:
        self.sandboxes: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, BaseException] = {}
        self.creation_gate: Gate | None = None
        self._ids = itertools.count(1)

    # -- installation --------------------------------------------------------------------------

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in self.replaces:
            monkeypatch.setattr(self.sdk, name, getattr(self, name))

    def install_for_process(self) -> None:
        """For a script run in a child process (no monkeypatch there; the process ends anyway)."""
        for name in self.replaces:
            setattr(self.sdk, name, getattr(self, name))

    def signalled_owner(self, environment: Any) -> tuple[Any, Callable[[], int]]:
        """What a factory for :func:`~rlm_core.testing.signalled_owner.check_signalled_owner_ends_its_sandbox`
        returns: ``environment``, on this fake installed in the owner's process, and the pid of its
        sandbox's main process (it lives until the sandbox is ended)."""
        self.install_for_process()
        return environment, lambda: self.sandboxes[environment.transport.sandbox_id].main.pid

    @contextlib.contextmanager
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Self]:
        """Installed for a test that must end with every sandbox ended, or fail: the plugin's
        promise on every path."""
        self.install(monkeypatch)
        try:
            yield self
            leftovers = [sandbox.id for sandbox in self.live()]
            assert not leftovers, f"sandboxes left running: {leftovers}"
        finally:
            self.shutdown()

    # -- bookkeeping ---------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}"

    def record(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Note a call and raise the failure injected for it, if any."""
        self.calls.append((name, arguments))
        failure = self.failures.pop(name, None)
        if failure is not None:
            raise failure
        return arguments

    def calls_to(self, name: str) -> list[dict[str, Any]]:
        return [arguments for called, arguments in self.calls if called == name]

    def fail(self, name: str, error: BaseException) -> None:
        """Make the next call of SDK method ``name`` raise ``error``."""
        self.failures[name] = error

    async def creation_reached(self) -> None:
        """Called by the fake's create once the sandbox exists, before it answers."""
        if self.creation_gate is not None:
            await self.creation_gate.stop_here()

    def live(self) -> list[Any]:
        return [sandbox for sandbox in self.sandboxes.values() if not sandbox.ended]

    def shutdown(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.end()

    # -- what the contract suites ask of the fake ----------------------------------------------

    @abc.abstractmethod
    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        """The owner in the sandbox's tags or labels, read back as the plugin reads it."""

    @abc.abstractmethod
    def leave(self, owner: Owner) -> str:
        """Create a sandbox tagged with ``owner``, as that owner's transport would, and leave it."""

    @abc.abstractmethod
    def break_next_start(self) -> str:
        """Make a call after the sandbox's creation fail next; a pattern of the error it causes."""


class LocalCloudCase:
    """The contract suites' hooks for a plugin tested against a :class:`LocalCloud`. Set
    ``environment_name``, ``live`` (the plugin's exit registry) and ``cleanup_hook`` (its
    ``rlm_cleanup_sandboxes``); the tests need ``cloud`` and ``workdir`` fixtures."""

    environment_name: ClassVar[str]
    live: ClassVar[LiveSandboxes[Any]]
    cleanup_hook: ClassVar[Callable[..., list[dict[str, Any]]]]
    cloud: LocalCloud
    workdir: str

    @pytest.fixture(autouse=True)
    def _local_cloud(self, cloud: LocalCloud, workdir: str) -> None:
        self.cloud = cloud
        self.workdir = workdir

    def environment_kwargs(self) -> dict[str, Any]:
        return {"workdir": self.workdir, "timeout": 30, "kill_grace": 2}

    def make_environment(self, **overrides: Any) -> Any:
        from rlm_core.plugins import get_registry

        settings = {**self.environment_kwargs(), **overrides}
        return get_registry().create("environments", self.environment_name, **settings)

    def held_sandboxes(self) -> list[str]:
        return [sandbox.id for sandbox in self.cloud.live()]

    def sandbox_id(self, environment: Any) -> str:
        return str(environment.transport.sandbox_id)

    def live_sandboxes(self) -> LiveSandboxes[Any]:
        return self.live

    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        return self.cloud.recorded_owner(sandbox_id)

    def leave_sandbox(self, owner: Owner) -> str:
        return self.cloud.leave(owner)

    def cleanup(self, *, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
        return type(self).cleanup_hook(include_live=include_live, dry_run=dry_run)

    def hold_creation(self, environment: Any, gate: Gate) -> bool:
        self.cloud.creation_gate = gate
        return True

    def break_start_after_creation(self) -> str:
        return self.cloud.break_next_start()
