"""Who holds a batch output: the identity of a process (pid, host, start time) as a batch job writes
it into its lock file, and whether a recorded holder on this host is still that same live process."""

from __future__ import annotations

import json
import os
import secrets
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from rlm_core.environments.ownership import pid_alive

_PROC = Path("/proc")


def _boot_id() -> str | None:
    """This boot of the machine (Linux); a holder recorded in another boot is gone."""
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time in clock ticks since boot)`` of a process, from /proc; None without it."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')': split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)
    except (IndexError, ValueError):
        return None


@attrs.define(frozen=True)
class Holder:
    """A process that holds (or held) a batch output. ``proc_start`` (Linux) tells the holder from a
    later process that was given the same pid; ``token`` tells two jobs of one process apart."""

    pid: int
    host: str
    started: str  # wall-clock time, ISO 8601, for people reading the message
    proc_start: int | None = None
    boot_id: str | None = None
    token: str = ""

    @classmethod
    def current(cls) -> Holder:
        stat = _proc_stat(os.getpid())
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=datetime.now().astimezone().isoformat(timespec="seconds"),
            proc_start=stat[1] if stat else None,
            boot_id=_boot_id(),
            token=secrets.token_hex(8),
        )

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder written in a lock file; None for an empty or half-written one."""
        try:
            data: Any = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                started=str(data.get("started", "?")),
                proc_start=int(data["proc_start"]) if data.get("proc_start") is not None else None,
                boot_id=str(data["boot_id"]) if data.get("boot_id") else None,
                token=str(data.get("token", "")),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self)) + "\n"

    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def running(self) -> bool | None:
        """On this host: True when the holder is alive (and, where /proc tells, the same process),
        False when it is gone (exited, a zombie, its pid reused, or the machine rebooted since), None
        when its pid exists but nothing says whether it is still the holder."""
        if os.name != "posix":
            return None  # os.kill(pid, 0) is no liveness probe there
        booted = _boot_id()
        if self.boot_id and booted and self.boot_id != booted:
            return False
        if not pid_alive(self.pid):
            return False
        stat = _proc_stat(self.pid)
        if stat is None or self.proc_start is None:
            return None
        state, proc_start = stat
        return state != "Z" and proc_start == self.proc_start

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"
