"""Trajectory logs: ``RLMLogger`` writes a JSONL file per top-level completion, ``read_trajectory`` reads it.

Lines: a ``metadata`` line, one ``iteration`` line per root-loop turn, a ``result`` line; child runs
add ``child_run_start``/``iteration``/``child_result`` lines with their own run id. Everything is redacted.
A string longer than ``max_inline_chars`` (a sub-call's prompt holding the whole context, a huge
output) is logged as a preview plus its size and sha256, listed under the line's ``elided`` key;
with ``side_files=True`` the full (redacted) text goes to ``<log>.d/<sha256>.txt``, once per text.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import IO, Any

import attrs

from rlm_core.errors import RLMError
from rlm_core.events import EventKind, RunEvent
from rlm_core.loggers.serialization import (
    DEFAULT_MAX_INLINE_CHARS,
    ELIDED_KEY,
    ElidedValue,
    converter,
    elide_large_strings,
)
from rlm_core.records import SCHEMA_VERSION, IterationRecord, RunMetadata
from rlm_core.redact import redact, redact_text
from rlm_core.types import RLMChatCompletion

LINE_METADATA = "metadata"
LINE_CHILD_START = "child_run_start"
LINE_ITERATION = "iteration"
LINE_RESULT = "result"
LINE_CHILD_RESULT = "child_result"

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


class TrajectoryReadError(RLMError, ValueError):
    """A trajectory log could not be read (not JSONL, a damaged line before the end, a newer schema)."""


@attrs.define
class _OpenLog:
    path: Path
    handle: IO[str]


class RLMLogger:
    """Writes each top-level completion to its own JSONL file in ``log_dir`` (created if missing).

    A file is named ``<prefix>_<UTC timestamp>_<run id[:8]>.jsonl`` with prefix ``file_name`` or
    ``"rlm"``; a ``file_name`` ending in ``.jsonl`` is used as the exact name of the first file.
    Child runs go to their root run's file. Each line is written and flushed as it comes, so a
    killed process leaves a log that is readable up to the last finished iteration. Thread-safe:
    concurrent completions sharing one logger get separate files.
    """

    def __init__(
        self,
        log_dir: str | Path,
        file_name: str | None = None,
        *,
        max_inline_chars: int = DEFAULT_MAX_INLINE_CHARS,
        side_files: bool = False,
    ) -> None:
        if (
            isinstance(max_inline_chars, bool)
            or not isinstance(max_inline_chars, int)
            or max_inline_chars < 100
        ):
            raise RLMError("max_inline_chars must be an int >= 100 (characters kept whole in a log line)")
        self.log_dir = Path(log_dir)
        self.file_name = file_name
        self.max_inline_chars = max_inline_chars
        self.side_files = side_files
        self.paths: list[Path] = []
        self._lock = threading.Lock()
        self._open: dict[str, _OpenLog] = {}  # root run id -> its file
        self._root_of: dict[str, str] = {}  # run id (root or child) -> root run id
        self._file_of: dict[str, Path] = {}  # top-level run id -> its file, kept after the run ends
        self._exact_name_used = False

    @property
    def last_path(self) -> Path | None:
        """The file of the most recently started top-level completion."""
        return self.paths[-1] if self.paths else None

    def path_of(self, run_id: str) -> Path | None:
        """The file a top-level completion was written to (also after it ended); None if unknown."""
        with self._lock:
            return self._file_of.get(run_id)

    def path_for(self, run_id: str) -> Path | None:
        """The file a run (top-level or child) is being written to, while it is open."""
        with self._lock:
            root = self._root_of.get(run_id)
            log = self._open.get(root) if root is not None else None
            return log.path if log is not None else None

    def __repr__(self) -> str:
        return f"RLMLogger(log_dir={str(self.log_dir)!r}, files={len(self.paths)})"

    # -- events --------------------------------------------------------------------------------

    def on_event(self, event: RunEvent) -> None:
        if event.kind is EventKind.RUN_START:
            self._on_run_start(event)
        elif event.kind is EventKind.ITERATION_END:
            record: IterationRecord = event.data["record"]
            self._write(event.run_id, {"type": LINE_ITERATION, **converter.unstructure(record)})
        elif event.kind is EventKind.RUN_END:
            self._on_run_end(event)

    def _on_run_start(self, event: RunEvent) -> None:
        metadata: RunMetadata = event.data["metadata"]
        fields = converter.unstructure(metadata)
        with self._lock:
            root = self._root_of.get(event.parent_run_id) if event.parent_run_id else None
            if root is not None and root in self._open:
                self._root_of[event.run_id] = root
                self._write_locked(root, {"type": LINE_CHILD_START, **fields})
                return
            # A top-level run, or a child whose parent this logger never saw: a file of its own.
            log = self._open_file(event.run_id, metadata.started_at or event.timestamp)
            self._open[event.run_id] = log
            self._root_of[event.run_id] = event.run_id
            self.paths.append(log.path)
            self._file_of[event.run_id] = log.path
            self._write_locked(
                event.run_id, {"type": LINE_METADATA, "schema_version": SCHEMA_VERSION, **fields}
            )

    def _on_run_end(self, event: RunEvent) -> None:
        result: RLMChatCompletion = event.data["result"]
        fields = converter.unstructure(result)
        with self._lock:
            root = self._root_of.get(event.run_id)
            if root is None:
                return
            if root != event.run_id:
                self._write_locked(root, {"type": LINE_CHILD_RESULT, **fields})
                del self._root_of[event.run_id]
                return
            self._write_locked(root, {"type": LINE_RESULT, **fields})
            log = self._open.pop(root)
            log.handle.close()
            for run_id in [r for r, rt in self._root_of.items() if rt == root]:
                del self._root_of[run_id]

    def _write(self, run_id: str, line: dict[str, Any]) -> None:
        with self._lock:
            root = self._root_of.get(run_id)
            if root is not None:
                self._write_locked(root, line)

    def _write_locked(self, root: str, line: dict[str, Any]) -> None:
        log = self._open.get(root)
        if log is None:
            return
        # Large strings first (a 20 MB prompt is not walked by the redactor, nor written), then secrets.
        line, elided = elide_large_strings(
            line, self.max_inline_chars, self._store(log) if self.side_files else None
        )
        if elided:
            line[ELIDED_KEY] = [converter.unstructure(e) for e in elided]
        # default=str: a stray non-JSON value in ``extra`` must not lose the line.
        text = json.dumps(redact(line), default=str)
        log.handle.write(text + "\n")
        log.handle.flush()

    def _store(self, log: _OpenLog) -> Any:
        folder = log.path.with_suffix(".d")

        def store(text: str, digest: str) -> str | None:
            path = folder / f"{digest}.txt"
            if not path.exists():  # the same text (three refused calls on one context) once
                folder.mkdir(exist_ok=True)
                path.write_text(redact_text(text), encoding="utf-8", errors="surrogatepass")
            return f"{folder.name}/{path.name}"

        return store

    def _open_file(self, run_id: str, started_at: float) -> _OpenLog:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.file_name and self.file_name.endswith(".jsonl") and not self._exact_name_used:
            self._exact_name_used = True
            candidates = [self.file_name]
        else:
            candidates = []
        prefix = (self.file_name or "rlm").removesuffix(".jsonl")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
        short_id = _UNSAFE_FILE_CHARS.sub("_", run_id[:8]) or "run"
        base = f"{prefix}_{stamp}_{short_id}"
        candidates += [f"{base}.jsonl", *(f"{base}-{n}.jsonl" for n in range(2, 1000))]
        for name in candidates:
            path = self.log_dir / name
            try:
                # "x" mode: two runs can never share (and interleave in) one file.
                handle = path.open("x", encoding="utf-8")
            except FileExistsError:
                continue
            return _OpenLog(path, handle)
        raise RLMError(
            f"could not create a new log file for run {run_id!r} in {self.log_dir}: 1000 names starting "
            f"with {base!r} already exist. Use another log_dir or remove old logs."
        )

    def close(self) -> None:
        """Close every open file; runs still going are left without a result line."""
        with self._lock:
            for log in self._open.values():
                log.handle.close()
            self._open.clear()
            self._root_of.clear()

    def __enter__(self) -> RLMLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@attrs.define
class Trajectory:
    """A run read back from a log: its metadata, iterations, child runs (nested) and result.

    ``result`` is None when the run did not finish (killed process, or still running);
    ``truncated`` says the last line was cut off, and ``problems`` lists anything the reader skipped.
    """

    metadata: RunMetadata | None = None
    iterations: list[IterationRecord] = attrs.field(factory=list)
    children: list[Trajectory] = attrs.field(factory=list)
    result: RLMChatCompletion | None = None
    path: str | None = None
    truncated: bool = False
    problems: list[str] = attrs.field(factory=list)
    elided: list[ElidedValue] = attrs.field(factory=list)  # strings logged as a preview (all runs)

    @property
    def run_id(self) -> str | None:
        return self.metadata.run_id if self.metadata is not None else None

    @property
    def complete(self) -> bool:
        return self.result is not None


def read_trajectory(path: str | Path) -> Trajectory:
    """Read a log written by ``RLMLogger``.

    A damaged last line (the writer was killed mid-line) is skipped and reported through
    ``truncated``/``problems``; a damaged line before the end raises ``TrajectoryReadError``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrajectoryReadError(f"cannot read trajectory log {path}: {exc}") from exc
    lines = text.split("\n")
    # A complete file ends with "\n", leaving an empty last element; anything else was cut off,
    # unless it happens to be a whole JSON object (the writer died just before the newline).
    last_cut = lines.pop()
    root = Trajectory(path=str(path))
    if last_cut and _is_json_object(last_cut):
        lines.append(last_cut)
    elif last_cut:
        root.truncated = True
        root.problems.append(
            f"line {len(lines) + 1} is incomplete (the writing process probably stopped mid-line); "
            f"read the {len(lines)} complete lines before it"
        )
    runs: dict[str, Trajectory] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TrajectoryReadError(
                f"{path}, line {number}: not valid JSON ({exc.msg}). Expected one JSON object per line "
                f"as written by RLMLogger; was the file edited or written by another tool?"
            ) from exc
        if not isinstance(line, dict) or "type" not in line:
            raise TrajectoryReadError(
                f"{path}, line {number}: expected a JSON object with a 'type' key, got {raw[:80]!r}"
            )
        try:
            _apply_line(root, runs, line, number)
        except TrajectoryReadError:
            raise
        except Exception as exc:
            raise TrajectoryReadError(
                f"{path}, line {number}: a {line.get('type')!r} line does not match the record it "
                f"should hold: {exc}"
            ) from exc
    if root.metadata is None:
        root.problems.append("no metadata line: this does not look like a complete RLMLogger file")
    elif root.result is None:
        root.problems.append("no result line: the run did not finish (still running, or killed)")
    return root


