"""``rlm cleanup`` for bwrap sandboxes: the workdirs (and any processes) a killed host process left.

A workdir is named ``rlm-bwrap-<owner pid>-<random>``; its processes die with their owner
(``--die-with-parent``), so what a killed owner leaves is its directory. The core's cleanup loop
does the rest: which owners are gone, ``include_live``, ``dry_run``, one row per workdir.
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

from rlm_core.environments.lifecycle import Owner, run_cleanup
from rlm_core.errors import SandboxError

WORKDIR_PREFIX = "rlm-bwrap-"
_WORKDIR_NAME = re.compile(rf"{WORKDIR_PREFIX}(\d+)-\w+")


def workdir_prefix() -> str:
    return f"{WORKDIR_PREFIX}{os.getpid()}-"


def workdir_owner(path: str | Path) -> Owner | None:
    """Who made this workdir, from its name; None for anything that is not a bwrap workdir."""
    match = _WORKDIR_NAME.fullmatch(Path(path).name)
    if match is None or not Path(path).is_dir():
        return None
    return Owner(socket.gethostname(), int(match.group(1)), run_id="")


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


def end_workdir(workdir: str) -> None:
    """Stop a sandbox's processes and remove its workdir; raise when the directory stays."""
    for pid in _processes_using(workdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # killing bwrap ends its whole pid namespace
    shutil.rmtree(workdir, ignore_errors=True)
    if os.path.exists(workdir):
        raise SandboxError(f"could not remove {workdir}; remove it by hand (rm -rf)")


class BwrapWorkdirs:
    """The workdirs in the temporary directory, as the core's cleanup loop asks for them."""

    kind = "bwrap"

    def sandboxes(self) -> list[Path]:
        return sorted(Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"))

    def identify(self, path: Path) -> str:
        return str(path)

    def owner(self, path: Path) -> Owner | None:
        return workdir_owner(path)

    def end(self, path: Path) -> None:
        end_workdir(str(path))


def cleanup_workdirs(include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
    return run_cleanup(BwrapWorkdirs(), include_live=include_live, dry_run=dry_run)
