"""Data records shared across the engine: messages, LM requests and responses, usage, results."""

from __future__ import annotations

import enum
from typing import Any

import attrs


@attrs.define(frozen=True)
class Message:
    """One chat message. ``role`` is ``system``, ``user`` or ``assistant``."""

    role: str
    content: str


@attrs.define
class LMRequest:
    """What the engine asks of a model.

    ``depth`` 0 is the root model; ``depth`` >= 1 are sub-calls (``llm_query``, child RLMs).
    ``model`` is set when code asked for a specific configured model (``llm_query(p, model=...)``).
    ``max_tokens`` is the output cap; the broker lowers it to what the tier's budget has left.
    """

    messages: list[Message]
    depth: int = 0
    model: str | None = None
    max_tokens: int | None = None
    purpose: str = "root"  # root | llm_query | rlm_query | extract | compact
    run_id: str = ""

    @property
    def tier(self) -> str:
        return "root" if self.depth == 0 else "sub"


@attrs.define(frozen=True)
class TokenUsage:
    """Token counts as the provider reported them for one call (or a sum of calls)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@attrs.define
class LMResponse:
    """A model's reply: its text, the provider's usage numbers and, if known, its cost in USD."""

    text: str
    usage: TokenUsage = attrs.field(factory=TokenUsage)
    model: str = ""
    finish_reason: str | None = None
    cost: float | None = None
    latency: float = 0.0
    cached: bool = False  # served from a sub-call cache: no provider call, 0 tokens


@attrs.define
class ModelUsage:
    """Usage of one (tier, model) pair, summed over calls."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, usage: TokenUsage, cost: float | None, calls: int = 1) -> None:
        self.calls += calls
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def merge(self, other: ModelUsage) -> None:
        self.add(TokenUsage(other.input_tokens, other.output_tokens), other.cost, calls=other.calls)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_calls": self.calls,
            "total_input_tokens": self.input_tokens,
            "total_output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "total_cost": self.cost,
        }


@attrs.define
class UsageSummary:
    """Usage per (tier, model), summed and never overwritten; children's usage rolls up into the parent."""

    by_tier_model: dict[tuple[str, str], ModelUsage] = attrs.field(factory=dict)

    def record(self, tier: str, model: str, usage: TokenUsage, cost: float | None) -> None:
        self.by_tier_model.setdefault((tier, model), ModelUsage()).add(usage, cost)

    def merge(self, other: UsageSummary) -> None:
        for key, usage in other.by_tier_model.items():
            self.by_tier_model.setdefault(key, ModelUsage()).merge(usage)

    def tier_total(self, tier: str) -> ModelUsage:
        total = ModelUsage()
        for (t, _), usage in self.by_tier_model.items():
            if t == tier:
                total.merge(usage)
        return total

    @property
    def total(self) -> ModelUsage:
        total = ModelUsage()
        for usage in self.by_tier_model.values():
            total.merge(usage)
        return total

    def model_totals(self) -> dict[str, ModelUsage]:
        models: dict[str, ModelUsage] = {}
        for (_, model), usage in self.by_tier_model.items():
            models.setdefault(model, ModelUsage()).merge(usage)
        return models

    def to_dict(self) -> dict[str, Any]:
        """``model_usage_summaries`` keeps the upstream shape; ``tiers`` and ``total`` add the split."""
        tiers: dict[str, dict[str, Any]] = {}
        for (tier, model), usage in sorted(self.by_tier_model.items()):
            tiers.setdefault(tier, {})[model] = usage.to_dict()
        return {
            "model_usage_summaries": {m: u.to_dict() for m, u in sorted(self.model_totals().items())},
            "tiers": tiers,
            "root": self.tier_total("root").to_dict(),
            "sub": self.tier_total("sub").to_dict(),
            "total": self.total.to_dict(),
        }


class StopReason(str, enum.Enum):
    """Why a run ended."""

    FINAL = "final"  # the model gave its final answer
    MAX_ITERATIONS = "max_iterations"
    ROOT_BUDGET = "root_budget"
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"


@attrs.define
class RLMChatCompletion:
    """The result of ``RLM.completion()``.

    ``response`` is the final answer (or the best partial answer when the run stopped early, see
    ``stop_reason``); ``error`` says what went wrong, if anything.
    """

    root_model: str
    prompt: Any = attrs.field(repr=False)
    response: str
    usage_summary: UsageSummary
    execution_time: float
    stop_reason: StopReason = StopReason.FINAL
    error: str | None = None
    iterations: int = 0
    run_id: str = ""
    log_path: str | None = None

    @property
    def ok(self) -> bool:
        return self.stop_reason is StopReason.FINAL and self.error is None
