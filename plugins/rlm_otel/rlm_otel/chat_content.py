"""Content for model-call spans (when captured): a root call's prompt is the run's history so far
plus what its iteration added, its reply the iteration's response; a sub-call's model call gets the
sub-call's prompt and answer. Both reach the observer only when the iteration or sub-call ends."""

from __future__ import annotations

from typing import Any

from rlm_otel import content
from rlm_otel.spans import PendingChat, RunContent


def attach_root(pending: list[PendingChat], record: Any, run: RunContent | None) -> None:
    """``record`` is the iteration's ``IterationRecord``; ``run`` the run's content so far."""
    roots = [chat for chat in pending if chat.purpose == "root"]
    if not roots:
        return
    history = [*(run.history if run is not None else ()), *((m.role, m.content) for m in record.new_messages)]
    shared = {content.INPUT_MESSAGES: content.input_messages(history)}
    if run is not None and run.system_prompt:
        shared[content.SYSTEM_INSTRUCTIONS] = content.system_instructions(run.system_prompt)
    for chat in roots:
        chat.span.set_attributes(shared)
    answered = [chat for chat in roots if not chat.failed]
    if answered and record.response:
        last = answered[-1]
        last.span.set_attribute(
            content.OUTPUT_MESSAGES, content.output_message(record.response, last.finish_reason)
        )
        history.append(("assistant", record.response))
    if run is not None:
        run.history = history


def attach_sub(pending: list[PendingChat], record: Any) -> None:
    """``record`` is the sub-call's ``SubCallRecord``: its prompt and its answer as text."""
    prompt = content.input_messages(content.prompt_pairs(record.prompt))
    for chat in pending:
        chat.span.set_attribute(content.INPUT_MESSAGES, prompt)
    answered = [chat for chat in pending if not chat.failed]
    if answered and record.error is None:
        last = answered[-1]
        last.span.set_attribute(
            content.OUTPUT_MESSAGES, content.output_message(record.response, last.finish_reason)
        )
