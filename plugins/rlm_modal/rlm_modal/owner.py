"""Who owns a sandbox: the tags every rlm-modal sandbox carries, so ``rlm cleanup`` can find orphans."""

from __future__ import annotations

import os
import socket
import uuid

TAG_MARK = "rlm-core"
TAG_RUN_ID = "rlm-core-run-id"
TAG_OWNER_PID = "rlm-core-owner-pid"
TAG_OWNER_HOST = "rlm-core-owner-host"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def owner_tags(run_id: str) -> dict[str, str]:
    """The tags of a sandbox this process starts now."""
    return {
        TAG_MARK: "1",
        TAG_RUN_ID: run_id,
        TAG_OWNER_PID: str(os.getpid()),
        TAG_OWNER_HOST: socket.gethostname(),
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def is_orphan(owner_host: str, owner_pid: int) -> bool:
    """True when the owner ran on this machine and is gone; owners on other hosts cannot be checked."""
    return owner_host == socket.gethostname() and (owner_pid <= 0 or not pid_alive(owner_pid))


def parse_pid(text: str | None) -> int:
    try:
        return int(text or "0")
    except ValueError:
        return 0
