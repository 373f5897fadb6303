"""The E2B transport: one E2B sandbox; files through its filesystem, the runtime as one background
command whose stdin and stdout are the stream.

Sub-calls travel back over that stream, so no API key, port or tunnel enters the sandbox. The E2B SDK
is imported when a sandbox starts.
"""

from __future__ import annotations

import logging
import posixpath
import shlex
import time
from collections.abc import Mapping
from typing import Any

from rlm_core.environments import lifecycle
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError
from rlm_e2b.settings import plain_variables, secret_variables
from rlm_e2b.stream import E2BCommandStream

logger = logging.getLogger("rlm_e2b")

WORKDIR = "/home/user/rlm"  # the default template's user owns /home/user
# The metadata every sandbox carries: rlm-core=1, rlm-core-run-id, rlm-core-owner-pid, rlm-core-owner-host.
TAGS = lifecycle.OwnerTags()
_COMMAND_TIMEOUT = 30.0
_KILL_TIMEOUT = 30.0


def import_e2b() -> Any:
    return lifecycle.import_sdk("e2b", environment="e2b", sdk="the E2B SDK", install="rlm-e2b")


def configured_api_key(api_key: str | None = None) -> str:
    """The key the SDK would use: ``api_key``, else E2B_API_KEY."""
    return lifecycle.configured_key(api_key, "E2B_API_KEY")


def _kill_blocking(held: tuple[str, str | None, str | None]) -> None:
    sandbox_id, api_key, domain = held
    e2b = import_e2b()  # the SDK's blocking class: no event loop runs at exit or in a signal handler
    e2b.Sandbox.kill(sandbox_id, api_key=api_key, domain=domain, request_timeout=_KILL_TIMEOUT)


# The sandboxes this process holds (id, key, domain), killed at interpreter exit and on SIGINT/SIGTERM.
_live: lifecycle.LiveSandboxes[tuple[str, str | None, str | None]] = lifecycle.LiveSandboxes(
    "E2B", _kill_blocking, on_signals=True
)
kill_live_sandboxes = _live.end_all


