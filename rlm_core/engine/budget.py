"""Limits shared by the concurrent calls of one completion: tokens per tier, USD, and the call count.

A call reserves its worst case before it starts (estimated prompt plus output cap) and settles with
the provider's own counts when it ends, so concurrent calls can never jointly pass a limit. A call
that does not fit only because other calls hold reservations *waits* for them, first come first
served; ``BudgetExceededError`` is raised only when what is really spent leaves no room.
"""

from __future__ import annotations

import asyncio
import collections
import math

import attrs

from rlm_core.errors import BudgetExceededError, CallLimitError, CostLimitError

# Output reserved for a call that did not ask for a cap. It bounds how many such calls can be in
# flight under a small budget; it never fails a call (calls beyond it wait).
DEFAULT_OUTPUT_RESERVE = 8192


@attrs.define
class Reservation:
    """What one call holds of one allowance until it settles: ``amount`` for ``max_tokens`` of output."""

    amount: float
    max_tokens: int
    fixed: float = 0.0
    per_output: float = 0.0
    settled: bool = False


class Allowance:
    """One limit (tokens of a tier, or USD) shared by concurrent calls on one event loop.

    ``fixed`` is what a call costs before any output (its prompt), ``per_output`` what each output
    token adds. Waiters are served in arrival order, and a cancelled waiter leaves the queue.
    """

    def __init__(self, name: str, limit: float, unit: str = "tokens") -> None:
        self.name = name
        self.limit = limit
        self.unit = unit
        self.used = 0.0
        self.reserved = 0.0
        self.holders = 0  # reservations in flight (counted, so float drift in ``reserved`` cannot matter)
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def remaining(self) -> float:
        """What is left after what is spent and what in-flight calls hold."""
        return self.limit - self.used - self.reserved

    def _spent_error(self, fixed: float, per_output: float) -> BudgetExceededError:
        if self.unit == "usd":
            return CostLimitError(self.limit, self.used, fixed + per_output)
        return BudgetExceededError(self.name, int(self.limit), int(self.used), int(fixed + per_output))

    def _cap(self, fixed: float, per_output: float, wanted: int) -> int:
        """The output cap that what is *spent* allows (in-flight reservations never lower it)."""
        if per_output <= 0:
            return wanted
        affordable = math.floor((self.limit - self.used - fixed) / per_output)
        return max(1, min(wanted, affordable))

    async def reserve(self, fixed: float, per_output: float, wanted: int) -> Reservation:
        """Hold room for a call; wait while in-flight calls hold what it needs.

        Raises ``BudgetExceededError`` (``CostLimitError`` for USD) when what is spent plus this
        call's prompt and one output token passes the limit.
        """
        waiter: asyncio.Future[None] | None = None
        try:
            while True:
                if self.used + fixed + per_output > self.limit:
                    raise self._spent_error(fixed, per_output)
                cap = self._cap(fixed, per_output, wanted)
                amount = fixed + per_output * cap
                first_in_line = not self._queue or self._queue[0] is waiter
                # With nothing in flight the cap always fits (it was cut to what is spent), so a
                # waiter is never stuck: someone in flight will settle and wake the line.
                fits = self.holders == 0 or self.used + self.reserved + amount <= self.limit
                if first_in_line and fits:
                    if waiter is not None:
                        self._queue.popleft()
                        waiter = None
                    self.reserved += amount
                    self.holders += 1
                    self._wake_first()
                    return Reservation(amount, cap, fixed, per_output)
                if waiter is None:
                    waiter = asyncio.get_running_loop().create_future()
                    self._queue.append(waiter)
                else:
                    waiter = self._requeue(waiter)
                await waiter
        finally:
            if waiter is not None:  # cancelled or failed while in line: step out, let the next one try
                self._drop(waiter)

    def shrink(self, reservation: Reservation, max_tokens: int) -> None:
        """Lower a held reservation to a smaller output cap (another limit allowed less)."""
        if max_tokens >= reservation.max_tokens:
            return
        new_amount = reservation.fixed + reservation.per_output * max_tokens
        self.reserved -= reservation.amount - new_amount
        reservation.amount, reservation.max_tokens = new_amount, max_tokens
        self._wake_first()

    def settle(self, reservation: Reservation, spent: float | None) -> None:
        """Replace a reservation with what was really spent (``None``: the call never ran)."""
        if reservation.settled:
            return
        reservation.settled = True
        self.holders -= 1
        self.reserved = self.reserved - reservation.amount if self.holders else 0.0
        if spent:
            self.used += spent
        self._wake_first()

    def add_used(self, amount: float) -> None:
        self.used += amount
        self._wake_first()

    def _requeue(self, waiter: asyncio.Future[None]) -> asyncio.Future[None]:
        """A woken waiter that still does not fit keeps its place with a fresh future."""
        fresh: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for index, queued in enumerate(self._queue):
            if queued is waiter:
                self._queue[index] = fresh
                return fresh
        self._queue.appendleft(fresh)
        return fresh

    def _drop(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._queue.remove(waiter)
        except ValueError:
            return
        self._wake_first()

    def _wake_first(self) -> None:
        if self._queue and not self._queue[0].done():
            self._queue[0].set_result(None)


class TierBudget(Allowance):
    """The token budget of one tier (``root`` or ``sub``)."""

    def __init__(self, tier: str, limit: int) -> None:
        super().__init__(tier, limit, unit="tokens")
        self.tier = tier


class CallCounter:
    """``max_llm_calls``: model calls started, root and sub together. A started call always counts,
    so there is nothing to wait for: the call past the limit fails at once."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.started = 0

    def start(self) -> None:
        if self.limit is not None and self.started >= self.limit:
            raise CallLimitError(self.limit)
        self.started += 1


class RunBudget:
    """Every limit of one ``completion()`` tree; child RLMs share their parent's."""

    def __init__(
        self,
        max_root_tokens: int,
        max_sub_tokens: int,
        sub: TierBudget | None = None,
        *,
        max_cost: float | None = None,
        max_llm_calls: int | None = None,
    ) -> None:
        self.root = TierBudget("root", max_root_tokens)
        self.sub = sub if sub is not None else TierBudget("sub", max_sub_tokens)
        self.cost = Allowance("cost", max_cost, unit="usd") if max_cost is not None else None
        self.calls = CallCounter(max_llm_calls)

    def for_depth(self, depth: int) -> TierBudget:
        return self.root if depth == 0 else self.sub

    def remaining_tokens(self) -> dict[str, int]:
        """Tokens each tier has left (for routing policies that weigh them)."""
        return {"root": int(self.root.remaining), "sub": int(self.sub.remaining)}