def _is_json_object(raw: str) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except json.JSONDecodeError:
        return False


def read_elided(trajectory: Trajectory, value: ElidedValue) -> str:
    """The full text of a value logged as a preview, from its side file (``side_files=True``)."""
    if value.file is None or trajectory.path is None:
        raise TrajectoryReadError(
            f"the value at {value.path} ({value.chars:,} characters) was logged as a preview only; "
            "log with RLMLogger(..., side_files=True) to keep the full text"
        )
    return (Path(trajectory.path).parent / value.file).read_text(encoding="utf-8", errors="surrogatepass")


def _apply_line(root: Trajectory, runs: dict[str, Trajectory], line: dict[str, Any], number: int) -> None:
    kind = line.pop("type")
    root.elided.extend(converter.structure(e, ElidedValue) for e in line.pop(ELIDED_KEY, []))
    if kind == LINE_METADATA:
        version = line.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise TrajectoryReadError(
                f"line {number}: log schema version {version} is newer than this rlm-core reads "
                f"({SCHEMA_VERSION}); upgrade rlm-core to read it"
            )
        root.metadata = converter.structure(line, RunMetadata)
        runs[root.metadata.run_id] = root
    elif kind == LINE_CHILD_START:
        metadata = converter.structure(line, RunMetadata)
        child = Trajectory(metadata=metadata)
        runs[metadata.run_id] = child
        parent = runs.get(metadata.parent_run_id or "")
        if parent is None:
            root.problems.append(f"line {number}: child run {metadata.run_id} has an unknown parent")
            parent = root
        parent.children.append(child)
    elif kind == LINE_ITERATION:
        record = converter.structure(line, IterationRecord)
        _run_for(root, runs, record.run_id, number).iterations.append(record)
    elif kind in (LINE_RESULT, LINE_CHILD_RESULT):
        result = converter.structure(line, RLMChatCompletion)
        target = root if kind == LINE_RESULT else _run_for(root, runs, result.run_id, number)
        target.result = result
    else:
        root.problems.append(f"line {number}: skipped a line of unknown type {kind!r}")


def _run_for(root: Trajectory, runs: dict[str, Trajectory], run_id: str, number: int) -> Trajectory:
    run = runs.get(run_id)
    if run is None:
        root.problems.append(f"line {number}: run {run_id} has no start line; counted with the top-level run")
        return root
    return run
