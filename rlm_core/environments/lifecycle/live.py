"""The sandboxes this process holds: ended at interpreter exit (and, where asked, on SIGINT/SIGTERM),
and ended as soon as they exist when the start that was creating them is cancelled."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, Generic, TypeVar

T = TypeVar("T")
logger = logging.getLogger("rlm_core.sandbox")

# How long a cancelled start waits for a sandbox the service is still creating, to end it.
LATE_CREATE_TIMEOUT = 120.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class LiveSandboxes(Generic[T]):
    """The sandboxes this process holds, ended at interpreter exit (also after Ctrl-C), so a run
    that never reached its own ``close()`` leaves nothing behind. ``end`` ends one sandbox with a
    blocking call (no event loop runs at exit); a failure is logged and the others still end.
    ``rlm cleanup`` covers what a killed process could not end.

    ``add(key, sandbox)`` when a sandbox exists (``sandbox`` is whatever ``end`` needs), ``discard(key)``
    once it is ended. With ``on_signals=True``, :meth:`watch_signals` also ends them on SIGINT and
    SIGTERM before those do what they did before (a SIGTERM runs no exit hooks).
    """

    def __init__(self, service: str, end: Callable[[T], None], *, on_signals: bool = False) -> None:
        self.service = service
        self.on_signals = on_signals
        self._end = end
        self._held: dict[str, T] = {}
        self._lock = threading.Lock()
        self._at_exit = False

    def add(self, key: str, sandbox: T) -> None:
        with self._lock:
            self._held[key] = sandbox
            if not self._at_exit:
                atexit.register(self.end_all)
                self._at_exit = True

    def discard(self, key: str) -> None:
        with self._lock:
            self._held.pop(key, None)

    def keys(self) -> list[str]:
        """The keys of the sandboxes held now."""
        with self._lock:
            return list(self._held)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._held

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def end_all(self) -> None:
        with self._lock:
            held = list(self._held.items())
            self._held.clear()
        for key, sandbox in held:
            try:
                self._end(sandbox)
            except Exception as exc:
                logger.warning("could not end %s sandbox %s at exit: %s", self.service, key, exc)

    async def end(self, key: str, ending: Awaitable[Any], timeout: float) -> None:
        """Await ``ending`` (the service's own call that ends sandbox ``key``) within ``timeout``, then
        forget the sandbox. A failure is logged, not raised: the sandbox is gone already, or the
        service is unreachable and its own time limit ends it. A cancelled ``end`` forgets nothing,
        so the exit hook still ends the sandbox."""
        try:
            await asyncio.wait_for(ending, timeout)
            logger.info("%s sandbox %s ended", self.service, key)
        except Exception as exc:
            logger.info("ending %s sandbox %s: %s", self.service, key, exc)
        self.discard(key)

    def watch_signals(self) -> None:
        """End what this registry holds on SIGINT/SIGTERM too. Call it from the thread that runs the
        event loop (signal handlers can only be set from the main thread; elsewhere only exit counts)."""
        if self.on_signals:
            _signal_guard.watch(self)

    def release_signals(self) -> None:
        """Once no watched registry holds a sandbox, give SIGINT/SIGTERM back to whoever had them
        (an app's own Ctrl-C handling must not stay routed through a closed sandbox)."""
        if self.on_signals:
            _signal_guard.release_when_idle()


def still_current(handler: Any) -> Any:
    """``handler``, unless it is the Ctrl-C handler of an ``asyncio.Runner`` that has finished since
    (asyncio.run installs one per run and removes it only if it is still in place when the run
    ends, which it is not while a sandbox is held): then the interpreter's default."""
    owner = getattr(getattr(handler, "func", None), "__self__", None)
    if isinstance(owner, asyncio.Runner):
        loop = getattr(owner, "_loop", None)
        if loop is None or loop.is_closed():
            return signal.default_int_handler
    return handler


class _SignalGuard:
    """One SIGINT/SIGTERM handler for every registry that asked for it: it ends their sandboxes,
    then hands the signal to the handler that was there before."""

    def __init__(self) -> None:
        self.watched: list[LiveSandboxes[Any]] = []
        self.previous: dict[int, Any] = {}

    def watch(self, registry: LiveSandboxes[Any]) -> None:
        if registry not in self.watched:
            self.watched.append(registry)
        if self.previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                self.previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self.on_signal)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        for registry in self.watched:
            registry.end_all()
        previous = still_current(self.previous.get(signum))
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL or previous is None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        # SIG_IGN: the process chose to ignore it; the sandboxes are ended, nothing else to do.

    def release_when_idle(self) -> None:
        if any(len(registry) for registry in self.watched):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in list(self.previous.items()):
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(signum) == self.on_signal:
                    signal.signal(signum, still_current(previous) if previous is not None else signal.SIG_DFL)
            del self.previous[signum]


_signal_guard = _SignalGuard()


async def created_or_ended(
    creating: Awaitable[T], end: Callable[[T], Awaitable[Any]], timeout: float = LATE_CREATE_TIMEOUT
) -> T:
    """The sandbox ``creating`` yields. If the caller is cancelled (Ctrl-C) while the service is still
    creating it, the sandbox may exist already: wait for it (up to ``timeout``), end it with ``end``,
    then let the cancellation go on. Errors of the creation itself propagate unchanged."""
    future = asyncio.ensure_future(creating)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            sandbox = await asyncio.wait_for(future, timeout)
            await asyncio.wait_for(end(sandbox), timeout)
        raise
