"""The ``docker`` environment: the sandbox runtime in a container on any Docker-API engine (Docker, podman).

Containers get no network, no host environment, memory/CPU/process limits and ``rlm-core`` labels;
they are removed on close, on errors, at interpreter exit and on SIGINT/SIGTERM, and
:func:`cleanup_containers` removes those a killed process left behind. docker-py is imported lazily
(``pip install 'rlm-core[docker]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from rlm_core.environments import lifecycle
from rlm_core.environments.lifecycle.live import still_current as _still_current  # noqa: F401 (old name)
from rlm_core.environments.sandbox import SandboxEnvironment
from rlm_core.environments.tar_stream import TarStream
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError

DEFAULT_IMAGE = "python:3.11-slim"
# The labels every container carries: rlm-core=1, rlm-core.run-id, rlm-core.owner-pid, rlm-core.owner-host.
TAGS = lifecycle.OwnerTags(separator=".")
LABEL = TAGS.mark
LABEL_RUN_ID = TAGS.key("run-id")
LABEL_OWNER_PID = TAGS.key("owner-pid")
LABEL_OWNER_HOST = TAGS.key("owner-host")
WORKDIR = "/rlm"
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
# PID 1's command line: the reaper where the image has the interpreter; else a plain wait, so the
# runtime's own start fails and its error (the shell's "not found" on stderr) reaches the user.
_PID1 = 'command -v "$0" >/dev/null && exec "$0" -c "$1"; while :; do sleep 3600; done'


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


# -- removal at exit and on signals ---------------------------------------------------------------


def _remove_blocking(held: tuple[Any, str]) -> None:
    client, container_id = held
    client.api.remove_container(container_id, force=True, v=True)


# The containers this process holds, removed at interpreter exit and on SIGINT/SIGTERM.
_live: lifecycle.LiveSandboxes[tuple[Any, str]] = lifecycle.LiveSandboxes(
    "docker", _remove_blocking, on_signals=True
)


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


class DockerExecStream(lifecycle.ProcessByteStream):
    """A :class:`ByteStream` over a ``docker exec`` attach socket (Docker's 8-byte multiplexed frames)."""

    def __init__(
        self, transport: DockerTransport, exec_id: str, sock: socket.socket, group: lifecycle.RuntimeGroup
    ) -> None:
        super().__init__(self._stdout_chunks(), describe=transport.describe())
        self.transport = transport
        self.exec_id = exec_id
        self.sock = sock
        self.group = group
        sock.setblocking(False)
        self._raw = bytearray()
        self._gone = False
        self._attach: Any = None  # docker-py's file object over the socket, kept alive with it

    def _demultiplex(self) -> bytes:
        """The stdout in the complete frames received so far; their stderr goes to the tail."""
        raw, stdout = self._raw, bytearray()
        while len(raw) >= _MUX_HEADER:
            size = int.from_bytes(raw[4:8], "big")
            if len(raw) < _MUX_HEADER + size:
                break
            kind = raw[0]
            payload = raw[_MUX_HEADER : _MUX_HEADER + size]
            if kind == 1:
                stdout += payload
            elif kind == 2:
                self.stderr.add(bytes(payload))
            del raw[: _MUX_HEADER + size]
        return bytes(stdout)

    async def _stdout_chunks(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        while True:
            stdout = self._demultiplex()
            if stdout:
                yield stdout
                continue
            try:
                chunk = await loop.sock_recv(self.sock, 1 << 16)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            self._raw += chunk

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def end_process(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        await asyncio.to_thread(self._kill_and_inspect)

    def _kill_and_inspect(self) -> None:
        """Kill the runtime's process group (it made itself a group leader) and learn how it ended."""
        client = self.transport.client
        if client is None:
            return
        kill = ["sh", "-c", self.group.kill_script()]
        with contextlib.suppress(Exception):
            client.api.exec_start(client.api.exec_create(self.transport.container_id, kill)["Id"])
        try:
            info = client.api.exec_inspect(self.exec_id)
        except Exception:
            self._gone = True
            return
        if not info.get("Running"):
            self.exit_code = info.get("ExitCode")

    def status(self) -> str:
        if self._gone:
            return f"the container {self.transport.short_id} is gone (removed or stopped)"
        return super().status()


# -- the transport -------------------------------------------------------------------------------

_TarStream = TarStream  # its name before it had a module of its own


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
        self.run_id = run_id or lifecycle.new_run_id()
        self.extra_labels = dict(labels or {})
        self.client: Any = None
        self.container_id: str | None = None
        self.runtimes = lifecycle.RuntimeGroups(self.workdir)

    @property
    def short_id(self) -> str:
        return (self.container_id or "none")[:12]

    def describe(self) -> str:
        return f"docker container {self.short_id} ({self.image})"

    def labels(self) -> dict[str, str]:
        return {**self.extra_labels, **TAGS.tags(lifecycle.Owner.current(self.run_id))}

    async def start(self) -> None:
        _live.watch_signals()  # here, on the loop's thread: signal handlers need the main thread
        # A start cancelled while the engine creates the container still ends it once it exists.
        await lifecycle.created_or_ended(
            asyncio.to_thread(self._start_sync), end=lambda _: asyncio.to_thread(self._remove_container_sync)
        )

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
                command=["sh", "-c", _PID1, self.python, _REAPER],
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
        _live.add(container.id, (self.client, container.id))

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
            archive = TarStream(relative, chunks, total, parents)
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
        return await asyncio.to_thread(self._open_stream_sync, self.runtimes.next(), argv)

    def _open_stream_sync(self, group: lifecycle.RuntimeGroup, argv: list[str]) -> DockerExecStream:
        try:
            exec_id = self.client.api.exec_create(
                self.container_id,
                group.command(argv),
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
        stream = DockerExecStream(self, exec_id, sock, group)  # makes the socket non-blocking
        # Start-up race: output the runtime wrote before the HTTP layer finished reading the upgrade
        # response sits in that layer's buffer, not in the socket; read past it and those bytes
        # (its "ready" frame, or the first frame's header) would be lost.
        stream._raw += _buffered_attach_bytes(raw)
        # The attach stream's file object and HTTP response live as long as the stream: dropped,
        # their finalisers may close the socket under a running cell (the runtime then sees EOF).
        stream._attach = raw
        return stream

    async def close(self) -> None:
        await asyncio.to_thread(self._remove_container_sync)
        _live.release_signals()  # here, on the loop's thread, like watch_signals

    def _remove_container_sync(self) -> None:
        container_id, self.container_id = self.container_id, None
        if container_id is None or self.client is None:
            return
        with contextlib.suppress(Exception):
            self.client.api.remove_container(container_id, force=True, v=True)
        _live.discard(container_id)


class DockerContainers:
    """The engine's rlm-core containers as the core's cleanup loop asks for them."""

    kind = "docker"

    def __init__(self, client: Any, labels: Mapping[str, str]) -> None:
        self.client = client
        self.labels = labels

    def sandboxes(self) -> list[Any]:
        wanted = [f"{name}={value}" for name, value in {**TAGS.selector(), **self.labels}.items()]
        return list(self.client.containers.list(all=True, filters={"label": wanted}))

    def identify(self, container: Any) -> str:
        return str(container.id)

    def owner(self, container: Any) -> lifecycle.Owner | None:
        return TAGS.read(container.labels)

    def end(self, container: Any) -> None:
        container.remove(force=True, v=True)


def cleanup_containers(
    client: Any = None,
    *,
    include_live: bool = False,
    dry_run: bool = False,
    base_url: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Remove rlm-core containers whose owner process (on this host) is no longer alive.

    ``include_live=True`` also removes those of live owners and of other hosts; ``labels`` narrows it
    to containers that also carry these (one run's: ``{LABEL_RUN_ID: run_id}``). Returns one row per
    container acted on (or that would be, with ``dry_run``): kind, id, run id, owner pid and host,
    removed (and the error when removing failed). An engine that cannot be reached raises
    ``SandboxStartError``.
    """
    service = DockerContainers(client or make_client(base_url), labels or {})
    fix = f"check the engine at {_engine_address(base_url)}"
    return lifecycle.run_cleanup(service, include_live=include_live, dry_run=dry_run, fix=fix)


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
