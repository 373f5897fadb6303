"""The ``docker`` environment: the sandbox runtime in a container on any Docker-API engine (Docker, podman).

Containers get no network, no host environment, memory/CPU/process limits and ``rlm-core`` labels;
they are removed on close, on errors, at interpreter exit and on SIGINT/SIGTERM, and
:func:`cleanup_containers` removes those a killed process left behind. docker-py is imported lazily
(``pip install 'rlm-core[docker]'``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import os
import posixpath
import signal
import socket
import tarfile
import threading
import uuid
from collections.abc import Iterable
from types import FrameType
from typing import Any

from rlm_core.environments.sandbox import SandboxEnvironment
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError

DEFAULT_IMAGE = "python:3.11-slim"
LABEL = "rlm-core"
LABEL_RUN_ID = "rlm-core.run-id"
LABEL_OWNER_PID = "rlm-core.owner-pid"
LABEL_OWNER_HOST = "rlm-core.owner-host"
WORKDIR = "/rlm"
_STDERR_TAIL_CHARS = 4000
_MUX_HEADER = 8
# PID 1 of every container: reaps orphans (a killed runtime's children would otherwise stay zombies
# and eat the pids limit) and exits at once on SIGTERM.
_REAPER = (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n"
    "while True:\n"
    "    try:\n"
    "        os.wait()\n"
    "    except ChildProcessError:\n"
    "        time.sleep(1)\n"
)


def _docker() -> Any:
    try:
        import docker
    except ImportError:
        raise SandboxStartError(
            "the docker environment needs docker-py, which is not installed; pip install 'rlm-core[docker]'"
        ) from None
    return docker


def _engine_address(base_url: str | None) -> str:
    return base_url or os.environ.get("DOCKER_HOST") or "the default socket (DOCKER_HOST is unset)"


def make_client(base_url: str | None = None, timeout: float = 60.0) -> Any:
    """A docker-py client for ``base_url`` (default: DOCKER_HOST), checked with a ping."""
    docker = _docker()
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout)
            if base_url
            else docker.from_env(timeout=timeout)
        )
        client.ping()
    except Exception as exc:
        raise SandboxStartError(
            f"no Docker-API engine reachable at {_engine_address(base_url)}: {exc}. Start Docker, or "
            "podman's API service (scripts/setup-podman.sh in the rlm-core repository), and set DOCKER_HOST "
            "(e.g. unix:///run/podman.sock)"
        ) from exc
    return client


# -- removal on exit and on signals ---------------------------------------------------------------

_live: dict[str, DockerTransport] = {}
_live_lock = threading.Lock()
_hooks_installed = False
_previous_handlers: dict[int, Any] = {}


def _remove_live_containers() -> None:
    with _live_lock:
        transports = list(_live.values())
        _live.clear()
    for transport in transports:
        transport._remove_container_sync()


def _still_current(handler: Any) -> Any:
    """``handler``, unless it is the Ctrl-C handler of an ``asyncio.Runner`` that has finished since
    (asyncio.run installs one per run and removes it only if it is still in place when the run
    ends, which it is not while a container is live): then the interpreter's default."""
    owner = getattr(getattr(handler, "func", None), "__self__", None)
    if isinstance(owner, asyncio.Runner):
        loop = getattr(owner, "_loop", None)
        if loop is None or loop.is_closed():
            return signal.default_int_handler
    return handler


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _remove_live_containers()
    previous = _still_current(_previous_handlers.get(signum))
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL or previous is None:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    # SIG_IGN: the process chose to ignore it; the containers are gone, nothing else to do.


def _install_exit_hooks() -> None:
    global _hooks_installed
    if not _hooks_installed:
        _hooks_installed = True
        atexit.register(_remove_live_containers)
    if _previous_handlers or threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still covers exit
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            _previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, _on_signal)


def _restore_signal_handlers_when_idle() -> None:
    """Once no container is live, give SIGINT/SIGTERM back to whoever had them (an app's own
    Ctrl-C handling must not stay routed through a closed sandbox)."""
    with _live_lock:
        if _live:
            return
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_previous_handlers.items()):
        with contextlib.suppress(ValueError, OSError, TypeError):
            if signal.getsignal(signum) is _on_signal:
                signal.signal(signum, _still_current(previous) if previous is not None else signal.SIG_DFL)
        del _previous_handlers[signum]


# -- the stream ----------------------------------------------------------------------------------


