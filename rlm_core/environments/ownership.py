"""Who owns a sandbox, for ``rlm cleanup``: this process's identity, and whether an owner is gone.

Every sandbox plugin marks its sandboxes with the owner's host, pid and a run id (as labels, tags or
names, whatever its service offers) and uses ``is_orphan`` to decide what a killed process left.
"""

from __future__ import annotations

import os
import socket
import uuid

import attrs


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
