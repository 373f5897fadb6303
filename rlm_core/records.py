"""Trajectory records: what a run did, iteration by iteration. Loggers serialise these with cattrs.

Schema version 2 adds span ids (``span_id``/``parent_span_id``, the same ids events carry) and the
model calls of each iteration (``CallOutcome``); version 3 adds provenance: each message's and each
cell's ``author``, the strategy's actions of each iteration and the answer's ``answer_source``.
Older logs, which have none of these, still read (their cells read as the model's).
"""

from __future__ import annotations

from typing import Any

import attrs

from rlm_core.types import Message, TokenUsage

SCHEMA_VERSION = 3


@attrs.define(frozen=True)
class CallOutcome:
    """One model call as the broker made it: the ledger's record, the only count anything reads.

    ``span_id`` identifies the call in events and logs; ``parent_span_id`` is the span that asked for
    it (an iteration for a root call, a sub-call or batched slot for ``llm_query``). ``client`` is
    the configured client's name, ``model`` the model that answered. ``usage_estimated`` is true when
    the provider reported no usage and the engine charged its own conservative estimate; ``cached``
    when the answer came from a cache. ``finish_reason`` is the provider's own (``stop``,
    ``length``, ``tool_calls``, Anthropic's ``end_turn``/``max_tokens``, ...), None when it gave none.
    """

    span_id: str
    run_id: str
    client: str
    model: str
    tier: str
    depth: int
    purpose: str
    usage: TokenUsage = attrs.field(factory=TokenUsage)
    cost: float | None = None
    latency: float = 0.0
    started_at: float = 0.0
    error: str | None = None
    usage_estimated: bool = False
    cached: bool = False
    parent_span_id: str | None = None
    finish_reason: str | None = None


@attrs.define
class RunMetadata:
    """The first line of a trajectory log: how the run was configured."""

    run_id: str
    root_model: str
    backend: str
    environment: str
    started_at: float
    depth: int = 0
    parent_run_id: str | None = None
    other_backends: list[str] = attrs.field(factory=list)
    sub_models: list[str] = attrs.field(factory=list)
    max_iterations: int = 0
    max_depth: int = 0
    max_root_tokens: int = 0
    max_sub_tokens: int = 0
    max_timeout: float | None = None
    context_type: str = ""
    context_chars: int = 0
    root_prompt: str | None = None
    system_prompt: str = ""
    rlm_core_version: str = ""
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = attrs.field(factory=dict)
    span_id: str = ""  # the run's span; a child run's parent span is the rlm_query sub-call
    parent_span_id: str | None = None
    max_cost: float | None = None
    max_llm_calls: int | None = None
    strategy: str | None = None  # the strategy's name, None when the run had none
    system_prompt_author: str = "engine"  # or "strategy:<name>", or "user" (custom_system_prompt)


@attrs.define
class SubCallRecord:
    """One ``llm_query``/``rlm_query``/tool call made from REPL code; child RLM calls nest."""

    call_id: str
    function: str
    depth: int
    model: str = ""
    prompt: str = ""
    response: str = ""
    error: str | None = None
    usage: TokenUsage = attrs.field(factory=TokenUsage)
    duration: float = 0.0
    child_run_id: str | None = None
    child_iterations: int = 0
    children: list[SubCallRecord] = attrs.field(factory=list)
    span_id: str = ""
    parent_span_id: str | None = None  # the code cell, or the batch span of a batched slot
    batch_id: str | None = None  # the batch span, when this call is one slot of a batched call
    batch_index: int | None = None
    started_at: float = 0.0
    cost: float | None = None


@attrs.define
class CodeBlockRecord:
    """One code cell and what it did. ``author`` is ``"model"`` for a cell the root model wrote,
    ``"strategy:<name>"`` for one a strategy ran for it. ``final_source`` says how the cell finished
    (``final``, ``final_var``, ``answer_dict``), when it did."""

    code: str
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final_answer: str | None = None
    duration: float = 0.0
    timed_out: bool = False
    subcalls: list[SubCallRecord] = attrs.field(factory=list)
    span_id: str = ""
    started_at: float = 0.0
    author: str = "model"
    final_source: str | None = None


@attrs.define
class ActionRecord:
    """One action a strategy took during an iteration (``rlm_core.guidance.strategy``)."""

    strategy: str
    action: str  # tell | run_code | accept_answer | ask_for_final | cap_call | cap_output
    detail: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class IterationRecord:
    """One turn of the root loop. ``new_messages`` holds only what was added since the last turn."""

    run_id: str
    iteration: int
    depth: int = 0
    new_messages: list[Message] = attrs.field(factory=list)
    response: str = ""
    code_blocks: list[CodeBlockRecord] = attrs.field(factory=list)
    final_answer: str | None = None
    notes: list[str] = attrs.field(factory=list)  # the engine's own notes (plain facts) this turn
    root_usage: TokenUsage = attrs.field(factory=TokenUsage)
    sub_usage: TokenUsage = attrs.field(factory=TokenUsage)
    duration: float = 0.0
    timestamp: float = 0.0
    span_id: str = ""
    parent_span_id: str | None = None  # the run's span
    calls: list[CallOutcome] = attrs.field(factory=list)  # this run's model calls during the turn
    actions: list[ActionRecord] = attrs.field(factory=list)  # what a strategy did this turn
    answer_source: str | None = None  # set on the turn that ended with an answer
