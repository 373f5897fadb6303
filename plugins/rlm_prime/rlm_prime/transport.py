"""The Prime transport: one Prime Intellect sandbox; files by upload, the runtime as one live process.

``AsyncSandboxClient.open_process`` streams the process's stdout and takes stdin writes, so the
sandbox needs no tunnel, no open port and no API key. Its stdin has no EOF: the core ends the
runtime in-band (the protocol's ``shutdown`` message), and close() signals what is left. The Prime
SDK is imported when a sandbox starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import posixpath
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_core.environments.ownership import LiveSandboxes
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError
from rlm_prime.owner import new_run_id, owner_labels

logger = logging.getLogger("rlm_prime")

DEFAULT_PYTHON_VERSION = "3.11"
WORKDIR = "/rlm"
_STDERR_TAIL_CHARS = 4000
_SHUTDOWN_GRACE = 0.5
_COMMAND_TIMEOUT = 30
_INSTALL_TIMEOUT = 900
_DELETE_TIMEOUT = 30.0
_LATE_CREATE_TIMEOUT = 120.0


def import_prime() -> Any:
    try:
        import prime_sandboxes
    except ImportError:
        raise SandboxStartError(
            "the prime environment needs the Prime Intellect SDK, which is not installed; pip install rlm-prime"
        ) from None
    return prime_sandboxes


def configured_api_key(sdk: Any, api_key: str | None = None) -> str:
    """The key the SDK would use: ``api_key``, else PRIME_API_KEY, else the Prime CLI's config file."""
    if api_key:
        return api_key
    if os.environ.get("PRIME_API_KEY"):
        return os.environ["PRIME_API_KEY"]
    try:
        return str(sdk.Config().api_key or "")
    except Exception:
        return ""


# -- removal at interpreter exit -----------------------------------------------------------------


def _delete(transport: PrimeTransport) -> None:
    sdk = import_prime()  # the SDK's blocking client: no event loop runs at exit
    sdk.SandboxClient(sdk.APIClient(api_key=transport.api_key)).delete(transport.sandbox_id)


_live: LiveSandboxes[PrimeTransport] = LiveSandboxes("Prime", _delete)
# What the exit hook runs: delete every sandbox this process still holds.
delete_live_sandboxes = _live.end_all


# -- the stream ----------------------------------------------------------------------------------


class PrimeProcessStream:
    """A :class:`~rlm_core.environments.ByteStream` over one live Prime process."""

    def __init__(self, transport: PrimeTransport, process: Any, pidfile: str) -> None:
        self.transport = transport
        self.process = process
        self.pidfile = pidfile
        self._buffer = bytearray()
        self._eof = False
        self._closed = False
        self._stderr_tail = ""
        self._stderr_task = asyncio.create_task(self._drain_stderr(), name="rlm-prime-stderr")

    async def _drain_stderr(self) -> None:
        with contextlib.suppress(Exception):
            async for chunk in self.process.stderr:
                self._stderr_tail = (self._stderr_tail + chunk.decode("utf-8", "replace"))[
                    -_STDERR_TAIL_CHARS:
                ]

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer and not self._eof:
            try:
                self._buffer += await anext(self.process.stdout)
            except StopAsyncIteration:
                self._eof = True
            except Exception as exc:  # the stream or the sandbox went away: that is EOF too
                logger.info("reading from %s ended: %s", self.transport.describe(), exc)
                self._eof = True
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    async def write(self, data: bytes) -> None:
        try:
            await self.process.write_stdin(data)
        except Exception as exc:
            raise ConnectionError(f"the runtime in {self.transport.describe()} is gone: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # After the core's in-band `shutdown` the runtime exits by itself; then its process group is
        # killed (the runtime leads it), so a stuck runtime and whatever its cells started go too.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), _SHUTDOWN_GRACE)
        await self.transport.kill_process_group(self.pidfile)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.aclose(), _COMMAND_TIMEOUT)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._stderr_task, timeout=1.0)
        self._stderr_task.cancel()

    def diagnostics(self) -> str:
        parts = []
        code = self.process.returncode
        if code is not None:
            parts.append(f"exit code {code}" + (" (killed: often the memory limit)" if code == 137 else ""))
        tail = self._stderr_tail.strip()
        if tail:
            parts.append("stderr: " + tail[-600:])
        return "; ".join(parts)


# -- the transport -------------------------------------------------------------------------------


