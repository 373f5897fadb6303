"""The code cell running now, as the host calls it makes see it.

A run opens one ``CellScope`` per cell and closes it when the cell ends; ``HostCalls`` files each
sub-call under it (its parent span, its records) and marks the calls still in flight, so an
interrupted run can log the cell and the calls it was waiting for. Nothing else is shared between
the run loop and the host calls.
"""

from __future__ import annotations

import time

import attrs

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