class E2BTransport:
    """A :class:`~rlm_core.environments.Transport` over one E2B sandbox.

    ``template``: an E2B template name or id (None: E2B's default ``base``, which has Python 3);
    CPU and memory are the template's (E2B sets them when a template is built). ``env`` and
    ``secrets`` are the only variables the sandbox gets: nothing of the host's environment, and the
    API key stays on the host.
    """

    def __init__(
        self,
        *,
        template: str | None = None,
        sandbox_timeout: int = 3600,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        allow_internet_access: bool = False,
        metadata: Mapping[str, str] | None = None,
        workdir: str = WORKDIR,
        python: str = "python3",
        run_id: str | None = None,
        api_key: str | None = None,
        domain: str | None = None,
        request_timeout: float | None = None,
    ) -> None:
        if not isinstance(sandbox_timeout, int) or sandbox_timeout <= 0:
            raise ConfigurationError(
                f"sandbox_timeout is a positive number of seconds (E2B's limit on the sandbox's life), "
                f"got {sandbox_timeout!r}"
            )
        if not posixpath.isabs(workdir):
            raise ConfigurationError(f"workdir must be an absolute path inside the sandbox, got {workdir!r}")
        if request_timeout is not None and request_timeout <= 0:
            raise ConfigurationError(f"request_timeout is positive seconds, got {request_timeout!r}")
        self.template = template
        self.sandbox_timeout = sandbox_timeout
        self.env = plain_variables(env)
        self.secrets = secret_variables(secrets)
        self.allow_internet_access = allow_internet_access
        self.extra_metadata = dict(metadata or {})
        self.workdir = workdir
        self.python = python
        self.run_id = run_id or lifecycle.new_run_id()
        self.api_key = api_key
        self.domain = domain
        self.request_timeout = request_timeout
        self.sandbox: Any = None
        self.sandbox_id = ""
        self.runtimes = lifecycle.RuntimeGroups(workdir)

    def describe(self) -> str:
        return f"E2B sandbox {self.sandbox_id or '(not started)'} ({self.template or 'base'})"

    def metadata(self) -> dict[str, str]:
        return {**self.extra_metadata, **TAGS.tags(lifecycle.Owner.current(self.run_id))}

    def api_params(self) -> dict[str, Any]:
        """The SDK's connection keywords (ApiParams) this transport sets; the SDK's defaults for the rest."""
        params = {"api_key": self.api_key, "domain": self.domain, "request_timeout": self.request_timeout}
        return {name: value for name, value in params.items() if value is not None}

    async def start(self) -> None:
        if self.sandbox is not None:
            return
        e2b = import_e2b()
        if not configured_api_key(self.api_key):
            raise SandboxStartError(
                "no E2B API key: set E2B_API_KEY on the host (or pass api_key=); it is used by this "
                "process only and never enters the sandbox"
            )
        _live.watch_signals()  # here, on the loop's thread: signal handlers need the main thread
        began = time.monotonic()
        logger.info("starting an E2B sandbox from template %s", self.template or "base")
        try:
            sandbox = await lifecycle.created_or_ended(
                e2b.AsyncSandbox.create(
                    template=self.template,
                    timeout=self.sandbox_timeout,
                    metadata=self.metadata(),
                    envs={**self.env, **self.secrets} or None,
                    allow_internet_access=self.allow_internet_access,
                    **self.api_params(),
                ),
                end=lambda late: e2b.AsyncSandbox.kill(late.sandbox_id, **self.api_params()),
            )
        except Exception as exc:
            raise self._start_error(e2b, exc) from exc
        self.sandbox = sandbox
        self.sandbox_id = str(sandbox.sandbox_id)
        _live.add(self.sandbox_id, (self.sandbox_id, self.api_key, self.domain))
        logger.info(
            "E2B sandbox %s is up after %.1fs (run %s)",
            self.sandbox_id,
            time.monotonic() - began,
            self.run_id,
        )
        with lifecycle.reported_as(
            f"could not create {self.workdir} in {self.describe()}", SandboxStartError
        ):
            await sandbox.files.make_dir(self.workdir, request_timeout=self.request_timeout)

    def _start_error(self, e2b: Any, exc: Exception) -> SandboxStartError:
        if isinstance(exc, e2b.AuthenticationException):
            return SandboxStartError(
                f"E2B rejected the API key ({exc}); set E2B_API_KEY on the host (or pass api_key=)"
            )
        return SandboxStartError(
            f"could not start an E2B sandbox from template {self.template or 'base'!r}: "
            f"{type(exc).__name__}: {exc}. Check the template, your E2B plan's limits and the API key"
        )

    def require(self) -> Any:
        if self.sandbox is None:
            raise SandboxError("the E2B sandbox was not started; call start() first")
        return self.sandbox

    async def put_file(self, path: str, data: bytes) -> None:
        sandbox = self.require()
        with lifecycle.reported_as(f"could not write {path} into {self.describe()}"):
            await sandbox.files.write(path, data, request_timeout=self.request_timeout)

    async def open_stream(self, argv: list[str]) -> E2BCommandStream:
        group = self.runtimes.next()
        stream = E2BCommandStream(self, group)
        # The command API takes one shell line; the shell splits it back into the relay's argv.
        command = shlex.join(lifecycle.relayed(lifecycle.OUTPUT_RELAY, self.python, group.command(argv)))
        with lifecycle.reported_as(f"could not start the runtime in {self.describe()}"):
            await stream.launch(command)
        return stream

    async def run_quietly(self, script: str) -> None:
        """Run a shell line in the sandbox and wait for it; quiet if it fails or the sandbox is gone."""
        if (sandbox := self.sandbox) is not None:
            await lifecycle.quietly(
                lambda: sandbox.commands.run(
                    script, timeout=_COMMAND_TIMEOUT, request_timeout=_COMMAND_TIMEOUT
                ),
                _COMMAND_TIMEOUT + 5,
            )

    async def close(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            # Forgotten by the exit registry only once killed: a close() cancelled mid-way leaves the
            # sandbox to the exit hook.
            e2b = import_e2b()
            await _live.end(
                self.sandbox_id, e2b.AsyncSandbox.kill(self.sandbox_id, **self.api_params()), _KILL_TIMEOUT
            )
        _live.release_signals()  # here, on the loop's thread, like watch_signals
