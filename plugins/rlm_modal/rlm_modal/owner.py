"""Who owns a sandbox: the tags every rlm-modal sandbox carries, so ``rlm cleanup`` can find orphans."""

from __future__ import annotations

import os
import socket
import uuid

from rlm_core.environments.ownership import is_orphan, parse_pid, pid_alive

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


# Whether an owner is gone is decided once, in the core, for every sandbox plugin.
__all__ = [
    "TAG_MARK",
    "TAG_OWNER_HOST",
    "TAG_OWNER_PID",
    "TAG_RUN_ID",
    "is_orphan",
    "new_run_id",
    "owner_tags",
    "parse_pid",
    "pid_alive",
]
