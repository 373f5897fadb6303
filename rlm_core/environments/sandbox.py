"""The host side of every isolated environment: speaks the runtime protocol over any Transport.

It uploads the runtime script, serves the sandbox's sub-calls through the engine's ``host``
callable, enforces per-cell deadlines, restarts a crashed or stuck sandbox, and moves large
contexts as files. A sandbox plugin only writes a :class:`~rlm_core.environments.transport.Transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlm_core.environments import runtime as repl_runtime
from rlm_core.environments.base import ExecResult, HostCall
from rlm_core.environments.connection import Connection, SandboxDiedError
from rlm_core.environments.context_files import ContextFile
from rlm_core.environments.runtime import DEFAULT_MAX_OUTPUT_CHARS, HOST_FUNCTIONS, PROTOCOL_VERSION
from rlm_core.environments.transport import Transport
from rlm_core.errors import ConfigurationError, SandboxError, did_you_mean

logger = logging.getLogger("rlm_core.sandbox")

DEFAULT_CELL_TIMEOUT = 300.0
RUNTIME_FILENAME = "rlm_runtime.py"
# Contexts at least this large (in characters or JSON characters) travel as a file, not a message.
DEFAULT_INLINE_CONTEXT_CHARS = 1 << 20

__all__ = ["DEFAULT_CELL_TIMEOUT", "RUNTIME_FILENAME", "SandboxDiedError", "SandboxEnvironment"]


class SandboxEnvironment:
    """An isolated REPL: the runtime script runs inside ``transport``'s sandbox, spoken to over a stream.

    ``timeout`` is the default per-cell limit in seconds (None: none). A cell that does not stop
    within ``kill_grace`` seconds after its limit (blocked in C code, a long sleep) gets the runtime
    process killed and restarted; so does a runtime that dies. Either way the model is told that its
    variables are gone; contexts and histories are loaded again. ``start_timeout`` bounds how long
    the runtime may take to say it is ready.
    """

    name = "sandbox"

    @classmethod
    def compose(
        cls,
        name: str,
        transport_factory: Callable[..., Transport],
        environment_kwargs: dict[str, Any],
        **setting_defaults: Any,
    ) -> SandboxEnvironment:
        """The environment ``name``: ``SandboxEnvironment(transport_factory(...), **settings)``.

        ``environment_kwargs`` are split by signature between this class's settings (``timeout``,
        ``max_output_chars``, ``kill_grace``, ``start_timeout``, ...) and the transport's; a name
        neither takes is a ``ConfigurationError`` listing what is accepted, with a suggestion.
        ``setting_defaults`` overrides this class's defaults for this kind of sandbox.
        """
        settings_names = [n for n in inspect.signature(cls).parameters if n != "transport"]
        transport_names = [
            n
            for n, p in inspect.signature(transport_factory).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        accepted = [*transport_names, *settings_names]
        unknown = sorted(set(environment_kwargs) - set(accepted))
        if unknown:
            guesses = {u: did_you_mean(u, accepted, cutoff=0.6) for u in unknown}
            hints = "; ".join(f"{u!r}:{guess}" for u, guess in guesses.items() if guess)
            raise ConfigurationError(
                f"{name} environment got unknown environment_kwargs {unknown}"
                + (f" ({hints})" if hints else "")
                + f"; it takes {', '.join(accepted)}"
            )
        settings = {**setting_defaults}
        settings.update({k: v for k, v in environment_kwargs.items() if k in settings_names})
        transport_kwargs = {k: v for k, v in environment_kwargs.items() if k not in settings_names}
        environment = cls(transport_factory(**transport_kwargs), **settings)
        environment.name = name
        return environment

    def __init__(
        self,
        transport: Transport,
        *,
        timeout: float | None = DEFAULT_CELL_TIMEOUT,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        kill_grace: float = 5.0,
        start_timeout: float = 60.0,
        inline_context_chars: int = DEFAULT_INLINE_CONTEXT_CHARS,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        if kill_grace <= 0 or start_timeout <= 0:
            raise ConfigurationError(
                "kill_grace and start_timeout must be positive seconds, "
                f"got {kill_grace!r} and {start_timeout!r}"
            )
        if max_output_chars <= 0:
            raise ConfigurationError(f"max_output_chars must be a positive int, got {max_output_chars!r}")
        self.transport = transport
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self.kill_grace = kill_grace
        self.start_timeout = start_timeout
        self.inline_context_chars = inline_context_chars
        self._host: HostCall | None = None
        self._host_tools: dict[str, Callable[..., Any]] = {}
        self._tool_values: dict[str, Any] = {}
        # References (never copies) to what was loaded, so a restarted sandbox gets them again.
        self._contexts: dict[int, Any] = {}
        self._context_order: list[int] = []
        self._histories: dict[int, list[dict[str, str]]] = {}
        self._uploaded: dict[int, tuple[dict[str, Any], int]] = {}  # index -> (context message, bytes)
        self._runtime_uploaded = False
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self.restarts = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: HostCall, tools: dict[str, Any]) -> None:
        if self._started:
            raise SandboxError(f"{self.transport.describe()} was already started; make a new environment")
        self._host = host
        for name, value in tools.items():
            problem = repl_runtime.reserved_name_problem(name)
            if problem:
                raise ConfigurationError(problem)
            if callable(value):
                self._host_tools[name] = value
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"custom tool {name!r} is a {type(value).__name__} value that cannot be sent into the "
                    f"sandbox ({exc}); isolated environments take callables (they run on the host) or JSON "
                    "values (str, int, float, bool, None, list, dict)"
                ) from exc
            self._tool_values[name] = value
        self._started = True
        try:
            await self.transport.start()
            await self._boot()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.alive:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.send({"type": "shutdown"}), timeout=1.0)
            await conn.close()
        with contextlib.suppress(Exception):
            await self.transport.close()

    async def __aenter__(self) -> SandboxEnvironment:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError(f"{self.transport.describe()} is closed; make a new environment")
        if not self._started:
            raise SandboxError(
                "the sandbox environment was not started; the engine calls start(host, tools) first"
            )

    # -- booting and restarting ----------------------------------------------------------------

    @property
    def runtime_path(self) -> str:
        return posixpath.join(self.transport.workdir, RUNTIME_FILENAME)

    async def _boot(self) -> None:
        """Start the runtime process in the (running) sandbox and give it tools, contexts, histories."""
        if not self._runtime_uploaded:
            await self.transport.put_file(self.runtime_path, Path(repl_runtime.__file__).read_bytes())
            self._runtime_uploaded = True
        argv = [self.transport.python, self.runtime_path, "--max-output-chars", str(self.max_output_chars)]
        stream = await self.transport.open_stream(argv)
        conn = Connection(stream, self._serve_call)
        try:
            try:
                hello = await asyncio.wait_for(asyncio.shield(conn.ready), timeout=self.start_timeout)
            except TimeoutError:
                raise SandboxError(
                    f"the runtime in {self.transport.describe()} did not report ready within "
                    f"{self.start_timeout:g}s; check that {self.transport.python!r} runs there "
                    "(Python >= 3.8), or raise start_timeout"
                ) from None
            except SandboxDiedError as exc:
                await conn.close()  # waits for the process and its stderr, so the message says why
                raise SandboxError(
                    f"the runtime in {self.transport.describe()} exited before it was ready ({exc}; "
                    f"{stream.diagnostics() or 'no diagnostics'}); check that {self.transport.python!r} "
                    "is Python >= 3.8 in that sandbox"
                ) from None
            if hello.get("protocol") != PROTOCOL_VERSION:
                raise SandboxError(
                    f"the sandbox runtime speaks protocol {hello.get('protocol')!r}, this host speaks "
                    f"{PROTOCOL_VERSION}; the runtime script is uploaded by the host, so this means a "
                    "stale or foreign script runs there"
                )
            await self._ack(
                conn,
                {
                    "type": "init",
                    "host_tools": sorted(self._host_tools),
                    "variables": self._tool_values,
                    "max_output_chars": self.max_output_chars,
                },
                "setting up the REPL",
            )
            for index in self._context_order:
                await self._send_context(conn, index, self._contexts[index])
            for index, messages in sorted(self._histories.items()):
                await self._ack(
                    conn, {"type": "history", "index": index, "messages": messages}, "loading history"
                )
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _restart(self) -> None:
        """Kill the runtime process and start a fresh one; provision a new sandbox if the old one is gone."""
        self.restarts += 1
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        try:
            await self._boot()
            return
        except SandboxError as exc:
            logger.info("restarting the runtime in place failed (%s); provisioning a new sandbox", exc)
        except Exception as exc:
            logger.info("restarting the runtime in place failed (%r); provisioning a new sandbox", exc)
        with contextlib.suppress(Exception):
            await self.transport.close()
        self._runtime_uploaded = False
        self._uploaded.clear()
        try:
            await self.transport.start()
            await self._boot()
        except Exception as exc:
            raise SandboxError(
                f"the sandbox died and could not be started again: {exc}. The run cannot continue "
                "in this environment; check the sandbox engine, then start a new run"
            ) from exc

    async def _ack(
        self, conn: Connection, message: dict[str, Any], what: str, timeout: float | None = None
    ) -> None:
        try:
            reply = await asyncio.wait_for(conn.request(message), timeout=timeout or self.start_timeout)
        except TimeoutError:
            raise SandboxError(f"the sandbox runtime did not answer while {what}") from None
        if reply.get("error"):
            raise SandboxError(f"the sandbox runtime failed while {what}: {reply['error']}")

    # -- contexts and history ------------------------------------------------------------------

    async def load_context(self, index: int, value: Any) -> None:
        self._check_open()
        async with self._lock:
            conn = await self._live_connection()
            self._uploaded.pop(index, None)  # a new value for this index: its old file is stale
            await self._send_context(conn, index, value)
            if index not in self._contexts:
                self._context_order.append(index)
            else:  # loading an index again moves it to the end, so `context` stays the newest
                self._context_order.remove(index)
                self._context_order.append(index)
            self._contexts[index] = value

    async def _send_context(self, conn: Connection, index: int, value: Any) -> None:
        uploaded = self._uploaded.get(index)
        if uploaded is None:
            contents = ContextFile(value)
            if not contents.at_least_chars(self.inline_context_chars):
                await self._ack(
                    conn, {"type": "context", "index": index, "value": value}, "loading the context"
                )
                return
            suffix = "txt" if contents.is_text else "jsonl"
            path = posixpath.join(self.transport.workdir, f"context_{index}.{suffix}")
            await self._upload(path, contents)
            message = {
                "path": path,
                "format": contents.fmt,
                **(contents.text_shape() if contents.is_text else {}),
            }
            uploaded = self._uploaded[index] = (message, contents.bytes_produced)
        message, size = uploaded
        # Reading a large file takes time in the sandbox: allow for a slow 20 MB/s on top.
        await self._ack(
            conn,
            {"type": "context", "index": index, **message},
            "loading the context file",
            timeout=self.start_timeout + size / (20 << 20),
        )

    async def _upload(self, path: str, contents: ContextFile) -> None:
        """Stream the file to a transport that takes chunks; join it only for one that does not."""
        put_chunks = getattr(self.transport, "put_file_chunks", None)
        if callable(put_chunks):
            await put_chunks(path, contents, size=contents.size)
            return
        data = await asyncio.to_thread(b"".join, contents)
        await self.transport.put_file(path, data)

    async def load_history(self, index: int, messages: list[dict[str, str]]) -> None:
        self._check_open()
        async with self._lock:
            conn = await self._live_connection()
            await self._ack(
                conn, {"type": "history", "index": index, "messages": messages}, "loading history"
            )
            self._histories[index] = messages

    async def _live_connection(self) -> Connection:
        if self._conn is None or not self._conn.alive:
            await self._restart()
        assert self._conn is not None
        return self._conn

    # -- execution -----------------------------------------------------------------------------

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        self._check_open()
        async with self._lock:
            lost_note = ""
            if self._conn is None or not self._conn.alive:
                reason = self._conn.dead_reason if self._conn is not None else "it was not running"
                await self._restart()
                lost_note = (
                    f"[the sandbox had stopped ({reason}) and was restarted before this cell: variables "
                    "from earlier cells are gone; context and history were loaded again]"
                )
            conn = self._conn
            assert conn is not None
            limit = timeout if timeout is not None else self.timeout
            deadline = None if limit is None else limit + self.kill_grace
            try:
                raw = await asyncio.wait_for(
                    conn.request({"type": "exec", "code": code, "timeout": limit}), timeout=deadline
                )
            except TimeoutError:
                await self._restart()
                return ExecResult(
                    error=(
                        f"TimeoutError: the cell ran past its {limit:g}s limit and did not stop (blocked "
                        "outside Python, e.g. a long sleep or read), so the sandbox process was killed and "
                        "restarted. Variables from earlier cells are gone; context and history were loaded "
                        "again. Recompute what you need in smaller steps."
                    ),
                    timed_out=True,
                    state_lost=True,
                )
            except SandboxDiedError:
                await conn.close()  # reaps the process, so the diagnostics know how it ended
                diagnostics = conn.stream.diagnostics()
                await self._restart()
                return ExecResult(
                    error=(
                        "SandboxCrash: the sandbox process died while running this cell"
                        f"{' (' + diagnostics + ')' if diagnostics else ''}. Likely causes: too much memory "
                        "(the sandbox has a memory limit), or code that killed the interpreter. It was "
                        "restarted: variables from earlier cells are gone; context and history were loaded "
                        "again. Work on smaller pieces."
                    ),
                    state_lost=True,
                )
            result = ExecResult.from_runtime(raw)
            if result.timed_out:
                for task in list(conn.call_tasks):  # the interrupted cell no longer waits for them
                    task.cancel()
                result.error = f"TimeoutError: the cell ran past its {limit:g}s limit and was interrupted"
            if lost_note:
                result.state_lost = True
                result.stderr = lost_note + ("\n" + result.stderr if result.stderr else "")
            return result

    # -- sub-calls from the sandbox ------------------------------------------------------------

    async def _serve_call(self, function: str, args: dict[str, Any]) -> Any:
        tool = self._host_tools.get(function)
        if tool is not None:
            # Host-side tools run here, like in the local environment; a blocking one gets a thread.
            positional = list(args.get("args") or [])
            keywords = dict(args.get("kwargs") or {})
            if inspect.iscoroutinefunction(tool):
                return await tool(*positional, **keywords)
            result = await asyncio.to_thread(tool, *positional, **keywords)
            if inspect.isawaitable(result):
                result = await result
            return result
        if function not in HOST_FUNCTIONS:
            raise SandboxError(f"the sandbox asked for unknown host function {function!r}")
        assert self._host is not None
        return await self._host(function, args)
