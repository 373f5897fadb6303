"""The job's ledger: tokens and cost of every model call so far, and whether one more item may start
without the job passing its ceilings."""

from __future__ import annotations

import threading

import attrs


@attrs.define
class LedgerState:
    """Numbers for progress displays."""

    tokens: int
    cost: float
    finished_items: int


class JobLedger:
    """Counts every call live (``record_call``) and every finished item (``record_item``).

    A new item may start when the tokens (and cost) spent so far, plus what the items in flight are
    still expected to spend, plus one more item, stay within the ceiling. "Expected" is the mean of
    the items finished so far (earlier runs of the job included); before the first one finishes
    only what was really spent counts, so the first ``max_concurrent`` items may all start.
    Items already running are never stopped by the ledger: their own budgets bound them.
    """

    def __init__(
        self,
        max_tokens: int | None = None,
        max_cost: float | None = None,
        prior_tokens: int = 0,
        prior_cost: float = 0.0,
        prior_items: int = 0,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_cost = max_cost
        self._lock = threading.Lock()  # calls are recorded from worker threads too
        self.prior_tokens = prior_tokens
        self.prior_cost = prior_cost
        self.prior_items = prior_items  # finished by earlier runs of the job: they inform the mean
        self.live_tokens = prior_tokens
        self.live_cost = prior_cost
        self.done_tokens = 0
        self.done_cost = 0.0
        self.done_items = 0

    def __getstate__(self) -> dict[str, object]:
        # Sent to a Ray actor when the job runs there: the numbers travel, the lock is made anew.
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def record_call(self, tokens: int, cost: float | None) -> None:
        with self._lock:
            self.live_tokens += tokens
            self.live_cost += cost or 0.0

    def record_item(self, tokens: int, cost: float | None) -> None:
        with self._lock:
            self.done_tokens += tokens
            self.done_cost += cost or 0.0
            self.done_items += 1

    def refusal(self, in_flight: int) -> str | None:
        """None when one more item may start; else which ceiling it would pass, as a sentence."""
        with self._lock:
            checks = (
                ("tokens", self.max_tokens, self.live_tokens, self.prior_tokens, self.done_tokens),
                ("USD", self.max_cost, self.live_cost, self.prior_cost, self.done_cost),
            )
            for unit, ceiling, live, prior, done in checks:
                if ceiling is None:
                    continue
                finished = self.prior_items + self.done_items
                mean = (prior + done) / finished if finished else 0.0
                spent_in_flight = max(live - prior - done, 0)
                projected = live + max(mean * in_flight - spent_in_flight, 0) + mean
                if live >= ceiling or projected > ceiling:
                    return (
                        f"job ceiling of {ceiling:g} {unit}: {live:g} spent, ~{projected:g} "
                        f"projected with one more item; raise --max-job-{'tokens' if unit == 'tokens' else 'cost'} "
                        "and rerun to continue"
                    )
            return None

    def state(self) -> LedgerState:
        with self._lock:
            return LedgerState(self.live_tokens, self.live_cost, self.done_items)