def _buffered_attach_bytes(raw: Any) -> bytes:
    """What docker-py's HTTP response read past the upgrade headers into its buffer (the socket
    must be non-blocking, so only bytes already received are taken)."""
    response = getattr(raw, "_response", None)
    reader = getattr(getattr(getattr(response, "raw", None), "_fp", None), "fp", None)
    if reader is None or not hasattr(reader, "peek"):
        return b""
    try:
        pending = reader.peek(1 << 16)
        return bytes(reader.read1(len(pending))) if pending else b""
    except (OSError, ValueError):
        return b""


class DockerExecStream:
    """A :class:`ByteStream` over a ``docker exec`` attach socket (Docker's 8-byte multiplexed frames)."""

    def __init__(self, transport: DockerTransport, exec_id: str, sock: socket.socket, pidfile: str) -> None:
        self.transport = transport
        self.exec_id = exec_id
        self.sock = sock
        self.pidfile = pidfile
        sock.setblocking(False)
        self._raw = bytearray()
        self._stdout = bytearray()
        self._stderr_tail = ""
        self._eof = False
        self._closed = False
        self._diagnostics = ""
        self._attach: Any = None  # docker-py's file object over the socket, kept alive with it

    def _demultiplex(self) -> None:
        raw = self._raw
        while len(raw) >= _MUX_HEADER:
            size = int.from_bytes(raw[4:8], "big")
            if len(raw) < _MUX_HEADER + size:
                return
            kind = raw[0]
            payload = raw[_MUX_HEADER : _MUX_HEADER + size]
            if kind == 1:
                self._stdout += payload
            elif kind == 2:
                text = bytes(payload).decode("utf-8", "replace")
                self._stderr_tail = (self._stderr_tail + text)[-_STDERR_TAIL_CHARS:]
            del raw[: _MUX_HEADER + size]

    async def read(self, max_bytes: int) -> bytes:
        loop = asyncio.get_running_loop()
        while not self._stdout and not self._eof:
            try:
                chunk = await loop.sock_recv(self.sock, 1 << 16)
            except (OSError, ValueError):
                chunk = b""
            if not chunk:
                self._eof = True
                break
            self._raw += chunk
            self._demultiplex()
        data = bytes(self._stdout[:max_bytes])
        del self._stdout[:max_bytes]
        return data

    async def write(self, data: bytes) -> None:
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except OSError as exc:
            raise ConnectionError(
                f"the sandbox process in {self.transport.describe()} is gone: {exc}"
            ) from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._diagnostics = await asyncio.to_thread(self._kill_and_inspect)

    def _kill_and_inspect(self) -> str:
        """Kill the runtime's process group (it made itself a group leader) and say how it ended."""
        client = self.transport.client
        if client is None:
            return ""
        parts = []
        with contextlib.suppress(Exception):
            client.api.exec_start(
                client.api.exec_create(
                    self.transport.container_id,
                    ["sh", "-c", f'p=$(cat {self.pidfile}) && kill -9 -"$p" "$p" 2>/dev/null; true'],
                )["Id"]
            )
        try:
            info = client.api.exec_inspect(self.exec_id)
            code = info.get("ExitCode")
            if code is not None and not info.get("Running"):
                parts.append(
                    f"exit code {code}" + (" (SIGKILL: often the memory limit)" if code == 137 else "")
                )
        except Exception:
            parts.append(f"the container {self.transport.short_id} is gone (removed or stopped)")
        tail = self._stderr_tail.strip()
        if tail:
            parts.append("stderr: " + tail[-600:])
        return "; ".join(parts)

    def diagnostics(self) -> str:
        return self._diagnostics or (
            ("stderr: " + self._stderr_tail.strip()[-600:]) if self._stderr_tail else ""
        )


# -- the transport -------------------------------------------------------------------------------


class _TarStream(io.RawIOBase):
    """A one-file tar archive read on the fly: header, the data chunks as they come, padding, end marker.

    The chunks are pulled only as the engine reads, so no part of the file is held beyond one chunk.
    """

    def __init__(self, name: str, chunks: Iterable[bytes], size: int, parents: list[str]) -> None:
        head = b""
        for parent in parents:
            info = tarfile.TarInfo(parent)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            head += info.tobuf(format=tarfile.PAX_FORMAT)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        head += info.tobuf(format=tarfile.PAX_FORMAT)
        padding = (-size) % tarfile.BLOCKSIZE
        self._name = name
        self._size = size
        self._chunks = iter(chunks)
        self._data_left = size
        self._current = memoryview(head)
        self._tail: memoryview | None = memoryview(b"\0" * (padding + 2 * tarfile.BLOCKSIZE))
        self._length = len(head) + size + len(self._tail)

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def _next_part(self) -> bool:
        """Move on to the next chunk of data (or the tail); False at the end of the archive."""
        if self._data_left:
            chunk = next(self._chunks, None)
            if chunk is None or len(chunk) > self._data_left:
                raise SandboxError(
                    f"the data for {self._name} changed while it was sent (expected {self._size} bytes); "
                    "a transport must be given the same chunks on every pass"
                )
            self._data_left -= len(chunk)
            self._current = memoryview(chunk)
            return True
        if self._tail is not None:
            self._current, self._tail = self._tail, None
            return True
        return False

    def read(self, size: int = -1) -> bytes:
        while not len(self._current):
            if not self._next_part():
                return b""
        part = self._current
        take = len(part) if size is None or size < 0 else min(size, len(part), 1 << 20)
        self._current = part[take:]
        return bytes(part[:take])


