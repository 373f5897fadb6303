"""Who owns a sandbox: the labels every rlm-prime sandbox carries, so ``rlm cleanup`` can find orphans.

Prime labels are plain strings, so each one is a prefix plus a value.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterable

from rlm_core.environments.ownership import parse_pid, pid_alive

LABEL_MARK = "rlm-core"
PREFIX_RUN_ID = "rlm-core-run-"
PREFIX_OWNER_PID = "rlm-core-pid-"
PREFIX_OWNER_HOST = "rlm-core-host-"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def host_label() -> str:
    """This machine's name as a label value (lower-case letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-") or "host"


def owner_labels(run_id: str) -> list[str]:
    return [
        LABEL_MARK,
        PREFIX_RUN_ID + run_id,
        PREFIX_OWNER_PID + str(os.getpid()),
        PREFIX_OWNER_HOST + host_label(),
    ]


def read_owner(labels: Iterable[str]) -> dict[str, str]:
    """``run_id``, ``owner_pid`` and ``owner_host`` from a sandbox's labels ("" when absent)."""
    found = {"run_id": "", "owner_pid": "", "owner_host": ""}
    for label in labels:
        for key, prefix in (
            ("run_id", PREFIX_RUN_ID),
            ("owner_pid", PREFIX_OWNER_PID),
            ("owner_host", PREFIX_OWNER_HOST),
        ):
            if label.startswith(prefix):
                found[key] = label[len(prefix) :]
    return found


def is_orphan(owner_host: str, owner_pid: str) -> bool:
    """True when the owner ran on this machine and is gone (the core decides, for every plugin)."""
    return owner_host == host_label() and not pid_alive(parse_pid(owner_pid))
