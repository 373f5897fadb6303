"""Data records shared across the engine: messages, LM requests and responses, usage, results."""

from __future__ import annotations

import enum
from typing import Any

import attrs


@attrs.define(frozen=True)
class Message:
    """One chat message. ``role`` is ``system``, ``user`` or ``assistant``.

    ``author`` says who wrote it (**contract**, provenance): ``"model"`` for the model's own replies
    (the only messages the engine ever sends as ``assistant``), ``"engine"`` for the engine's prompts
    and plain notes, ``"strategy:<name>"`` for a strategy's, ``"user"`` for a caller's own message.
    Clients send only ``role`` and ``content``.
    """

    role: str
    content: str
    author: str = ""


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
    purpose: str = "root"  # root | llm_query | rlm_query | extract | choose | compact
    run_id: str = ""
    # The span that asked for this call (an iteration, a sub-call or batched slot); the broker's
    # model-call span nests under it in events and logs.
    parent_span_id: str | None = None
    # A JSON schema (always of an object) the reply must match: clients with structured output ask
    # the provider for it; the engine validates the reply either way (typed ``llm_query`` answers).
    response_schema: dict[str, Any] | None = None
    # Ask for the model's most likely alternatives (this many) for the first token of its reply,
    # with their log-probabilities (``llm_query(..., scores=True)``). Clients that cannot give them
    # leave ``LMResponse.top_logprobs`` None.
    top_logprobs: int | None = None

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
    # True when the answer came from a cache rather than the provider (its usage is then zero).
    cached: bool = False
    # The first output token's most likely alternatives as (token, natural-log probability), most
    # likely first, when the request asked for them and the provider gave them; else None.
    top_logprobs: tuple[tuple[str, float], ...] | None = None


@attrs.define
class ModelUsage:
    """Usage of one (tier, model) pair, summed over calls.

    ``estimated_calls`` counts calls whose provider reported no usage, charged at the engine's
    conservative estimate instead; ``cached_calls`` counts answers served from a cache.
    """

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    estimated_calls: int = 0
    cached_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(
        self,
        usage: TokenUsage,
        cost: float | None,
        calls: int = 1,
        *,
        estimated_calls: int = 0,
        cached_calls: int = 0,
    ) -> None:
        self.calls += calls
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.estimated_calls += estimated_calls
        self.cached_calls += cached_calls
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def merge(self, other: ModelUsage) -> None:
        self.add(
            TokenUsage(other.input_tokens, other.output_tokens),
            other.cost,
            calls=other.calls,
            estimated_calls=other.estimated_calls,
            cached_calls=other.cached_calls,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_calls": self.calls,
            "total_input_tokens": self.input_tokens,
            "total_output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "total_cost": self.cost,
            "estimated_calls": self.estimated_calls,
            "cached_calls": self.cached_calls,
        }


@attrs.define
class UsageSummary:
    """Usage per (tier, model), summed and never overwritten; children's usage rolls up into the parent."""

    by_tier_model: dict[tuple[str, str], ModelUsage] = attrs.field(factory=dict)

    def record(
        self,
        tier: str,
        model: str,
        usage: TokenUsage,
        cost: float | None,
        *,
        estimated: bool = False,
        cached: bool = False,
    ) -> None:
        self.by_tier_model.setdefault((tier, model), ModelUsage()).add(
            usage, cost, estimated_calls=int(estimated), cached_calls=int(cached)
        )

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


class AnswerSource(enum.StrEnum):
    """Where a run's answer came from (``RLMChatCompletion.answer_source``). A strategy's answer is
    ``"strategy:<name>"``, which is not one of these members."""

    FINAL = "final"  # FINAL(text) called in code or written as a line outside code
    FINAL_VAR = "final_var"  # FINAL_VAR(name)
    ANSWER_DICT = "answer_dict"  # answer["content"] = ...; answer["ready"] = True
    LAST_TURN_EXTRACT = "last_turn_extract"  # the text of the reply to "answer now" (no FINAL in it)
    PARTIAL = "partial"  # the run stopped early; the text the model wrote last


class StopReason(enum.StrEnum):
    """Why a run ended."""

    FINAL = "final"  # the model finished through FINAL / FINAL_VAR / answer["ready"]
    STRATEGY = "strategy"  # a strategy accepted an answer the model did not give as its finish
    MAX_ITERATIONS = "max_iterations"
    ROOT_BUDGET = "root_budget"
    COST_LIMIT = "cost_limit"  # max_cost could not afford the next root call
    CALL_LIMIT = "call_limit"  # max_llm_calls were all made
    TIMEOUT = "timeout"
    ERROR = "error"
    CANCELLED = "cancelled"


@attrs.define
class RLMChatCompletion:
    """The result of ``RLM.completion()``.

    ``response`` is the final answer (or the best partial answer when the run stopped early, see
    ``stop_reason``); ``error`` says what went wrong, if anything. ``answer_source`` says where the
    answer came from (see ``AnswerSource``): the model's own finish, a strategy, or the text of a
    last turn; None when there is no answer.
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
    answer_source: str | None = None

    @property
    def ok(self) -> bool:
        return self.stop_reason is StopReason.FINAL and self.error is None


@attrs.define
class ExecResult:
    """What one code cell did."""

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final_answer: str | None = None
    # How the cell finished: final | final_var | answer_dict (None for environments that predate it).
    final_source: str | None = None
    duration: float = 0.0
    timed_out: bool = False
    state_lost: bool = False  # the environment restarted: variables from earlier cells are gone
    restored: list[str] = attrs.field(factory=list)  # scaffold names the cell rebound (and we restored)
    variables: list[tuple[str, str]] = attrs.field(factory=list)  # (name, "type, size")

    @classmethod
    def from_runtime(cls, raw: dict[str, Any]) -> ExecResult:
        return cls(
            stdout=raw.get("stdout", ""),
            stderr=raw.get("stderr", ""),
            error=raw.get("error"),
            final_answer=raw.get("final_answer"),
            final_source=raw.get("final_source"),
            duration=float(raw.get("duration", 0.0)),
            timed_out=bool(raw.get("timed_out", False)),
            state_lost=bool(raw.get("state_lost", False)),
            restored=list(raw.get("restored", [])),
            variables=[(str(n), str(d)) for n, d in raw.get("variables", [])],
        )
