"""The Daytona transport: one Daytona sandbox; files by upload, the runtime as one asynchronous command
in a session whose input and logs are the stream.

Sub-calls travel back over that stream, so no API key, port or tunnel enters the sandbox. The Daytona
SDK is imported when a sandbox starts.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shlex
import time
from collections.abc import Mapping
from typing import Any

from rlm_core.environments import lifecycle
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError
from rlm_daytona.settings import plain_variables, secret_references
from rlm_daytona.stream import DaytonaSessionStream

logger = logging.getLogger("rlm_daytona")

WORKDIR = "/home/daytona/rlm"  # the default snapshot's user owns /home/daytona
# The labels every sandbox carries: rlm-core=1, rlm-core-run-id, rlm-core-owner-pid, rlm-core-owner-host.
TAGS = lifecycle.OwnerTags()
_COMMAND_TIMEOUT = 30
_DELETE_TIMEOUT = 60.0


def import_daytona() -> Any:
    return lifecycle.import_sdk(
        "daytona", environment="daytona", sdk="the Daytona SDK", install="rlm-daytona"
    )


def configured_api_key(api_key: str | None = None) -> str:
    """The credential the SDK would use: ``api_key``, else DAYTONA_API_KEY (or a DAYTONA_JWT_TOKEN)."""
    return lifecycle.configured_key(api_key, "DAYTONA_API_KEY", "DAYTONA_JWT_TOKEN")


Held = tuple[str, str | None, str | None, str | None]  # sandbox id, api key, api url, target


def client_config(sdk: Any, api_key: str | None, api_url: str | None, target: str | None) -> Any:
    return sdk.DaytonaConfig(api_key=api_key, api_url=api_url, target=target)


def _delete_blocking(held: Held) -> None:
    sandbox_id, api_key, api_url, target = held
    sdk = import_daytona()  # the SDK's blocking client: no event loop runs at exit or in a signal handler
    sdk.Daytona(client_config(sdk, api_key, api_url, target)).get(sandbox_id).delete(timeout=_DELETE_TIMEOUT)


# The sandboxes this process holds, deleted at interpreter exit and on SIGINT/SIGTERM.
_live: lifecycle.LiveSandboxes[Held] = lifecycle.LiveSandboxes("Daytona", _delete_blocking, on_signals=True)
delete_live_sandboxes = _live.end_all


class DaytonaTransport:
    """A :class:`~rlm_core.environments.Transport` over one Daytona sandbox.

    ``snapshot`` (a Daytona snapshot name; None: Daytona's default, which has Python) or ``image``
    (a registry image with Python >= 3.8, built into a snapshot by Daytona; only then do ``cpu``,
    ``memory``, ``disk`` and ``gpu`` apply). ``env`` and ``secrets`` are the only variables the
    sandbox gets: nothing of the host's environment, and the API key stays on the host.
    """

    def __init__(
        self,
        *,
        snapshot: str | None = None,
        image: str | None = None,
        cpu: int | None = None,
        memory: int | None = None,
        disk: int | None = None,
        gpu: int | None = None,
        target: str | None = None,
        auto_stop_interval: int = 60,
        ttl_minutes: int | None = None,
        create_timeout: float = 180,
        network_block_all: bool = True,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        workdir: str = WORKDIR,
        python: str = "python3",
        run_id: str | None = None,
        api_key: str | None = None,
        api_url: str | None = None,
    ) -> None:
        resources = {"cpu": cpu, "memory": memory, "disk": disk, "gpu": gpu}
        if snapshot is not None and image is not None:
            raise ConfigurationError("pass snapshot= or image=, not both: a sandbox starts from one of them")
        if image is None and any(value is not None for value in resources.values()):
            raise ConfigurationError(
                "cpu, memory, disk and gpu apply to a sandbox built from image=; a snapshot fixes its own "
                "resources (pass image='python:3.11-slim' with them, or leave them out)"
            )
        for name, value in resources.items():
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigurationError(
                    f"{name} is a positive whole number (memory and disk in GiB), got {value!r}"
                )
        if not isinstance(auto_stop_interval, int) or auto_stop_interval <= 0:
            raise ConfigurationError(
                f"auto_stop_interval is positive minutes of inactivity before Daytona stops (and, being "
                f"ephemeral, deletes) the sandbox, got {auto_stop_interval!r}"
            )
        if ttl_minutes is not None and (not isinstance(ttl_minutes, int) or ttl_minutes <= 0):
            raise ConfigurationError(f"ttl_minutes is positive minutes, got {ttl_minutes!r}")
        if create_timeout <= 0:
            raise ConfigurationError(f"create_timeout is positive seconds, got {create_timeout!r}")
        if not posixpath.isabs(workdir):
            raise ConfigurationError(f"workdir must be an absolute path inside the sandbox, got {workdir!r}")
        self.snapshot = snapshot
        self.image = image
        self.resources = resources
        self.target = target
        self.auto_stop_interval = auto_stop_interval
        self.ttl_minutes = ttl_minutes
        self.create_timeout = create_timeout
        self.network_block_all = network_block_all
        self.env = plain_variables(env)
        self.secrets = secret_references(secrets)
        self.extra_labels = dict(labels or {})
        self.workdir = workdir
        self.python = python
        self.run_id = run_id or lifecycle.new_run_id()
        self.api_key = api_key
        self.api_url = api_url
        self.client: Any = None
        self.sandbox: Any = None
        self.sandbox_id = ""
        self.runtimes = lifecycle.RuntimeGroups(workdir)

    def describe(self) -> str:
        source = self.image or self.snapshot or "the default snapshot"
        return f"Daytona sandbox {self.sandbox_id or '(not started)'} ({source})"

    def labels(self) -> dict[str, str]:
        return {**self.extra_labels, **TAGS.tags(lifecycle.Owner.current(self.run_id))}

    def create_params(self, sdk: Any) -> Any:
        """The SDK's creation parameters: from the image with its resources, or from the snapshot."""
        common = {
            "language": "python",
            "env_vars": self.env or None,
            "secrets": self.secrets or None,
            "labels": self.labels(),
            "auto_stop_interval": self.auto_stop_interval,
            "ttl_minutes": self.ttl_minutes,
            "ephemeral": True,  # deleted as soon as it stops: the backstop if the host is killed
            "network_block_all": self.network_block_all,
            "target": self.target,
        }
        if self.image is None:
            return sdk.CreateSandboxFromSnapshotParams(snapshot=self.snapshot, **common)
        resources = None
        if any(value is not None for value in self.resources.values()):
            resources = sdk.Resources(**self.resources)
        return sdk.CreateSandboxFromImageParams(image=self.image, resources=resources, **common)

    async def start(self) -> None:
        if self.sandbox is not None:
            return
        sdk = import_daytona()
        if not configured_api_key(self.api_key):
            raise SandboxStartError(
                "no Daytona API key: set DAYTONA_API_KEY on the host (or pass api_key=); it is used by this "
                "process only and never enters the sandbox"
            )
        _live.watch_signals()  # here, on the loop's thread: signal handlers need the main thread
        params = self.create_params(sdk)
        if self.client is None:
            self.client = sdk.AsyncDaytona(client_config(sdk, self.api_key, self.api_url, self.target))
        began = time.monotonic()
        logger.info(
            "starting a Daytona sandbox from %s (a new image is built first)",
            self.image or self.snapshot or "the default snapshot",
        )
        try:
            sandbox = await lifecycle.created_or_ended(
                self.client.create(params, timeout=self.create_timeout),
                end=lambda late: late.delete(timeout=_DELETE_TIMEOUT),
            )
        except Exception as exc:
            await self._delete_timed_out(sdk, exc)
            raise self._start_error(sdk, exc) from exc
        self.sandbox = sandbox
        self.sandbox_id = str(sandbox.id)
        _live.add(self.sandbox_id, (self.sandbox_id, self.api_key, self.api_url, self.target))
        logger.info(
            "Daytona sandbox %s is up after %.1fs (run %s)",
            self.sandbox_id,
            time.monotonic() - began,
            self.run_id,
        )
        await self._make_workdir()

    async def _delete_timed_out(self, sdk: Any, exc: Exception) -> None:
        """A creation that timed out after the sandbox existed names it: delete it, it is ours."""
        sandbox_id = getattr(exc, "sandbox_id", None) if isinstance(exc, sdk.DaytonaTimeoutError) else None
        if sandbox_id:
            with contextlib.suppress(Exception):
                late = await self.client.get(sandbox_id, request_timeout=_COMMAND_TIMEOUT)
                await late.delete(timeout=_DELETE_TIMEOUT)

    def _start_error(self, sdk: Any, exc: Exception) -> SandboxStartError:
        if isinstance(exc, sdk.DaytonaAuthenticationError):
            return SandboxStartError(
                f"Daytona rejected the API key ({exc}); set DAYTONA_API_KEY on the host (or pass api_key=)"
            )
        return SandboxStartError(
            f"could not start a Daytona sandbox from {self.image or self.snapshot or 'the default snapshot'}: "
            f"{type(exc).__name__}: {exc}. Check the snapshot or image, the resources, the target and your "
            "Daytona organization's limits"
        )

    async def _make_workdir(self) -> None:
        what = f"creating {self.workdir} in {self.describe()}"
        with lifecycle.reported_as(f"{what} failed", SandboxStartError):
            response = await self.sandbox.process.exec(
                f"mkdir -p {shlex.quote(self.workdir)}", timeout=_COMMAND_TIMEOUT
            )
        if response.exit_code != 0:
            raise SandboxStartError(
                f"{what} failed (exit code {response.exit_code}): {response.result.strip()[-600:]}"
            )

    def require(self) -> Any:
        if self.sandbox is None:
            raise SandboxError("the Daytona sandbox was not started; call start() first")
        return self.sandbox

    async def put_file(self, path: str, data: bytes) -> None:
        sandbox = self.require()
        with lifecycle.reported_as(f"could not upload {path} into {self.describe()}"):
            await sandbox.fs.upload_file(data, path)

    async def open_stream(self, argv: list[str]) -> DaytonaSessionStream:
        group = self.runtimes.next()
        stream = DaytonaSessionStream(self, group, f"rlm-{self.run_id}-{self.runtimes.started}")
        # A session command is one shell line, run where the session's shell is: cd first.
        command = f"cd {shlex.quote(self.workdir)} && {shlex.join(lifecycle.relayed(lifecycle.TWO_WAY_RELAY, self.python, group.command(argv)))}"
        with lifecycle.reported_as(f"could not start the runtime in {self.describe()}"):
            await stream.launch(command)
        return stream

    async def run_quietly(self, script: str) -> None:
        """Run a shell line in the sandbox and wait for it; quiet if it fails or the sandbox is gone."""
        if (sandbox := self.sandbox) is not None:
            command = f"sh -c {shlex.quote(script)}"
            await lifecycle.quietly(
                lambda: sandbox.process.exec(command, timeout=_COMMAND_TIMEOUT), _COMMAND_TIMEOUT + 5
            )

    async def close(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            # Forgotten by the exit registry only once deleted: a close() cancelled mid-way leaves the
            # sandbox to the exit hook.
            await _live.end(self.sandbox_id, sandbox.delete(timeout=_DELETE_TIMEOUT), _DELETE_TIMEOUT)
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        _live.release_signals()  # here, on the loop's thread, like watch_signals
