"""Trajectory records: what a run did, iteration by iteration. Loggers serialise these with cattrs."""

from __future__ import annotations

from typing import Any

import attrs

from rlm_core.types import Message, TokenUsage

SCHEMA_VERSION = 1


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


@attrs.define
class CodeBlockRecord:
    """One code cell the root model wrote, and what it did."""

    code: str
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final_answer: str | None = None
    duration: float = 0.0
    timed_out: bool = False
    subcalls: list[SubCallRecord] = attrs.field(factory=list)


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
    notes: list[str] = attrs.field(factory=list)  # engine guidance sent back to the model
    root_usage: TokenUsage = attrs.field(factory=TokenUsage)
    sub_usage: TokenUsage = attrs.field(factory=TokenUsage)
    duration: float = 0.0
    timestamp: float = 0.0
