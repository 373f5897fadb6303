"""What a batch returns: one ``BatchResult`` per item (also its line in the results file) and a
``BatchSummary`` of the whole job."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from rlm_core.batch.store import STATUS_FAILED, STATUS_OK

STATUS_NOT_STARTED = "not_started"  # held back by a job-wide ceiling; never written, so a rerun runs it


@attrs.define
class BatchResult:
    """One item's outcome. ``resumed`` marks a result read back from an earlier run's file."""

    id: str
    status: str
    input_hash: str = ""
    response: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    usage: dict[str, Any] = attrs.field(factory=dict)
    tokens: int = 0
    cost: float | None = None
    cached_calls: int = 0
    duration: float = 0.0
    iterations: int = 0
    log_path: str | None = None
    metadata: Any = None
    resumed: bool = attrs.field(default=False, metadata={"stored": False})

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_record(self) -> dict[str, Any]:
        fields = attrs.fields(BatchResult)
        return {f.name: getattr(self, f.name) for f in fields if f.metadata.get("stored", True)}

    @classmethod
    def from_record(cls, record: dict[str, Any], resumed: bool = True) -> BatchResult:
        names = {f.name for f in attrs.fields(cls)} - {"resumed"}
        known = {key: value for key, value in record.items() if key in names}
        known.setdefault("status", STATUS_FAILED)
        return cls(resumed=resumed, **known)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


@attrs.define
class BatchSummary:
    """Counts by status and stop reason, totals, p50/p95 durations and cost of one batch run.

    Totals count the items this run finished; ``resumed`` items were finished by an earlier run.
    ``stopped_by`` says which job-wide ceiling held back the ``not_started`` items, if any.
    """

    items: int = 0
    ok: int = 0
    failed: int = 0
    resumed: int = 0
    not_started: int = 0
    by_stop_reason: dict[str, int] = attrs.field(factory=dict)
    tokens: int = 0
    cost: float = 0.0
    cached_calls: int = 0
    p50_duration: float | None = None
    p95_duration: float | None = None
    wall_time: float = 0.0
    stopped_by: str | None = None

    @classmethod
    def of(cls, results: Iterable[BatchResult], wall_time: float, stopped_by: str | None) -> BatchSummary:
        summary = cls(wall_time=wall_time, stopped_by=stopped_by)
        reasons: Counter[str] = Counter()
        durations: list[float] = []
        for result in results:
            summary.items += 1
            if result.status == STATUS_NOT_STARTED:
                summary.not_started += 1
                continue
            if result.resumed:
                summary.resumed += 1
                continue
            summary.ok += result.ok
            summary.failed += not result.ok
            reasons[result.stop_reason or "input_error"] += 1
            summary.tokens += result.tokens
            summary.cost += result.cost or 0.0
            summary.cached_calls += result.cached_calls
            durations.append(result.duration)
        summary.by_stop_reason = dict(sorted(reasons.items()))
        summary.p50_duration = _percentile(durations, 0.5)
        summary.p95_duration = _percentile(durations, 0.95)
        return summary

    @property
    def items_per_second(self) -> float:
        ran = self.ok + self.failed
        return ran / self.wall_time if self.wall_time > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["items_per_second"] = self.items_per_second
        return data

    def describe(self) -> str:
        """A few human-readable lines."""

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}s"

        reasons = ", ".join(f"{name} {count}" for name, count in self.by_stop_reason.items()) or "none"
        lines = [
            f"{self.items} items: {self.ok} ok, {self.failed} failed, {self.resumed} done before, "
            f"{self.not_started} not started",
            f"stop reasons: {reasons}",
            f"tokens {self.tokens:,}, cost ${self.cost:.4f}, cached sub-calls {self.cached_calls}",
            f"durations p50 {seconds(self.p50_duration)}, p95 {seconds(self.p95_duration)}; "
            f"wall {self.wall_time:.1f}s ({self.items_per_second:.1f} items/s)",
        ]
        if self.stopped_by:
            lines.append(f"stopped early: {self.stopped_by}")
        return "\n".join(lines)
