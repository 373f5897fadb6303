"""Who owns a sandbox: this process's identity, the tags a service stores it as, and whether an owner is gone.

Every sandbox plugin records the owner's host, pid and run id on each sandbox it starts (as labels,
tags or names, whatever its service offers) and reads them back for ``rlm cleanup``.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterable, Mapping

import attrs

DEFAULT_MARK = "rlm-core"


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


def new_run_id() -> str:
    """A short random id that names one run's sandboxes."""
    return uuid.uuid4().hex[:12]


def is_orphan(owner_host: str, owner_pid: str | int | None) -> bool:
    """True when the owner ran on this machine and is gone. Owners on other hosts cannot be checked,
    so they never count (``rlm cleanup --all`` removes those too). A reused pid can hide a dead owner."""
    return owner_host == socket.gethostname() and not pid_alive(parse_pid(owner_pid))


@attrs.define(frozen=True)
class Owner:
    """The process that started a sandbox."""

    host: str
    pid: int
    run_id: str

    @classmethod
    def current(cls, run_id: str | None = None) -> Owner:
        return cls(socket.gethostname(), os.getpid(), run_id or new_run_id())

    def is_gone(self) -> bool:
        """Whether this owner ran on this machine and has ended (see :func:`is_orphan`)."""
        return is_orphan(self.host, self.pid)


@attrs.define(frozen=True)
class OwnerTags:
    """An owner as keyed tags (Docker labels, Modal tags): ``{mark: "1", mark+sep+"run-id": ...,
    mark+sep+"owner-pid": ..., mark+sep+"owner-host": ...}``. The mark alone selects every rlm-core
    sandbox when listing; the other keys say whose it is."""

    mark: str = DEFAULT_MARK
    separator: str = "-"

    def key(self, field: str) -> str:
        """The tag that holds ``field``: ``"run-id"``, ``"owner-pid"`` or ``"owner-host"``."""
        return f"{self.mark}{self.separator}{field}"

    def selector(self) -> dict[str, str]:
        """The tag every rlm-core sandbox carries: what a listing filters on."""
        return {self.mark: "1"}

    def tags(self, owner: Owner) -> dict[str, str]:
        recorded = {"run-id": owner.run_id, "owner-pid": str(owner.pid), "owner-host": owner.host}
        return {**self.selector(), **{self.key(field): value for field, value in recorded.items()}}

    def read(self, tags: Mapping[str, str] | None) -> Owner | None:
        """The owner recorded in ``tags``; None when they lack the mark (not an rlm-core sandbox)."""
        tags = tags or {}
        if tags.get(self.mark) != "1":
            return None
        pid = parse_pid(tags.get(self.key("owner-pid")))
        return Owner(tags.get(self.key("owner-host"), ""), pid, tags.get(self.key("run-id"), ""))


def label_safe(text: str) -> str:
    """``text`` as a label value of lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "host"


@attrs.define(frozen=True)
class OwnerLabels:
    """An owner as plain string labels (Prime): the mark, then ``<mark>-run-<id>``, ``<mark>-pid-<pid>``
    and ``<mark>-host-<host>``. Such labels allow few characters, so the host is stored label-safe and
    read back as this machine's name when it is this machine's."""

    mark: str = DEFAULT_MARK

    def prefixes(self) -> dict[str, str]:
        return {"run_id": f"{self.mark}-run-", "pid": f"{self.mark}-pid-", "host": f"{self.mark}-host-"}

    def labels(self, owner: Owner) -> list[str]:
        prefix = self.prefixes()
        return [
            self.mark,
            prefix["run_id"] + owner.run_id,
            prefix["pid"] + str(owner.pid),
            prefix["host"] + label_safe(owner.host),
        ]

    def read(self, labels: Iterable[str] | None) -> Owner | None:
        """The owner recorded in ``labels``; None when they lack the mark (not an rlm-core sandbox)."""
        labels = list(labels or [])
        if self.mark not in labels:
            return None
        found = dict.fromkeys(self.prefixes(), "")
        for label in labels:
            for field, prefix in self.prefixes().items():
                if label.startswith(prefix):
                    found[field] = label[len(prefix) :]
        here = socket.gethostname()
        host = here if found["host"] == label_safe(here) else found["host"]
        return Owner(host, parse_pid(found["pid"]), found["run_id"])
