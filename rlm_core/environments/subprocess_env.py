"""The ``subprocess`` environment: the sandbox runtime in a local child Python process.

It isolates crashes (a segfault or an out-of-memory kill ends the child, not the host), enforces hard
timeouts by killing the child's whole process group, limits memory with ``RLIMIT_AS`` and starts the
child with an environment scrubbed of API keys. It is not a security boundary against a determined
attacker (same user, same filesystem); use ``docker`` for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from rlm_core.environments.lifecycle.streams import StderrTail, exit_status
from rlm_core.environments.sandbox import SandboxEnvironment
from rlm_core.errors import ConfigurationError, SandboxError

# Environment variable names containing any of these never reach a sandbox.
SECRET_NAME_MARKERS = (
    "KEY",
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "COOKIE",
    "SESSION",
    "PRIVATE",
)
# ... nor values shaped like well-known API keys, whatever their name.
SECRET_VALUE_PATTERN = re.compile(
    r"^(sk-|sk_|ghp_|gho_|ghs_|github_pat_|xox[abp]-|AKIA|ASIA|AIza|hf_|glpat-)"
)
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def scrubbed_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default: this process's) without secrets or Python start-up settings."""
    source = os.environ if environ is None else environ
    clean = {}
    for name, value in source.items():
        upper = name.upper()
        if any(marker in upper for marker in SECRET_NAME_MARKERS):
            continue
        if SECRET_VALUE_PATTERN.match(value):
            continue
        if upper.startswith("PYTHON"):  # PYTHONPATH/PYTHONSTARTUP would run host code in the sandbox
            continue
        clean[name] = value
    return clean


def parse_size(value: int | str | None, what: str = "memory_limit") -> int | None:
    """Bytes from an int or a string like ``"512m"``/``"2g"`` (binary units); None stays None."""
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value <= 0:
            raise ConfigurationError(f"{what} must be a positive number of bytes, got {value}")
        return value
    match = _SIZE_PATTERN.match(str(value))
    if not match:
        raise ConfigurationError(
            f"{what} {value!r} is not a size; use bytes (int) or a string like '512m' or '2g'"
        )
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * (1 << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[unit]))


class ProcessStream:
    """A :class:`ByteStream` over an asyncio child process; closing kills its whole process group."""

    def __init__(self, process: asyncio.subprocess.Process, memory_limit: int | None) -> None:
        assert process.stderr is not None
        self.process = process
        self.memory_limit = memory_limit
        self.stderr = StderrTail()
        self.stderr.drain(process.stderr)

    async def read(self, max_bytes: int) -> bytes:
        assert self.process.stdout is not None
        return await self.process.stdout.read(max_bytes)

    async def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionError(f"the sandbox process is gone ({self.diagnostics()})") from exc

    async def close(self) -> None:
        # The runtime made itself a group leader, so this also ends whatever its cells started.
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        await self.stderr.finish()

    def diagnostics(self) -> str:
        parts = [exit_status(self.process.returncode)]
        if "MemoryError" in self.stderr.text and self.memory_limit:
            parts.append(f"it hit the memory limit of {self.memory_limit >> 20} MiB")
        parts.append(self.stderr.summary())
        return "; ".join(part for part in parts if part)


class SubprocessTransport:
    """A :class:`Transport` whose sandbox is a private temporary directory plus child processes."""

    def __init__(
        self,
        python: str | None = None,
        memory_limit: int | str | None = "4g",
        max_processes: int | None = None,
        user: str | int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.python = python or sys.executable
        self.memory_limit = parse_size(memory_limit)
        if max_processes is not None and max_processes <= 0:
            raise ConfigurationError(f"max_processes must be a positive int or None, got {max_processes!r}")
        self.max_processes = max_processes
        self.uid, self.gid = _resolve_user(user)
        self.extra_env = dict(env or {})
        self.workdir = ""
        self._streams: list[ProcessStream] = []

    def describe(self) -> str:
        return f"subprocess sandbox ({self.python} in {self.workdir or 'no directory yet'})"

    async def start(self) -> None:
        if self.workdir and os.path.isdir(self.workdir):
            return
        self.workdir = tempfile.mkdtemp(prefix="rlm-sandbox-")
        if self.uid is not None:
            os.chown(self.workdir, self.uid, self.gid if self.gid is not None else -1)

    def _inside(self, path: str) -> str:
        real = os.path.realpath(path)
        if not self.workdir or os.path.commonpath([real, os.path.realpath(self.workdir)]) != os.path.realpath(
            self.workdir
        ):
            raise SandboxError(f"put_file path {path!r} is outside the sandbox directory {self.workdir!r}")
        return real

    async def put_file(self, path: str, data: bytes) -> None:
        await self.put_file_chunks(path, (data,), len(data))

    async def put_file_chunks(self, path: str, chunks: Iterable[bytes], size: int | None = None) -> None:
        target = self._inside(path)

        def write() -> None:
            with open(target, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
            if self.uid is not None:
                os.chown(target, self.uid, self.gid if self.gid is not None else -1)

        await asyncio.to_thread(write)

    def _preexec(self) -> None:
        """Runs in the child between fork and exec: only async-signal-safe-ish work here."""
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_limit, self.memory_limit))
        if self.gid is not None:
            os.setgroups([])
            os.setgid(self.gid)
        if self.uid is not None:
            os.setuid(self.uid)
        # After setuid: RLIMIT_NPROC counts the processes of the (new) real user, and root ignores it.
        if self.max_processes is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.max_processes, self.max_processes))

    async def open_stream(self, argv: list[str]) -> ProcessStream:
        if not self.workdir:
            raise SandboxError("the subprocess sandbox was not started; call start() first")
        env = scrubbed_environment()
        env.update(self.extra_env)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
                preexec_fn=self._preexec,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(
                f"could not start {argv[0]!r} for the subprocess sandbox: {exc}; pass python= with a "
                "working Python >= 3.8 interpreter"
            ) from exc
        stream = ProcessStream(process, self.memory_limit)
        self._streams = [s for s in self._streams if s.process.returncode is None]
        self._streams.append(stream)
        return stream

    async def close(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.close()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = ""


def _resolve_user(user: str | int | None) -> tuple[int | None, int | None]:
    if user is None:
        return None, None
    import pwd

    try:
        entry = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        raise ConfigurationError(
            f"user {user!r} does not exist on this machine; pass an existing name or uid"
        ) from None
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise ConfigurationError(f"running the sandbox as user {user!r} needs root; leave user=None")
    return entry.pw_uid, entry.pw_gid


def SubprocessEnvironment(**environment_kwargs: Any) -> SandboxEnvironment:
    """The ``subprocess`` environment: ``SandboxEnvironment`` over a :class:`SubprocessTransport`.

    ``environment_kwargs``: the transport's (``python``: the interpreter for the child, default
    this one; ``memory_limit``: address-space limit, bytes or ``"4g"`` (default), None for none;
    ``max_processes``: ``RLIMIT_NPROC`` for the child's user, only enforced for non-root users, so
    combine it with ``user=`` as root; ``user``: run the child as this user; ``env``: extra variables
    for the child, whose environment is scrubbed of secrets) and the sandbox settings (``timeout``
    per cell, default 300 s, ``kill_grace``, ``max_output_chars``, ``start_timeout``).
    """
    return SandboxEnvironment.compose(
        "subprocess", SubprocessTransport, environment_kwargs, kill_grace=3.0, start_timeout=30.0
    )
