"""An opt-in on-disk (SQLite) cache of sub-calls: identical temperature-0 questions to the same model
are asked once across a job and its reruns."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from rlm_core.types import LMRequest, LMResponse, TokenUsage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subcalls (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    output_tokens INTEGER NOT NULL,
    finish_reason TEXT
)
"""


class SubCallCache:
    """Replies keyed by (model, messages). Only complete replies are kept (not cut by ``max_tokens``),
    and a hit is served only when it fits the caller's output cap, so a cached answer is one the
    model would have given under the same cap."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # One connection shared by the job's threads; the lock serialises its use.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, request: LMRequest) -> str:
        messages = [[m.role, m.content] for m in request.messages]
        text = json.dumps({"model": model, "messages": messages}, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get(self, model: str, request: LMRequest) -> LMResponse | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, output_tokens, finish_reason FROM subcalls WHERE key = ?",
                (self.key(model, request),),
            ).fetchone()
            fits = row is not None and (request.max_tokens is None or row[1] <= request.max_tokens)
            if not fits:
                self.misses += 1
                return None
            self.hits += 1
        text, _, finish_reason = row
        return LMResponse(
            text=text, usage=TokenUsage(0, 0), model=model, finish_reason=finish_reason, cost=0.0, cached=True
        )

    def put(self, model: str, request: LMRequest, response: LMResponse) -> None:
        if response.finish_reason == "length":
            return  # cut short: another cap could give another answer
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO subcalls (key, text, output_tokens, finish_reason) VALUES (?, ?, ?, ?)",
                (
                    self.key(model, request),
                    response.text,
                    response.usage.output_tokens,
                    response.finish_reason,
                ),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
