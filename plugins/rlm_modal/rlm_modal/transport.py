"""The Modal transport: one Modal Sandbox; files through its filesystem API, the runtime through ``exec``.

The runtime's stdin/stdout are the stream, so the sandbox needs no tunnel, no open port and no API
key: sub-calls travel back over the stream. The Modal SDK is imported when a sandbox starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_core.environments import lifecycle
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError

logger = logging.getLogger("rlm_modal")

DEFAULT_APP_NAME = "rlm-core"
DEFAULT_PYTHON_VERSION = "3.11"
WORKDIR = "/rlm"
# The tags every sandbox carries: rlm-core=1, rlm-core-run-id, rlm-core-owner-pid, rlm-core-owner-host.
TAGS = lifecycle.OwnerTags()
_KILL_TIMEOUT = 15.0
_EXIT_GRACE = 0.5
_TERMINATE_TIMEOUT = 30.0


def import_modal() -> Any:
    return lifecycle.import_sdk("modal", environment="modal", sdk="the Modal SDK", install="rlm-modal")


def memory_mib(value: int | str | None) -> int | None:
    """MiB from an int (MiB, as Modal takes it) or a string like ``"512m"`` / ``"4g"``."""
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value <= 0:
            raise ConfigurationError(f"memory must be a positive number of MiB, got {value}")
        return value
    text = str(value).strip().lower().removesuffix("b").removesuffix("i")
    units = {"m": 1, "g": 1024, "t": 1024 * 1024}
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise ConfigurationError(
            f"memory {value!r} is not a size; use MiB (int) or a string like '512m' or '4g'"
        ) from None


# -- the exit registry and the stream -----------------------------------------------------------

# The sandboxes this process holds, terminated at interpreter exit with the SDK's blocking call
# (no event loop runs then).
_live: lifecycle.LiveSandboxes[Any] = lifecycle.LiveSandboxes("Modal", lambda sandbox: sandbox.terminate())
terminate_live_sandboxes = _live.end_all


class ModalProcessStream(lifecycle.ProcessByteStream):
    """A :class:`~rlm_core.environments.ByteStream` over one ``Sandbox.exec`` process (bytes mode)."""

    def __init__(self, transport: ModalTransport, process: Any, group: lifecycle.RuntimeGroup) -> None:
        super().__init__(process.stdout, stderr=process.stderr, describe=transport.describe())
        self.transport = transport
        self.process = process
        self.group = group

    async def send(self, data: bytes) -> None:
        self.process.stdin.write(data)
        await self.process.stdin.drain.aio()

    async def end_process(self) -> None:
        # stdin EOF ends the runtime (after the core's in-band `shutdown` it is already ending); then
        # its group is killed from inside the sandbox, since Modal's process handle cannot signal.
        with contextlib.suppress(Exception):
            self.process.stdin.write_eof()
            await asyncio.wait_for(self.process.stdin.drain.aio(), timeout=5)
        self.exit_code = await self.group.end(self.process.wait.aio, self.transport.run_quietly, _EXIT_GRACE)


# -- the transport -------------------------------------------------------------------------------


class ModalTransport:
    """A :class:`~rlm_core.environments.Transport` over one Modal Sandbox.

    ``image``: None (Debian slim with ``python_version``), a registry tag such as
    ``"python:3.12-slim"``, or a ``modal.Image`` you built; ``pip``/``apt`` packages are added on
    top. ``secrets``: Modal Secret names, dicts of variables, or ``modal.Secret`` objects; they and
    ``env`` are the only variables the sandbox gets (nothing of the host's environment).
    """

    def __init__(
        self,
        *,
        image: Any = None,
        python_version: str = DEFAULT_PYTHON_VERSION,
        pip: Sequence[str] = (),
        apt: Sequence[str] = (),
        add_python: str | None = None,
        app_name: str = DEFAULT_APP_NAME,
        environment_name: str | None = None,
        sandbox_timeout: int = 3600,
        idle_timeout: int | None = None,
        cpu: float | None = None,
        memory: int | str | None = None,
        gpu: str | None = None,
        region: str | Sequence[str] | None = None,
        block_network: bool = True,
        secrets: Sequence[Any] = (),
        env: Mapping[str, str] | None = None,
        workdir: str = WORKDIR,
        python: str = "python3",
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(pip, str) or isinstance(apt, str):
            raise ConfigurationError("pip and apt take a list of package names, e.g. pip=['numpy']")
        if sandbox_timeout <= 0 or (idle_timeout is not None and idle_timeout <= 0):
            raise ConfigurationError(
                f"sandbox_timeout and idle_timeout are positive seconds, got {sandbox_timeout!r} and "
                f"{idle_timeout!r}"
            )
        if not posixpath.isabs(workdir):
            raise ConfigurationError(f"workdir must be an absolute path inside the sandbox, got {workdir!r}")
        self.image = image
        self.python_version = python_version
        self.pip = list(pip)
        self.apt = list(apt)
        self.add_python = add_python
        self.app_name = app_name
        self.environment_name = environment_name
        self.sandbox_timeout = int(sandbox_timeout)
        self.idle_timeout = idle_timeout
        self.cpu = cpu
        self.memory = memory_mib(memory)
        self.gpu = gpu
        self.region = region
        self.block_network = block_network
        self.secrets = list(secrets)
        self.env = dict(env or {})
        self.workdir = workdir
        self.python = python
        self.run_id = run_id or lifecycle.new_run_id()
        self.extra_tags = dict(tags or {})
        self.sandbox: Any = None
        self.sandbox_id = ""
        self.runtimes = lifecycle.RuntimeGroups(workdir)

    def describe(self) -> str:
        return f"Modal sandbox {self.sandbox_id or '(not started)'} in app {self.app_name!r}"

    def tags(self) -> dict[str, str]:
        return {**self.extra_tags, **TAGS.tags(lifecycle.Owner.current(self.run_id))}

    def _build_image(self, modal: Any) -> Any:
        image = self.image
        if image is None:
            image = modal.Image.debian_slim(python_version=self.python_version)
        elif isinstance(image, str):
            image = modal.Image.from_registry(image, add_python=self.add_python)
        if self.apt:
            image = image.apt_install(*self.apt)
        if self.pip:
            image = image.pip_install(*self.pip)
        return image

    def _build_secrets(self, modal: Any) -> list[Any]:
        built = []
        for secret in self.secrets:
            if isinstance(secret, str):
                built.append(modal.Secret.from_name(secret, environment_name=self.environment_name))
            elif isinstance(secret, Mapping):
                built.append(modal.Secret.from_dict(dict(secret)))
            else:
                built.append(secret)
        return built

    async def start(self) -> None:
        if self.sandbox is not None:
            return
        modal = import_modal()
        began = time.monotonic()
        logger.info(
            "starting a Modal sandbox in app %r (image build and start-up can take a while)", self.app_name
        )
        try:
            app = await modal.App.lookup.aio(
                self.app_name, create_if_missing=True, environment_name=self.environment_name
            )
            sandbox = await lifecycle.created_or_ended(
                modal.Sandbox.create.aio(
                    app=app,
                    image=self._build_image(modal),
                    tags=self.tags(),
                    timeout=self.sandbox_timeout,
                    idle_timeout=self.idle_timeout,
                    gpu=self.gpu,
                    region=self.region,
                    cpu=self.cpu,
                    memory=self.memory,
                    block_network=self.block_network,
                    secrets=self._build_secrets(modal),
                    env=self.env or None,
                    environment_name=self.environment_name,
                ),
                end=lambda late: late.terminate.aio(),
            )
        except Exception as exc:
            raise self._start_error(modal, exc) from exc
        self.sandbox = sandbox
        self.sandbox_id = str(sandbox.object_id)
        _live.add(self.sandbox_id, sandbox)
        logger.info(
            "Modal sandbox %s is up after %.1fs (run %s)",
            self.sandbox_id,
            time.monotonic() - began,
            self.run_id,
        )
        # Created here, not as the sandbox's workdir: an image need not have it.
        with lifecycle.reported_as(f"could not create {self.workdir} in {self.describe()}"):
            await sandbox.filesystem.make_directory.aio(self.workdir, create_parents=True)

    def _start_error(self, modal: Any, exc: Exception) -> SandboxStartError:
        if isinstance(exc, modal.exception.AuthError):
            return SandboxStartError(
                f"Modal rejected the credentials ({exc}); run `modal token new`, or set MODAL_TOKEN_ID and "
                "MODAL_TOKEN_SECRET on the host (they never enter the sandbox)"
            )
        return SandboxStartError(
            f"could not start a Modal sandbox in app {self.app_name!r}: {type(exc).__name__}: {exc}. Check "
            "the image, the resources (cpu, memory, gpu, region) and your Modal credentials"
        )

    def _require(self) -> Any:
        if self.sandbox is None:
            raise SandboxError("the Modal sandbox was not started; call start() first")
        return self.sandbox

    async def put_file(self, path: str, data: bytes) -> None:
        sandbox = self._require()
        with lifecycle.reported_as(f"could not write {path} into {self.describe()}"):
            await sandbox.filesystem.write_bytes.aio(data, path)

    async def open_stream(self, argv: list[str]) -> ModalProcessStream:
        group = self.runtimes.next()
        with lifecycle.reported_as(f"could not start the runtime in {self.describe()}"):
            process = await self._require().exec.aio(*group.command(argv), workdir=self.workdir, text=False)
        return ModalProcessStream(self, process, group)

    async def run_quietly(self, script: str) -> None:
        """Run a shell line in the sandbox and wait for it; quiet if the sandbox is gone."""
        if self.sandbox is None:
            return
        with contextlib.suppress(Exception):
            process = await asyncio.wait_for(
                self.sandbox.exec.aio("sh", "-c", script, text=False), _KILL_TIMEOUT
            )
            await asyncio.wait_for(process.wait.aio(), _KILL_TIMEOUT)

    async def close(self) -> None:
        # Forgotten by the exit registry only once terminated: a close() cancelled mid-way leaves
        # the sandbox to the exit hook.
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            await _live.end(self.sandbox_id, sandbox.terminate.aio(), _TERMINATE_TIMEOUT)
