"""The ``local`` environment: runs code in this process, in a worker thread.

Fast and shares the host's packages, but it is not a security boundary: code can read the host's
files and environment. Use ``subprocess`` or ``docker`` for untrusted code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

from rlm_core.environments.base import ExecResult, HostCall
from rlm_core.environments.runtime import (
    DEFAULT_MAX_OUTPUT_CHARS,
    ReplRuntime,
    raise_in_thread,
    reserved_name_problem,
)
from rlm_core.errors import ConfigurationError, EnvironmentError_
from rlm_core.redact import safe_repr

DEFAULT_CELL_TIMEOUT = 300.0
# After the timeout fires, how long the cell gets to unwind before we give up on its thread.
_UNWIND_GRACE = 2.0


class LocalEnvironment:
    """An in-process REPL. ``timeout`` is the default per-cell limit in seconds (None: no limit)."""

    name = "local"

    def __init__(
        self,
        timeout: float | None = DEFAULT_CELL_TIMEOUT,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigurationError(
                f"local environment got unknown environment_kwargs {sorted(unknown)}; "
                "it takes timeout and max_output_chars"
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ConfigurationError(
                f"timeout must be a positive number of seconds or None, got {safe_repr(timeout)}"
            )
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self._runtime: ReplRuntime | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._host: HostCall | None = None
        # The worker thread of a cell that ran past its limit while blocked outside Python. The
        # thread itself is watched, not a future: a future is cancelled by the wait that gave up.
        self._stuck: threading.Thread | None = None

    async def start(self, host: HostCall, tools: dict[str, Any]) -> None:
        self._loop = asyncio.get_running_loop()
        self._host = host
        for name in tools:
            problem = reserved_name_problem(name)
            if problem:
                raise ConfigurationError(problem)
        self._runtime = ReplRuntime(
            self._call_host, tools=dict(tools), max_output_chars=self.max_output_chars
        )

    def _call_host(self, function: str, args: dict[str, Any]) -> Any:
        """Runs in the cell's worker thread: hand the call to the event loop and wait for it."""
        assert self._loop is not None and self._host is not None
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            self._host(function, args), self._loop
        )
        try:
            # Wait in short slices: a blocking wait cannot be interrupted by the cell timeout.
            while True:
                try:
                    return future.result(timeout=0.05)
                except concurrent.futures.TimeoutError:
                    continue
        except BaseException:
            future.cancel()  # a timed-out cell must not leave its sub-call running
            raise

    @property
    def runtime(self) -> ReplRuntime:
        if self._runtime is None:
            raise EnvironmentError_("the local environment was not started (or was closed)")
        return self._runtime

    async def load_context(self, index: int, value: Any) -> None:
        self.runtime.set_variable(f"context_{index}", value)
        self.runtime.set_variable("context", value)

    async def load_history(self, index: int, messages: list[dict[str, str]]) -> None:
        self.runtime.set_variable(f"history_{index}", messages)

    async def execute(self, code: str, timeout: float | None = None) -> ExecResult:
        if self._stuck is not None:
            if self._stuck.is_alive():
                return ExecResult(
                    error="an earlier cell ran past its time limit and is still blocked outside Python "
                    "(a long sleep or read), so this REPL cannot run code yet. Try again later, or use "
                    "the subprocess environment for code that may block."
                )
            self._stuck = None
        runtime = self.runtime
        limit = timeout if timeout is not None else self.timeout
        done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        thread_id: list[int] = []

        def work() -> None:
            thread_id.append(threading.get_ident())
            try:
                done.set_result(runtime.execute(code))
            except BaseException as exc:  # pragma: no cover - execute() catches what the cell raises
                if not done.done():
                    done.set_exception(exc)

        # A fresh daemon thread per cell: a runaway cell that ignores the timeout cannot block the
        # next cell or interpreter exit.
        worker = threading.Thread(target=work, name="rlm-local-cell", daemon=True)
        worker.start()
        wrapped = asyncio.wrap_future(done)
        try:
            raw = await asyncio.wait_for(asyncio.shield(wrapped), timeout=limit)
        except asyncio.CancelledError:
            # The run was cancelled (Ctrl-C, task.cancel()): stop the cell too, so it neither
            # outlives the run nor keeps making sub-calls; its pending ones are cancelled with it.
            if thread_id:
                raise_in_thread(thread_id[0])
            raise
        except TimeoutError:
            if thread_id:
                raise_in_thread(thread_id[0])
            try:
                raw = await asyncio.wait_for(asyncio.shield(wrapped), timeout=_UNWIND_GRACE)
            except TimeoutError:
                # Blocked in C code (a long sleep, a read): the exception lands when it returns.
                self._stuck = worker
                return ExecResult(
                    error=f"TimeoutError: the cell ran past its {limit:g}s limit and is blocked outside "
                    "Python; it will be interrupted when that call returns",
                    timed_out=True,
                )
            raw["timed_out"] = True
            raw["error"] = f"TimeoutError: the cell ran past its {limit:g}s limit and was interrupted"
        return ExecResult.from_runtime(raw)

    async def close(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            # The scaffold functions and any function a cell defined refer back to the namespace
            # (closures, __globals__): cycles that would hold every variable, however large, until
            # the next cyclic collection. Emptying the namespace frees them now.
            runtime.namespace.clear()
            runtime.protected.clear()
        self._host = None
        self._loop = None
