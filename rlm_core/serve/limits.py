"""Per-key limits shared by every server process through one SQLite file: completions in flight,
and tokens and USD per UTC day.

A completion is admitted by reserving what it may spend (its whole token budget and ``max_cost``,
cut to what the key has left today), in one ``BEGIN IMMEDIATE`` transaction that every process
serialises on; it settles by replacing the reservation with what the ledger says it spent. So the
ceilings hold to the token however many completions and processes run at once. Rows of a process
that died (its pid is gone) are dropped by the next admission.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import attrs

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    key TEXT NOT NULL, day TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0, usd REAL NOT NULL DEFAULT 0, completions INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, day)
);
CREATE TABLE IF NOT EXISTS inflight (
    id TEXT PRIMARY KEY, key TEXT NOT NULL, day TEXT NOT NULL, pid INTEGER NOT NULL,
    tokens INTEGER NOT NULL, usd REAL NOT NULL, started REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS inflight_key ON inflight (key);
"""


@attrs.define(frozen=True)
class KeyLimits:
    """What one key may do: completions at once, and tokens / USD per UTC day (None: no ceiling)."""

    max_concurrent: int = 4
    tokens_per_day: int | None = None
    usd_per_day: float | None = None


@attrs.define(frozen=True)
class Reservation:
    """An admitted completion: its row, and the tokens and USD it may spend (None: unbounded USD)."""

    id: str
    key: str
    day: str
    tokens: int
    usd: float | None


@attrs.define(frozen=True)
class Refusal:
    """Why a completion was not admitted, and when to try again (seconds, for ``Retry-After``)."""

    reason: str
    retry_after: int
    code: str


@attrs.define(frozen=True)
class KeyUsage:
    tokens: int = 0
    usd: float = 0.0
    completions: int = 0
    in_flight: int = 0


def utc_day(now: float | None = None) -> str:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).date().isoformat()


def seconds_to_midnight(now: float | None = None) -> int:
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    midnight = dt.datetime.combine(moment.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    return max(1, math.ceil((midnight - moment).total_seconds()))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Limiter:
    """The limits ledger at ``path`` (created if missing). Its calls run on one thread of its own,
    so a busy database never blocks the event loop."""

    def __init__(self, path: str | Path, *, min_tokens: int = 100, min_usd: float = 0.0) -> None:
        self.path = Path(path)
        self.min_tokens = min_tokens
        self.min_usd = min_usd
        self._pid = os.getpid()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlm-serve-limits")
        self._db: sqlite3.Connection | None = None
        self._call(self._open)

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        return self._executor.submit(function, *args).result()

    async def _acall(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        # Rows under our pid belong to an earlier process that had it: nothing of ours runs yet.
        db.execute("DELETE FROM inflight WHERE pid = ?", (self._pid,))
        self._db = db

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        with contextlib.suppress(RuntimeError):
            self._call(shut)
        self._executor.shutdown(wait=True)

    # -- admission -----------------------------------------------------------------------------

    async def admit(
        self, key: str, limits: KeyLimits, tokens: int, usd: float | None
    ) -> Reservation | Refusal:
        """Reserve up to ``tokens`` and ``usd`` (None: unbounded) for one completion of ``key``."""
        return await self._acall(self._admit, key, limits, tokens, usd, time.time())

    def _admit(
        self, key: str, limits: KeyLimits, tokens: int, usd: float | None, now: float
    ) -> Reservation | Refusal:
        day = utc_day(now)
        with self._transaction() as db:
            self._drop_dead(db)
            _, held_tokens, held_usd = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(tokens), 0), COALESCE(SUM(usd), 0) FROM inflight "
                "WHERE key = ? AND day = ?",
                (key, day),
            ).fetchone()
            running_any = db.execute("SELECT COUNT(*) FROM inflight WHERE key = ?", (key,)).fetchone()[0]
            if running_any >= limits.max_concurrent:
                return Refusal(
                    f"this key already has {running_any} completions running, its limit is "
                    f"{limits.max_concurrent}; retry when one ends",
                    1,
                    "concurrency_limit_exceeded",
                )
            row = db.execute("SELECT tokens, usd FROM usage WHERE key = ? AND day = ?", (key, day)).fetchone()
            used_tokens, used_usd = row if row else (0, 0.0)
            granted_tokens = tokens
            if limits.tokens_per_day is not None:
                left = limits.tokens_per_day - used_tokens - held_tokens
                if left < self.min_tokens:
                    spent = limits.tokens_per_day - used_tokens < self.min_tokens
                    return Refusal(
                        f"this key's daily token ceiling ({limits.tokens_per_day:,}) is "
                        + ("spent" if spent else "held by its running completions"),
                        seconds_to_midnight(now) if spent else 1,
                        "token_ceiling_reached",
                    )
                granted_tokens = min(tokens, left)
            granted_usd = usd
            if limits.usd_per_day is not None:
                left_usd = limits.usd_per_day - used_usd - held_usd
                if left_usd <= 0 or left_usd < self.min_usd:
                    spent = limits.usd_per_day - used_usd < max(self.min_usd, 1e-12)
                    return Refusal(
                        f"this key's daily cost ceiling (${limits.usd_per_day:g}) is "
                        + ("spent" if spent else "held by its running completions"),
                        seconds_to_midnight(now) if spent else 1,
                        "cost_ceiling_reached",
                    )
                granted_usd = left_usd if usd is None else min(usd, left_usd)
            ident = uuid.uuid4().hex
            db.execute(
                "INSERT INTO inflight (id, key, day, pid, tokens, usd, started) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ident, key, day, self._pid, granted_tokens, granted_usd or 0.0, now),
            )
        return Reservation(ident, key, day, granted_tokens, granted_usd)

    def _drop_dead(self, db: sqlite3.Connection) -> None:
        pids = [pid for (pid,) in db.execute("SELECT DISTINCT pid FROM inflight") if pid != self._pid]
        for pid in pids:
            if not _pid_alive(pid):
                db.execute("DELETE FROM inflight WHERE pid = ?", (pid,))

    # -- settling ------------------------------------------------------------------------------

    async def settle(self, reservation: Reservation, tokens: int, usd: float) -> None:
        """Replace the reservation with what the completion spent (charged to the day it started)."""
        await self._acall(self._settle, reservation, tokens, usd)

    def _settle(self, reservation: Reservation, tokens: int, usd: float) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM inflight WHERE id = ?", (reservation.id,))
            db.execute(
                "INSERT INTO usage (key, day, tokens, usd, completions) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (key, day) DO UPDATE SET tokens = tokens + excluded.tokens, "
                "usd = usd + excluded.usd, completions = completions + 1",
                (reservation.key, reservation.day, tokens, usd),
            )

    # -- reading -------------------------------------------------------------------------------

    def usage(self, key: str, day: str | None = None) -> KeyUsage:
        """What ``key`` spent on ``day`` (default today) and how many of its completions run now."""
        return self._call(self._usage, key, day or utc_day())

    def _usage(self, key: str, day: str) -> KeyUsage:
        assert self._db is not None
        row = self._db.execute(
            "SELECT tokens, usd, completions FROM usage WHERE key = ? AND day = ?", (key, day)
        ).fetchone()
        running = self._db.execute("SELECT COUNT(*) FROM inflight WHERE key = ?", (key,)).fetchone()[0]
        tokens, usd, completions = row if row else (0, 0.0, 0)
        return KeyUsage(int(tokens), float(usd), int(completions), int(running))
