"""The Prime transport: one Prime Intellect sandbox; files by upload, the runtime as one live process.

``AsyncSandboxClient.open_process`` streams the process's stdout and takes stdin writes, so the
sandbox needs no tunnel, no open port and no API key. Its stdin has no EOF: the core ends the
runtime in-band (the protocol's ``shutdown`` message), and close() signals what is left. The Prime
SDK is imported when a sandbox starts.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_core.environments import lifecycle
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError

logger = logging.getLogger("rlm_prime")

DEFAULT_PYTHON_VERSION = "3.11"
WORKDIR = "/rlm"
# The labels every sandbox carries: rlm-core, rlm-core-run-<id>, rlm-core-pid-<pid>, rlm-core-host-<host>.
LABELS = lifecycle.OwnerLabels()
_SHUTDOWN_GRACE = 0.5
_COMMAND_TIMEOUT = 30
_INSTALL_TIMEOUT = 900
_DELETE_TIMEOUT = 30.0


def import_prime() -> Any:
    return lifecycle.import_sdk(
        "prime_sandboxes", environment="prime", sdk="the Prime Intellect SDK", install="rlm-prime"
    )


def configured_api_key(sdk: Any, api_key: str | None = None) -> str:
    """The key the SDK would use: ``api_key``, else PRIME_API_KEY, else the Prime CLI's config file."""
    if key := lifecycle.configured_key(api_key, "PRIME_API_KEY"):
        return key
    try:
        return str(sdk.Config().api_key or "")
    except Exception:
        return ""


# -- the exit registry and the stream -----------------------------------------------------------


def _delete_blocking(held: tuple[str, str | None]) -> None:
    sandbox_id, api_key = held
    sdk = import_prime()  # the SDK's blocking client: no event loop runs at exit
    sdk.SandboxClient(sdk.APIClient(api_key=api_key)).delete(sandbox_id)


# The sandboxes this process holds (id and the key that made it), deleted at interpreter exit.
_live: lifecycle.LiveSandboxes[tuple[str, str | None]] = lifecycle.LiveSandboxes("Prime", _delete_blocking)
delete_live_sandboxes = _live.end_all


class PrimeProcessStream(lifecycle.ProcessByteStream):
    """A :class:`~rlm_core.environments.ByteStream` over one live Prime process. Its stdin has no EOF:
    the core's in-band ``shutdown`` ends the runtime, and closing kills what is left."""

    def __init__(self, transport: PrimeTransport, process: Any, group: lifecycle.RuntimeGroup) -> None:
        super().__init__(process.stdout, stderr=process.stderr, describe=transport.describe())
        self.process, self.group, self.transport = process, group, transport

    async def send(self, data: bytes) -> None:
        await self.process.write_stdin(data)

    async def end_process(self) -> None:
        self.exit_code = await self.group.end(self.process.wait, self.transport.run_quietly, _SHUTDOWN_GRACE)
        await lifecycle.quietly(self.process.aclose, _COMMAND_TIMEOUT)


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
        self.run_id = run_id or lifecycle.new_run_id()
        self.extra_labels = list(labels)
        self.api_key = api_key
        self.client: Any = None
        self.sandbox_id = ""
        self.runtimes = lifecycle.RuntimeGroups(workdir)

    def describe(self) -> str:
        return f"Prime sandbox {self.sandbox_id or '(not started)'} ({self.image})"

    def labels(self) -> list[str]:
        return [*self.extra_labels, *LABELS.labels(lifecycle.Owner.current(self.run_id))]

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
        client = self.client
        try:
            sandbox = await lifecycle.created_or_ended(
                client.create(request), end=lambda late: client.delete(late.id)
            )
        except Exception as exc:
            raise self._start_error(sdk, exc) from exc
        self.sandbox_id = str(sandbox.id)
        _live.add(self.sandbox_id, (self.sandbox_id, self.api_key))
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
        timeout = _INSTALL_TIMEOUT if "install" in what else _COMMAND_TIMEOUT
        with lifecycle.reported_as(f"{what} in {self.describe()} failed", SandboxStartError):
            response = await self.client.execute_command(self.sandbox_id, command, env=env, timeout=timeout)
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
        with lifecycle.reported_as(f"could not upload {path} into {self.describe()}"):
            await self.client.upload_bytes(sandbox_id, path, data, posixpath.basename(path))

    async def open_stream(self, argv: list[str]) -> PrimeProcessStream:
        sandbox_id, group = self._require(), self.runtimes.next()
        # The process API takes one shell command line; sh splits it back into the runtime's argv.
        with lifecycle.reported_as(f"could not start the runtime in {self.describe()}"):
            process = await self.client.open_process(
                sandbox_id, shlex.join(group.command(argv)), working_dir=self.workdir
            )
        return PrimeProcessStream(self, process, group)

    async def run_quietly(self, script: str) -> None:
        """Run a shell line in the sandbox; quiet if it or the sandbox is gone."""
        client, sandbox_id = self.client, self.sandbox_id
        if sandbox_id and client is not None:
            command = f"sh -c {shlex.quote(script)}"
            await lifecycle.quietly(
                lambda: client.execute_command(sandbox_id, command, timeout=_COMMAND_TIMEOUT),
                _COMMAND_TIMEOUT + 5,
            )

    async def close(self) -> None:
        client, sandbox_id = self.client, self.sandbox_id
        if client is None:
            return
        if sandbox_id:
            # Forgotten by the exit registry only once deleted: a close() cancelled mid-way leaves
            # the sandbox to the exit hook.
            await _live.end(sandbox_id, client.delete(sandbox_id), _DELETE_TIMEOUT)
        self.client, self.sandbox_id = None, ""
        with contextlib.suppress(Exception):
            await client.aclose()