class DockerTransport:
    """A :class:`Transport` over one container on a Docker-API engine."""

    workdir = WORKDIR

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        python: str = "python3",
        network_mode: str = "none",
        mem_limit: str | int | None = "1g",
        nano_cpus: int | None = None,
        cpus: float | None = None,
        pids_limit: int | None = 256,
        pull: bool = True,
        base_url: str | None = None,
        run_id: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        if cpus is not None:
            if nano_cpus is not None:
                raise ConfigurationError("pass cpus= or nano_cpus=, not both")
            nano_cpus = int(cpus * 1e9)
        self.image = image
        self.python = python
        self.network_mode = network_mode
        self.mem_limit = mem_limit
        self.nano_cpus = nano_cpus
        self.pids_limit = pids_limit
        self.pull = pull
        self.base_url = base_url
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.extra_labels = dict(labels or {})
        self.client: Any = None
        self.container_id: str | None = None
        self._streams = 0

    @property
    def short_id(self) -> str:
        return (self.container_id or "none")[:12]

    def describe(self) -> str:
        return f"docker container {self.short_id} ({self.image})"

    def labels(self) -> dict[str, str]:
        return {
            **self.extra_labels,
            LABEL: "1",
            LABEL_RUN_ID: self.run_id,
            LABEL_OWNER_PID: str(os.getpid()),
            LABEL_OWNER_HOST: socket.gethostname(),
        }

    async def start(self) -> None:
        _install_exit_hooks()  # here, on the loop's thread: signal handlers need the main thread
        await asyncio.to_thread(self._start_sync)

    def _start_sync(self) -> None:
        docker = _docker()
        if self.client is None:
            self.client = make_client(self.base_url)
        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            if not self.pull:
                raise SandboxError(
                    f"the image {self.image!r} does not exist on the engine at "
                    f"{_engine_address(self.base_url)} "
                    "and pull=False; build or pull it first, or pass another image="
                ) from None
            try:
                self.client.images.pull(self.image)
            except Exception as exc:
                raise SandboxError(
                    f"the image {self.image!r} is not on the engine and pulling it failed: {exc}. Pull or "
                    "build it yourself (or pass image= with one you have)"
                ) from exc
        try:
            container = self.client.containers.run(
                self.image,
                command=[self.python, "-c", _REAPER],
                detach=True,
                network_mode=self.network_mode,
                mem_limit=self.mem_limit,
                memswap_limit=self.mem_limit,  # the same value: no swap beyond the memory limit
                nano_cpus=self.nano_cpus,
                pids_limit=self.pids_limit,
                labels=self.labels(),
                environment={},
                working_dir="/",
            )
        except docker.errors.APIError as exc:
            raise SandboxError(
                f"could not start a container from {self.image!r}: {exc}. Check the image has "
                f"{self.python!r} and that the limits (mem_limit={self.mem_limit!r}, pids_limit="
                f"{self.pids_limit!r}) suit the engine"
            ) from exc
        self.container_id = container.id
        with _live_lock:
            _live[container.id] = self

    async def put_file(self, path: str, data: bytes) -> None:
        await self.put_file_chunks(path, (data,), len(data))

    async def put_file_chunks(self, path: str, chunks: Iterable[bytes], size: int | None = None) -> None:
        if self.client is None or self.container_id is None:
            raise SandboxError("the docker sandbox was not started; call start() first")
        relative = posixpath.normpath(path).lstrip("/")
        parents: list[str] = []
        parent = posixpath.dirname(relative)
        while parent:
            parents.insert(0, parent)
            parent = posixpath.dirname(parent)

        def upload() -> None:
            # A tar header states the size, so an unknown size costs a counting pass over the chunks.
            total = size if size is not None else sum(len(chunk) for chunk in chunks)
            archive = _TarStream(relative, chunks, total, parents)
            self.client.api.put_archive(self.container_id, "/", archive)

        try:
            await asyncio.to_thread(upload)
        except (ConfigurationError, SandboxError):
            raise
        except Exception as exc:
            raise SandboxError(f"could not copy {path} into {self.describe()}: {exc}") from exc

    async def open_stream(self, argv: list[str]) -> DockerExecStream:
        if self.client is None or self.container_id is None:
            raise SandboxError("the docker sandbox was not started; call start() first")
        self._streams += 1
        pidfile = posixpath.join(self.workdir, f"runtime-{self._streams}.pid")
        # sh records the pid, then becomes the runtime (exec), so closing can kill its process group.
        command = ["sh", "-c", f'echo $$ > {pidfile} && exec "$@"', "rlm-runtime", *argv]
        return await asyncio.to_thread(self._open_stream_sync, command, pidfile)

    def _open_stream_sync(self, command: list[str], pidfile: str) -> DockerExecStream:
        try:
            exec_id = self.client.api.exec_create(
                self.container_id,
                command,
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                workdir=self.workdir,
            )["Id"]
            raw = self.client.api.exec_start(exec_id, socket=True, tty=False)
        except Exception as exc:
            raise SandboxError(f"could not start the runtime in {self.describe()}: {exc}") from exc
        sock = getattr(raw, "_sock", raw)
        if not isinstance(sock, socket.socket) or hasattr(sock, "getpeercert"):
            raise SandboxError(
                f"the engine at {_engine_address(self.base_url)} gave a {type(sock).__name__} attach stream; "
                "the docker environment supports unix:// and tcp:// engines without TLS"
            )
        stream = DockerExecStream(self, exec_id, sock, pidfile)  # makes the socket non-blocking
        # Start-up race: output the runtime wrote before the HTTP layer finished reading the upgrade
        # response sits in that layer's buffer, not in the socket; read past it and those bytes
        # (its "ready" frame, or the first frame's header) would be lost.
        stream._raw += _buffered_attach_bytes(raw)
        stream._demultiplex()
        # The attach stream's file object and HTTP response live as long as the stream: dropped,
        # their finalisers may close the socket under a running cell (the runtime then sees EOF).
        stream._attach = raw
        return stream

    async def close(self) -> None:
        await asyncio.to_thread(self._remove_container_sync)
        _restore_signal_handlers_when_idle()  # here, on the loop's thread, like the install

    def _remove_container_sync(self) -> None:
        container_id, self.container_id = self.container_id, None
        if container_id is None or self.client is None:
            return
        with _live_lock:
            _live.pop(container_id, None)
        with contextlib.suppress(Exception):
            self.client.api.remove_container(container_id, force=True, v=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def cleanup_containers(
    client: Any = None, *, include_live: bool = False, dry_run: bool = False, base_url: str | None = None
) -> list[dict[str, str]]:
    """Remove rlm-core containers whose owner process (on this host) is no longer alive.

    ``include_live=True`` also removes those of live owners and of other hosts. Returns one dict per
    container acted on (or that would be, with ``dry_run``): id, run id, owner pid, owner host.
    """
    client = client or make_client(base_url)
    here = socket.gethostname()
    removed = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        labels = container.labels or {}
        owner_host = labels.get(LABEL_OWNER_HOST, "")
        try:
            owner_pid = int(labels.get(LABEL_OWNER_PID, "0"))
        except ValueError:
            owner_pid = 0
        orphan = owner_host == here and (owner_pid <= 0 or not _pid_alive(owner_pid))
        if not (orphan or include_live):
            continue
        if not dry_run:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        removed.append(
            {
                "id": container.id,
                "run_id": labels.get(LABEL_RUN_ID, ""),
                "owner_pid": str(owner_pid),
                "owner_host": owner_host,
            }
        )
    return removed


def DockerEnvironment(**environment_kwargs: Any) -> SandboxEnvironment:
    """The ``docker`` environment: ``SandboxEnvironment`` over a :class:`DockerTransport`.

    ``environment_kwargs``: the transport's (``image``, default ``python:3.11-slim``, any image with
    Python >= 3.8; ``python``; ``network_mode``, ``"none"``: sub-calls travel over the exec stream;
    ``mem_limit`` ``"1g"``; ``nano_cpus`` or ``cpus=1.5``; ``pids_limit`` 256; ``pull``; ``base_url``,
    default DOCKER_HOST; ``run_id``; ``labels``) and the sandbox settings (``timeout`` per cell,
    ``kill_grace``, ``max_output_chars``, ``start_timeout``).
    """
    return SandboxEnvironment.compose(
        "docker", DockerTransport, environment_kwargs, kill_grace=3.0, start_timeout=60.0
    )