class PrimeTransport:
    """A :class:`~rlm_core.environments.Transport` over one Prime Intellect sandbox.

    ``image``: a registry image (default ``python:<python_version>-slim``); ``pip``/``apt`` packages
    are installed when the sandbox starts (that needs the sandbox's network). ``env`` and
    ``secrets`` are the only variables the sandbox gets (nothing of the host's environment; the
    API key stays on the host).
    """

    def __init__(
        self,
        *,
        image: str | None = None,
        python_version: str = DEFAULT_PYTHON_VERSION,
        pip: Sequence[str] = (),
        apt: Sequence[str] = (),
        cpu_cores: float = 1.0,
        memory_gb: float = 1.0,
        disk_size_gb: float | None = None,
        gpu_count: int = 0,
        gpu_type: str | None = None,
        timeout_minutes: int = 60,
        idle_timeout_minutes: int | None = None,
        region: str | None = None,
        team_id: str | None = None,
        network_allowlist: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        workdir: str = WORKDIR,
        python: str = "python3",
        run_id: str | None = None,
        labels: Sequence[str] = (),
        api_key: str | None = None,
    ) -> None:
        if isinstance(pip, str) or isinstance(apt, str) or isinstance(labels, str):
            raise ConfigurationError("pip, apt and labels take lists of strings, e.g. pip=['numpy']")
        if timeout_minutes <= 0 or (idle_timeout_minutes is not None and idle_timeout_minutes <= 0):
            raise ConfigurationError(
                f"timeout_minutes and idle_timeout_minutes are positive minutes, got {timeout_minutes!r} "
                f"and {idle_timeout_minutes!r}"
            )
        if cpu_cores <= 0 or memory_gb <= 0:
            raise ConfigurationError(
                f"cpu_cores and memory_gb must be positive, got {cpu_cores!r}, {memory_gb!r}"
            )
        if not posixpath.isabs(workdir):
            raise ConfigurationError(f"workdir must be an absolute path inside the sandbox, got {workdir!r}")
        self.image = image or f"python:{python_version}-slim"
        self.pip = list(pip)
        self.apt = list(apt)
        self.cpu_cores = cpu_cores
        self.memory_gb = memory_gb
        self.disk_size_gb = disk_size_gb
        self.gpu_count = gpu_count
        self.gpu_type = gpu_type
        self.timeout_minutes = timeout_minutes
        self.idle_timeout_minutes = idle_timeout_minutes
        self.region = region
        self.team_id = team_id
        self.network_allowlist = list(network_allowlist) if network_allowlist is not None else None
        self.env = dict(env or {})
        self.secrets = dict(secrets or {})
        self.workdir = workdir
        self.python = python
        self.run_id = run_id or new_run_id()
        self.extra_labels = list(labels)
        self.api_key = api_key
        self.client: Any = None
        self.sandbox_id = ""
        self._streams = 0

    def describe(self) -> str:
        return f"Prime sandbox {self.sandbox_id or '(not started)'} ({self.image})"

    def labels(self) -> list[str]:
        return [*self.extra_labels, *owner_labels(self.run_id)]

    async def start(self) -> None:
        if self.sandbox_id:
            return
        sdk = import_prime()
        if not configured_api_key(sdk, self.api_key):
            raise SandboxError(
                "no Prime Intellect API key: set PRIME_API_KEY on the host (or run `prime login`, or pass "
                "api_key=); it is used by this process only and never enters the sandbox"
            )
        self.client = sdk.AsyncSandboxClient(api_key=self.api_key)
        request = sdk.CreateSandboxRequest(
            name=f"rlm-{self.run_id}",
            docker_image=self.image,
            cpu_cores=self.cpu_cores,
            memory_gb=self.memory_gb,
            disk_size_gb=self.disk_size_gb,
            gpu_count=self.gpu_count,
            gpu_type=self.gpu_type,
            timeout_minutes=self.timeout_minutes,
            idle_timeout_minutes=self.idle_timeout_minutes,
            environment_vars=self.env or None,
            secrets=self.secrets or None,
            labels=self.labels(),
            team_id=self.team_id,
            region=self.region,
            network_allowlist=self.network_allowlist,
        )
        began = time.monotonic()
        logger.info("starting a Prime sandbox from %s (provisioning can take a while)", self.image)
        creating = asyncio.ensure_future(self.client.create(request))
        try:
            sandbox = await asyncio.shield(creating)
        except asyncio.CancelledError:
            # Cancelled (Ctrl-C) while Prime was creating it: the sandbox may exist already.
            await _delete_when_created(self.client, creating)
            raise
        except Exception as exc:
            raise self._start_error(sdk, exc) from exc
        self.sandbox_id = str(sandbox.id)
        _live.add(self.sandbox_id, self)
        try:
            await self.client.wait_for_creation(self.sandbox_id)
        except Exception as exc:
            raise self._start_error(sdk, exc) from exc
        logger.info(
            "Prime sandbox %s is up after %.1fs (run %s)",
            self.sandbox_id,
            time.monotonic() - began,
            self.run_id,
        )
        await self._run(f"mkdir -p {shlex.quote(self.workdir)}", "creating the working directory")
        if self.apt:
            logger.info("installing apt packages in %s: %s", self.sandbox_id, " ".join(self.apt))
            packages = shlex.join(self.apt)
            await self._run(
                f"apt-get update -q && apt-get install -y -q {packages}", "installing apt packages"
            )
        if self.pip:
            logger.info("installing pip packages in %s: %s", self.sandbox_id, " ".join(self.pip))
            await self._run(
                f"{shlex.quote(self.python)} -m pip install -q {shlex.join(self.pip)}",
                "installing pip packages",
                # The sandbox is disposable: installing into its system Python is what is wanted,
                # also where the distribution marks that Python externally managed (PEP 668).
                env={"PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_ROOT_USER_ACTION": "ignore"},
            )

    def _start_error(self, sdk: Any, exc: Exception) -> SandboxStartError:
        if isinstance(exc, sdk.UnauthorizedError):
            return SandboxStartError(
                f"Prime Intellect rejected the API key ({exc}); set PRIME_API_KEY (or run `prime login`)"
            )
        return SandboxStartError(
            f"could not start a Prime sandbox from {self.image!r}: {type(exc).__name__}: {exc}. Check the "
            "image, the resources (cpu_cores, memory_gb, gpu) and your Prime account"
        )

    async def _run(self, command: str, what: str, env: dict[str, str] | None = None) -> None:
        try:
            response = await self.client.execute_command(
                self.sandbox_id,
                command,
                env=env,
                timeout=_INSTALL_TIMEOUT if "install" in what else _COMMAND_TIMEOUT,
            )
        except Exception as exc:
            raise SandboxStartError(f"{what} in {self.describe()} failed: {exc}") from exc
        if response.exit_code != 0:
            raise SandboxStartError(
                f"{what} in {self.describe()} failed (exit code {response.exit_code}): "
                f"{(response.stderr or response.stdout or '').strip()[-600:]}"
            )

    def _require(self) -> str:
        if not self.sandbox_id or self.client is None:
            raise SandboxError("the Prime sandbox was not started; call start() first")
        return self.sandbox_id

    async def put_file(self, path: str, data: bytes) -> None:
        sandbox_id = self._require()
        try:
            await self.client.upload_bytes(sandbox_id, path, data, posixpath.basename(path))
        except Exception as exc:
            raise SandboxError(f"could not upload {path} into {self.describe()}: {exc}") from exc

    async def open_stream(self, argv: list[str]) -> PrimeProcessStream:
        sandbox_id = self._require()
        self._streams += 1
        pidfile = posixpath.join(self.workdir, f"runtime-{self._streams}.pid")
        # sh records its pid and then becomes the runtime (exec), so close() can kill its group.
        command = shlex.join(
            ["sh", "-c", f'echo $$ > {shlex.quote(pidfile)} && exec "$@"', "rlm-runtime", *argv]
        )
        try:
            process = await self.client.open_process(sandbox_id, command, working_dir=self.workdir)
        except Exception as exc:
            raise SandboxError(f"could not start the runtime in {self.describe()}: {exc}") from exc
        return PrimeProcessStream(self, process, pidfile)

    async def kill_process_group(self, pidfile: str) -> None:
        """SIGKILL the process group whose leader's pid is in ``pidfile``; quiet if it or the sandbox is gone."""
        if not self.sandbox_id or self.client is None:
            return
        script = f'p=$(cat {shlex.quote(pidfile)} 2>/dev/null) && kill -9 -"$p" "$p" 2>/dev/null; true'
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.client.execute_command(
                    self.sandbox_id, f"sh -c {shlex.quote(script)}", timeout=_COMMAND_TIMEOUT
                ),
                _COMMAND_TIMEOUT + 5,
            )

    async def close(self) -> None:
        client, sandbox_id = self.client, self.sandbox_id
        if client is None:
            return
        if sandbox_id:
            try:
                await asyncio.wait_for(client.delete(sandbox_id), _DELETE_TIMEOUT)
                logger.info("Prime sandbox %s deleted", sandbox_id)
            except Exception as exc:  # already gone, or Prime unreachable: its timeout ends it
                logger.info("deleting %s: %s", self.describe(), exc)
            # Forgotten only now: a close() cancelled mid-way leaves it to the exit handler.
            _live.discard(sandbox_id)
        self.client, self.sandbox_id = None, ""
        with contextlib.suppress(Exception):
            await client.aclose()


async def _delete_when_created(client: Any, creating: asyncio.Future[Any]) -> None:
    with contextlib.suppress(BaseException):
        sandbox = await asyncio.wait_for(creating, _LATE_CREATE_TIMEOUT)
        await asyncio.wait_for(client.delete(sandbox.id), _DELETE_TIMEOUT)
