"""Content for model-call spans (when captured): a root call's prompt is the run's history so far
plus what its iteration added, its reply the iteration's response; a sub-call's model call gets the
sub-call's prompt and answer. Both reach the observer only when the iteration or sub-call ends."""

from __future__ import annotations

from typing import Any

from rlm_otel.content import INPUT_MESSAGES, OUTPUT_MESSAGES, SYSTEM_INSTRUCTIONS, ContentWriter, prompt_pairs
from rlm_otel.spans import PendingChat, RunContent


def attach_root(
    writer: ContentWriter, pending: list[PendingChat], record: Any, run: RunContent | None
) -> None:
    """``record`` is the iteration's ``IterationRecord``; ``run`` the run's content so far (its
    history is kept redacted, so each turn redacts only what is new)."""
    roots = [chat for chat in pending if chat.purpose == "root"]
    if not roots:
        return
    history = [
        *(run.history if run is not None else ()),
        *writer.pairs((m.role, m.content) for m in record.new_messages),
    ]
    shared = {INPUT_MESSAGES: writer.input_messages(history)}
    if run is not None and run.system_prompt:
        if run.system_instructions is None:
            run.system_instructions = writer.system_instructions(run.system_prompt)
        shared[SYSTEM_INSTRUCTIONS] = run.system_instructions
    for chat in roots:
        chat.span.set_attributes(shared)
    answered = [chat for chat in roots if not chat.failed]
    if answered and record.response:
        last = answered[-1]
        last.span.set_attribute(OUTPUT_MESSAGES, writer.output_message(record.response, last.finish_reason))
        history.append(("assistant", writer.redact(record.response)))
    if run is not None:
        run.history = history


def attach_sub(writer: ContentWriter, pending: list[PendingChat], record: Any) -> None:
    """``record`` is the sub-call's ``SubCallRecord``: its prompt and its answer as text."""
    prompt = writer.input_messages(writer.pairs(prompt_pairs(record.prompt)))
    for chat in pending:
        chat.span.set_attribute(INPUT_MESSAGES, prompt)
    answered = [chat for chat in pending if not chat.failed]
    if answered and record.error is None:
        last = answered[-1]
        last.span.set_attribute(OUTPUT_MESSAGES, writer.output_message(record.response, last.finish_reason))
