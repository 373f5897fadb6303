"""A code cell: its scope while it runs, its record when it ends, and the output the model sees.

A run opens one ``CellScope`` per cell and closes it when the cell ends; ``HostCalls`` files each
sub-call under it (its parent span, its records) and marks the calls still in flight, so an
interrupted run can log the cell and the calls it was waiting for. Nothing else is shared between
the run loop and the host calls.
"""

from __future__ import annotations

import time

import attrs

from rlm_core.environments.base import ExecResult
from rlm_core.records import CodeBlockRecord, SubCallRecord


@attrs.define
class CellScope:
    """One code cell: its span (the parent of its sub-calls), its record while it runs, the
    sub-calls that ended (in the order they ended) and those still in flight."""

    span_id: str
    record: CodeBlockRecord
    subcalls: list[SubCallRecord] = attrs.field(factory=list)
    in_flight: dict[str, SubCallRecord] = attrs.field(factory=dict)

    def call_started(self, call: SubCallRecord) -> None:
        self.in_flight[call.span_id] = call

    def call_ended(self, call: SubCallRecord) -> None:
        self.in_flight.pop(call.span_id, None)
        self.subcalls.append(call)

    def interrupted(self) -> CodeBlockRecord:
        """The cell's record after the run was cancelled while it ran: the calls still in flight
        are added to it, each marked as interrupted."""
        block = self.record
        block.error = "interrupted: the run was cancelled while this cell ran"
        block.subcalls = [*self.subcalls]
        for call in self.in_flight.values():
            call.error = "interrupted: the run was cancelled while this call was in flight"
            call.duration = time.time() - call.started_at
            block.subcalls.append(call)
        return block


def block_record(code: str, result: ExecResult, subcalls: list[SubCallRecord]) -> CodeBlockRecord:
    """The record of a cell that ran, with the REPL's own notices (a restart, a restored name)
    added to its stderr, where the model reads them."""
    stderr = result.stderr
    if result.state_lost:
        stderr += "\n[the REPL was restarted: variables from earlier blocks are gone; context is reloaded]"
    if result.restored:
        names = ", ".join(result.restored)
        stderr += f"\n[{names} cannot be reassigned here and was restored; store results in new variables]"
    return CodeBlockRecord(
        code=code,
        stdout=result.stdout,
        stderr=stderr.strip("\n"),
        error=result.error,
        final_answer=result.final_answer,
        final_source=result.final_source if result.final_answer is not None else None,
        duration=result.duration,
        timed_out=result.timed_out,
        subcalls=subcalls,
    )


def shown_output(block: CodeBlockRecord, limit: int) -> str:
    """What the model is shown of a cell: stdout, stderr and the error, at most ``limit``
    characters (the start and the end kept, the middle said to be omitted)."""
    parts = [block.stdout]
    if block.stderr:
        parts.append(block.stderr)
    if block.error:
        parts.append(block.error)
    return truncate("\n".join(p.rstrip("\n") for p in parts if p), limit)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit:,} characters omitted ...]\n{text[-tail:]}"
