"""``rlm cleanup`` for bwrap sandboxes: the workdirs (and any processes) a killed host process left.

A workdir is named ``rlm-bwrap-<owner pid>-<random>``; its processes die with their owner
(``--die-with-parent``), so what a killed owner leaves is its directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any

WORKDIR_PREFIX = "rlm-bwrap-"
_WORKDIR_NAME = re.compile(rf"{WORKDIR_PREFIX}(\d+)-\w+")


def workdir_prefix() -> str:
    return f"{WORKDIR_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _processes_using(workdir: str) -> list[int]:
    """Host pids whose command line names ``workdir``: the bwrap processes of a live sandbox."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and workdir.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # ended while we looked
    return found


def cleanup_workdirs(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for path in sorted(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*")):
        match = _WORKDIR_NAME.fullmatch(path.name)
        if match is None or not path.is_dir():
            continue
        owner = int(match.group(1))
        if _alive(owner) and not include_live:
            continue
        entry = {"kind": "bwrap", "id": str(path), "owner_pid": owner, "owner_host": socket.gethostname()}
        if not dry_run:
            for pid in _processes_using(str(path)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # killing bwrap ends its whole pid namespace
            shutil.rmtree(path, ignore_errors=True)
        entry["removed"] = not dry_run and not path.exists()
        if not dry_run and path.exists():
            entry["error"] = f"could not remove {path}; remove it by hand (rm -rf)"
        entries.append(entry)
    return entries
