"""Progress of a batch: a rich bar (done, failed, in flight, tokens, cost, ETA) for people, JSON lines
on stderr for machines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from rlm_core.batch.ledger import LedgerState
from rlm_core.batch.results import BatchResult, BatchSummary


class _Counts:
    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self.in_flight = 0
        self.tokens = 0
        self.cost = 0.0

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, result: BatchResult, ledger: LedgerState) -> None:
        self.in_flight -= 1
        if result.ok:
            self.done += 1
        else:
            self.failed += 1
        self.tokens, self.cost = ledger.tokens, ledger.cost


class RichProgress:
    """A live bar on stderr; stdout stays free for the summary."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.counts = _Counts()
        self._bar = Progress(
            TextColumn("[bold]rlm batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: Any = None

    def _detail(self) -> str:
        c = self.counts
        return f"ok {c.done} · failed {c.failed} · running {c.in_flight} · {c.tokens:,} tok · ${c.cost:.4f}"

    def start(self, total: int | None) -> None:
        self._bar.start()
        self._task = self._bar.add_task("batch", total=total, detail=self._detail())

    def item_started(self, item_id: str) -> None:
        self.counts.started()
        self._bar.update(self._task, detail=self._detail())

    def item_finished(self, result: BatchResult, ledger: LedgerState) -> None:
        self.counts.finished(result, ledger)
        self._bar.update(self._task, advance=1, detail=self._detail())

    def item_skipped(self, result: BatchResult) -> None:
        # Finished by an earlier run, or held back by a ceiling: either way nothing left to wait for.
        self._bar.update(self._task, advance=1)

    def close(self, summary: BatchSummary) -> None:
        self._bar.stop()


class JsonProgress:
    """One JSON object per line on ``stream`` (stderr): ``start``, one ``item`` per finished item, ``end``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.counts = _Counts()
        self.total: int | None = None
        self._started = time.perf_counter()

    def _emit(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, **data}, default=str)
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, total: int | None) -> None:
        self.total = total
        self._started = time.perf_counter()
        self._emit("start", total=total)

    def item_started(self, item_id: str) -> None:
        self.counts.started()

    def item_skipped(self, result: BatchResult) -> None:
        self.counts.skipped += 1

    def item_finished(self, result: BatchResult, ledger: LedgerState) -> None:
        self.counts.finished(result, ledger)
        c = self.counts
        elapsed = time.perf_counter() - self._started
        finished = c.done + c.failed
        remaining = None if self.total is None else max(self.total - finished - c.skipped, 0)
        self._emit(
            "item",
            id=result.id,
            status=result.status,
            done=c.done,
            failed=c.failed,
            in_flight=c.in_flight,
            tokens=c.tokens,
            cost=c.cost,
            eta_seconds=None if remaining is None or not finished else elapsed / finished * remaining,
        )

    def close(self, summary: BatchSummary) -> None:
        self._emit("end", summary=summary.to_dict())
