"""Batch items: read lazily from a JSONL file, a directory of text files or any iterable.

An item is ``{"id", "context" | "context_path", "question", "metadata"?, <per-item settings>...}``;
a problem with one item (a malformed line, an unknown setting) is kept on the item, so only it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from rlm_core.config import ITEM_SETTINGS
from rlm_core.errors import RLMError

_ITEM_FIELDS = frozenset({"id", "context", "context_path", "question", "metadata", "settings"})


class BatchInputError(RLMError):
    """An item of a batch cannot run as given (it fails alone; the job goes on)."""


@attrs.define(frozen=True)
class BatchItem:
    """One unit of a batch. ``context_path`` is read only when the item starts."""

    id: str
    question: str | None = None
    context: Any = None
    context_path: str | None = None
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    metadata: Any = None
    problem: str | None = None  # why this item cannot run; it then fails with this message

    def load_context(self) -> Any:
        """The context: inline, or the text of ``context_path`` (read now, not when listed)."""
        if self.problem is not None:
            raise BatchInputError(self.problem)
        if self.context_path is None:
            return self.context
        try:
            return Path(self.context_path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise BatchInputError(
                f"item {self.id!r}: cannot read context_path {self.context_path!r}: {exc.strerror or exc}; "
                "check the path (relative paths are resolved against the items file's folder)"
            ) from exc

    def fingerprint(self, job_settings: Mapping[str, Any]) -> str:
        """sha256 of what decides the answer: question, context, settings and the job's settings.

        A ``context_path`` counts by path, size and modification time, so a rerun over 10 GB of
        documents does not read them all just to decide what is already done.
        """
        source: Any
        if self.context_path is not None:
            try:
                stat = os.stat(self.context_path)
                source = {"path": self.context_path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            except OSError:
                source = {"path": self.context_path, "missing": True}
        else:
            source = {"inline": self.context}
        payload = {
            "question": self.question,
            "context": source,
            "settings": dict(self.settings),
            "problem": self.problem,
            "job": dict(job_settings),
        }
        text = json.dumps(payload, sort_keys=True, default=repr, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_from_mapping(data: Any, default_id: str, base_dir: Path | None = None) -> BatchItem:
    """Build an item from one decoded record; problems are kept on the item, never raised."""
    if not isinstance(data, Mapping):
        return BatchItem(
            id=default_id,
            problem=f"item {default_id}: expected a JSON object, got {type(data).__name__}",
        )
    item_id = str(data.get("id", default_id))
    settings = dict(data.get("settings") or {}) if isinstance(data.get("settings"), Mapping) else {}
    settings.update({key: value for key, value in data.items() if key not in _ITEM_FIELDS})
    context_path = data.get("context_path")
    if context_path is not None:
        path = Path(str(context_path)).expanduser()
        context_path = str(path if path.is_absolute() or base_dir is None else base_dir / path)
    problem = _problem(item_id, data, settings)
    return BatchItem(
        id=item_id,
        question=None if data.get("question") is None else str(data["question"]),
        context=data.get("context"),
        context_path=context_path,
        settings=settings,
        metadata=data.get("metadata"),
        problem=problem,
    )


def _problem(item_id: str, data: Mapping[str, Any], settings: Mapping[str, Any]) -> str | None:
    unknown = sorted(set(settings) - ITEM_SETTINGS)
    if unknown:
        return (
            f"item {item_id!r} has unknown settings {unknown}; an item may set "
            f"{', '.join(sorted(ITEM_SETTINGS))} (clients, environment and logging are the job's)"
        )
    if ("context" in data) == ("context_path" in data):
        return f"item {item_id!r} needs exactly one of 'context' or 'context_path'"
    if "settings" in data and not isinstance(data["settings"], Mapping):
        return f"item {item_id!r}: 'settings' must be an object, got {type(data['settings']).__name__}"
    return None


def read_jsonl(path: str | Path) -> Iterator[BatchItem]:
    """Items of a JSONL file, one line at a time; ids default to ``line-N``."""
    path = Path(path)
    base_dir = path.parent
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            default_id = f"line-{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BatchItem(
                    id=default_id,
                    problem=f"{path.name} line {number} is not valid JSON ({exc.msg} at column "
                    f"{exc.colno}); each line must be one JSON object",
                )
                continue
            yield item_from_mapping(data, default_id, base_dir)


def read_directory(path: str | Path, question: str) -> Iterator[BatchItem]:
    """One item per file under ``path`` (sorted, recursive), each asked ``question``; id = relative path."""
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        yield BatchItem(id=file.relative_to(root).as_posix(), question=question, context_path=str(file))


def iter_items(source: Iterable[Any] | str | Path, question: str | None = None) -> Iterator[BatchItem]:
    """Items from a JSONL path, a directory (with ``question``) or an iterable of items/dicts/strings."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            if not question:
                raise BatchInputError(
                    f"{path} is a directory: give the one question to ask of each file (--question)"
                )
            return read_directory(path, question)
        if not path.exists():
            raise BatchInputError(f"items file {str(path)!r} does not exist; expected a JSONL file or folder")
        return read_jsonl(path)
    return _from_iterable(source, question)


def _from_iterable(source: Iterable[Any], question: str | None) -> Iterator[BatchItem]:
    for index, entry in enumerate(source):
        if isinstance(entry, BatchItem):
            yield entry
        elif isinstance(entry, str):  # a bare context, asked the common question
            yield BatchItem(id=str(index), question=question, context=entry)
        else:
            item = item_from_mapping(entry, str(index))
            if item.question is None and question is not None:
                item = attrs.evolve(item, question=question)
            yield item
