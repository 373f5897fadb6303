"""The ledger: one record per model call of a completion tree, the only count anything reads.

The broker appends a ``CallOutcome`` for every call it makes (root or sub, failed or not); usage
summaries, per-iteration usage, limits, events and logs are all read from here, never counted twice.
"""

from __future__ import annotations

from rlm_core.records import CallOutcome
from rlm_core.types import TokenUsage, UsageSummary

__all__ = ["CallOutcome", "Ledger"]


class Ledger:
    """Every call outcome of one ``completion()`` tree, with which run belongs under which.

    Owned by one event loop (the completion's), like the rest of a run's state.
    """

    def __init__(self) -> None:
        self.outcomes: list[CallOutcome] = []
        self._parent_run: dict[str, str | None] = {}
        self._children: dict[str, list[str]] = {}

    def add_run(self, run_id: str, parent_run_id: str | None = None) -> None:
        self._parent_run[run_id] = parent_run_id
        if parent_run_id is not None:
            self._children.setdefault(parent_run_id, []).append(run_id)

    def parent_of(self, run_id: str) -> str | None:
        return self._parent_run.get(run_id)

    def record(self, outcome: CallOutcome) -> None:
        self.outcomes.append(outcome)

    def mark(self) -> int:
        """A position to read ``usage_since`` from."""
        return len(self.outcomes)

    def _runs_under(self, run_id: str) -> set[str]:
        """``run_id`` and every run started beneath it (child RLMs, their children)."""
        runs, pending = {run_id}, [run_id]
        while pending:
            for child in self._children.get(pending.pop(), ()):
                if child not in runs:
                    runs.add(child)
                    pending.append(child)
        return runs

    def select(self, run_id: str | None = None, since: int = 0) -> list[CallOutcome]:
        """Outcomes of the whole tree, or of ``run_id`` and its descendants, from position ``since``."""
        outcomes = self.outcomes[since:]
        if run_id is None:
            return outcomes
        runs = self._runs_under(run_id)
        return [o for o in outcomes if o.run_id in runs]

    def summary(self, run_id: str | None = None) -> UsageSummary:
        """Usage per (tier, model) of the tree or of one run's subtree, summed from the outcomes."""
        summary = UsageSummary()
        for outcome in self.select(run_id):
            summary.record(
                outcome.tier,
                outcome.model,
                outcome.usage,
                outcome.cost,
                estimated=outcome.usage_estimated,
                cached=outcome.cached,
            )
        return summary

    def usage_since(self, mark: int, run_id: str, tier: str, own_run_only: bool = False) -> TokenUsage:
        total = TokenUsage()
        for outcome in self.select(run_id, since=mark):
            if outcome.tier == tier and (not own_run_only or outcome.run_id == run_id):
                total = total + outcome.usage
        return total

    @property
    def calls(self) -> int:
        return len(self.outcomes)

    @property
    def cost(self) -> float:
        return sum(o.cost for o in self.outcomes if o.cost is not None)
