"""Cheap reads of trajectory logs for the viewer: a run's summary from its first and last lines, and
byte-range pages of complete lines, so a 50 MB log is never read whole to list it or to start showing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs

from rlm_core.errors import RLMError
from rlm_core.records import SCHEMA_VERSION

LOG_SUFFIX = ".jsonl"
FIRST_LINE_LIMIT = 4 * 1024 * 1024  # a metadata line holds the system prompt, never megabytes
TAIL_WINDOWS = (64 * 1024, 1024 * 1024, 8 * 1024 * 1024)  # widened until the last lines are found
DEFAULT_PAGE_BYTES = 2 * 1024 * 1024
MAX_PAGE_BYTES = 16 * 1024 * 1024


class LogAccessError(RLMError):
    """A log file the viewer was asked for is not one it serves (outside its directory, or missing)."""


@attrs.define(frozen=True)
class Page:
    """Complete lines from ``offset`` to ``next_offset`` (bytes), and what follows them in the file.

    ``partial`` is the cut-off text after the last newline when the page reaches the end of the
    file: a line still being written, or one a killed writer left truncated.
    """

    offset: int
    next_offset: int
    size: int
    data: bytes
    partial: bytes = b""


class LogDirectory:
    """The logs the viewer serves: every ``*.jsonl`` in one directory, or one file."""

    def __init__(self, target: str | Path) -> None:
        target = Path(target).expanduser().resolve()
        if not target.exists():
            raise LogAccessError(
                f"{target} does not exist. Pass a log directory (RLMLogger(log_dir=...), "
                f"'rlm run --log-dir DIR') or one .jsonl log file."
            )
        self.single_file: Path | None = target if target.is_file() else None
        self.root = target.parent if target.is_file() else target

    def files(self) -> list[Path]:
        """The log files, newest first."""
        if self.single_file is not None:
            return [self.single_file]
        found = [p for p in self.root.iterdir() if p.suffix == LOG_SUFFIX and p.is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def resolve(self, name: str) -> Path:
        """The path of the log called ``name``; only files this directory lists are served."""
        for path in self.files():
            if path.name == name:
                return path
        raise LogAccessError(f"no log named {name!r} in {self.root}; pick one from the run list")


def read_page(path: Path, offset: int, max_bytes: int = DEFAULT_PAGE_BYTES) -> Page:
    """The complete lines starting at byte ``offset``: at least one line, however long, if there is one."""
    max_bytes = max(1024, min(max_bytes, MAX_PAGE_BYTES))
    size = path.stat().st_size
    offset = max(0, min(offset, size))
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(max_bytes)
        end = data.rfind(b"\n")
        # One line longer than a page: keep reading until it ends, so every page holds whole lines.
        while end < 0 and offset + len(data) < size:
            more = handle.read(max_bytes)
            if not more:
                break
            data += more
            end = data.rfind(b"\n")
    if end < 0:
        return Page(offset, offset, size, b"", data)
    complete = data[: end + 1]
    next_offset = offset + len(complete)
    reached_end = offset + len(data) >= size
    partial = data[end + 1 :] if reached_end else b""
    return Page(offset, next_offset, size, complete, partial)


def summarize(path: Path) -> dict[str, Any]:
    """What the run list shows about one log, from its first line and its last lines only."""
    stat = path.stat()
    summary: dict[str, Any] = {
        "file": path.name,
        "size": stat.st_size,
        "modified": stat.st_mtime,
        "status": "unfinished",
        "problems": [],
    }
    with path.open("rb") as handle:
        first = handle.readline(FIRST_LINE_LIMIT)
    metadata = _parse(first)
    if not first.strip():
        summary.update(status="empty")
        summary["problems"].append("the file is empty: the run wrote nothing yet")
        return summary
    if metadata is None or metadata.get("type") != "metadata":
        summary.update(status="foreign")
        summary["problems"].append(
            "the first line is not an rlm-core metadata line; not written by RLMLogger?"
        )
        return summary
    version = metadata.get("schema_version", 1)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        summary["problems"].append(
            f"written with log schema {version}; this viewer knows up to {SCHEMA_VERSION}: "
            "fields it does not know are left out (upgrade rlm-core to see them)"
        )
    summary["metadata"] = {k: v for k, v in metadata.items() if k not in ("system_prompt", "extra")}
    served = (metadata.get("extra") or {}).get("served")
    if isinstance(served, dict):  # a run of rlm serve: which key and profile asked for it
        summary["metadata"]["served"] = {k: str(served.get(k, "")) for k in ("profile", "caller")}
    result, last_iteration = _last_lines(path, stat.st_size)
    if result is not None:
        summary["status"] = "complete"
        summary["result"] = result
    if last_iteration is not None:
        summary["last_iteration"] = last_iteration
    return summary


def _last_lines(path: Path, size: int) -> tuple[dict[str, Any] | None, int | None]:
    """The ``result`` line (if the run finished) and the newest top-level iteration number seen."""
    for window in TAIL_WINDOWS:
        start = max(0, size - window)
        with path.open("rb") as handle:
            handle.seek(start)
            tail = handle.read()
        lines = tail.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first piece is the end of a line that began before the window
        result = None
        last_iteration = None
        for raw in reversed(lines):
            line = _parse(raw)
            if line is None:
                continue
            if line.get("type") == "result" and result is None:
                result = {k: v for k, v in line.items() if k != "prompt"}
            if line.get("type") == "iteration" and line.get("depth", 0) == 0:
                last_iteration = line.get("iteration")
                break
        if last_iteration is not None or result is not None or start == 0:
            return result, last_iteration
    return None, None


def _parse(raw: bytes) -> dict[str, Any] | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def wait_for_growth(path: Path, offset: int, timeout: float, interval: float = 0.1) -> int:
    """Block until the file is longer than ``offset`` or ``timeout`` passed; returns the size."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise LogAccessError(f"{path.name} was removed while the page was following it") from None
        if size > offset or time.monotonic() >= deadline:
            return size
        time.sleep(interval)
