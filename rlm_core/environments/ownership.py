"""Who owns a sandbox, for ``rlm cleanup``: this process's identity, and whether an owner is gone.

Every sandbox plugin marks its sandboxes with the owner's host, pid and a run id (as labels, tags or
names, whatever its service offers) and uses ``is_orphan`` to decide what a killed process left;
``LiveSandboxes`` ends at interpreter exit what the process still holds.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

T = TypeVar("T")
_logger = logging.getLogger("rlm_core")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def parse_pid(text: str | int | None) -> int:
    """A pid read back from a label; 0 when it is missing or not a number."""
    try:
        return int(text or 0)
    except (TypeError, ValueError):
        return 0


@attrs.define(frozen=True)
class Owner:
    """The process that started a sandbox."""

    host: str
    pid: int
    run_id: str

    @classmethod
    def current(cls, run_id: str | None = None) -> Owner:
        return cls(socket.gethostname(), os.getpid(), run_id or uuid.uuid4().hex[:12])


def is_orphan(owner_host: str, owner_pid: str | int | None) -> bool:
    """True when the owner ran on this machine and is gone. Owners on other hosts cannot be checked,
    so they never count (``rlm cleanup --all`` removes those too). A reused pid can hide a dead owner."""
    return owner_host == socket.gethostname() and not pid_alive(parse_pid(owner_pid))


class LiveSandboxes(Generic[T]):
    """The sandboxes this process holds, ended at interpreter exit (also after Ctrl-C), so a run
    that never reached its own ``close()`` leaves nothing behind. ``end`` ends one sandbox with a
    blocking call (no event loop runs at exit); a failure is logged and the others still end.
    ``rlm cleanup`` covers what a killed process could not end."""

    def __init__(self, service: str, end: Callable[[T], None]) -> None:
        self.service = service
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

    def end_all(self) -> None:
        with self._lock:
            held = list(self._held.items())
            self._held.clear()
        for key, sandbox in held:
            try:
                self._end(sandbox)
            except Exception as exc:
                _logger.warning("could not end %s sandbox %s at exit: %s", self.service, key, exc)
