"""The results file: one JSON line per finished item, appended in one write and synced to disk.

Reading it back tells a rerun which items are done (same id and input hash), so a crash or a kill
loses at most the items that were in flight.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

STATUS_OK = "ok"
STATUS_FAILED = "failed"


class ResultStore:
    """Append-only JSONL of result records; the last record of an id wins."""

    def __init__(self, path: str | Path, sync: bool = True) -> None:
        self.path = Path(path)
        self.sync = sync
        self._lock = threading.Lock()
        self._fd: int | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """The last complete record of each id. A line cut short by a kill is ignored."""
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the torn tail of a killed writer: that item simply runs again
                if isinstance(record, dict) and "id" in record:
                    records[str(record["id"])] = record
        return records

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # A torn last line must not glue itself to the next record.
        size = os.fstat(self._fd).st_size
        if size:
            with self.path.open("rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a single ``O_APPEND`` write, then fsync: all of it lands or none."""
        data = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                self.open()
            assert self._fd is not None
            view = memoryview(data)
            while view:  # a regular file takes it whole; the loop covers a short write anyway
                written = os.write(self._fd, view)
                view = view[written:]
            if self.sync:
                os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def is_finished(record: dict[str, Any] | None, fingerprint: str, retry_failed: bool) -> bool:
    """Whether a stored record means the item needs no new run."""
    if record is None or record.get("input_hash") != fingerprint:
        return False
    return record.get("status") == STATUS_OK or not retry_failed
