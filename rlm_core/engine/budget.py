"""Token budgets per tier: ``max_root_tokens`` for depth 0, ``max_sub_tokens`` for everything deeper.

A call first reserves its estimated prompt plus its output cap; the reservation is replaced by the
provider's real numbers when the call ends. Concurrent calls therefore can never jointly overspend.
"""

from __future__ import annotations

import threading

import attrs

from rlm_core.errors import BudgetExceededError, ConfigurationError
from rlm_core.types import TokenUsage

MIN_BUDGET = 50
# Output reserved for a call that did not ask for a cap, so one call cannot starve concurrent ones.
DEFAULT_OUTPUT_RESERVE = 8192


def validate_budget(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int >= {MIN_BUDGET}, got {value!r}")
    if value < MIN_BUDGET:
        raise ConfigurationError(f"{name} must be >= {MIN_BUDGET} tokens, got {value}")
    return value


@attrs.define
class Reservation:
    tokens: int
    max_tokens: int


class TierBudget:
    """The budget of one tier; thread-safe. ``used`` counts what providers reported."""

    def __init__(self, tier: str, limit: int) -> None:
        self.tier = tier
        self.limit = limit
        self.used = 0
        self.reserved = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return self.limit - self.used - self.reserved

    def reserve(self, prompt_estimate: int, requested_max_tokens: int | None) -> Reservation:
        """Reserve room for a call, or raise BudgetExceededError if even one output token won't fit."""
        with self._lock:
            room = self.limit - self.used - self.reserved - prompt_estimate
            if room < 1:
                raise BudgetExceededError(
                    self.tier, self.limit, self.used + self.reserved, prompt_estimate + 1
                )
            wanted = requested_max_tokens if requested_max_tokens else DEFAULT_OUTPUT_RESERVE
            max_tokens = max(1, min(wanted, room))
            reservation = Reservation(prompt_estimate + max_tokens, max_tokens)
            self.reserved += reservation.tokens
            return reservation

    def settle(self, reservation: Reservation, usage: TokenUsage | None) -> None:
        """Replace a reservation with what the provider counted (``None``: the call failed, free it)."""
        with self._lock:
            self.reserved -= reservation.tokens
            if usage is not None:
                self.used += usage.total_tokens

    def add_used(self, tokens: int) -> None:
        with self._lock:
            self.used += tokens


class RunBudget:
    """The two tiers of one ``completion()``; child RLMs share their parent's sub tier."""

    def __init__(self, max_root_tokens: int, max_sub_tokens: int, sub: TierBudget | None = None) -> None:
        self.root = TierBudget("root", max_root_tokens)
        self.sub = sub if sub is not None else TierBudget("sub", max_sub_tokens)

    def for_depth(self, depth: int) -> TierBudget:
        return self.root if depth == 0 else self.sub
