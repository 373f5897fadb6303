"""Turns run events into spans: each start event opens a span under its parent's, each end event
closes it. A completion is traced only when a tracer is there at its start; every other event then
costs one dictionary look-up (its parent or its own span is not open)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlm_core.events import EventKind, RunEvent
from rlm_otel import attributes as attrs_
from rlm_otel import chat_content, provider, settings
from rlm_otel.content import ContentWriter
from rlm_otel.spans import (
    OpenSpan,
    OTel,
    PendingChat,
    RunContent,
    SpanTable,
    Tree,
    flush_pending,
    nanoseconds,
    set_error,
)

# Root span ids of the completions an ``otel`` logger traces: the process-wide observer, which sees
# each event after the loggers do, leaves those to it rather than tracing them twice.
CLAIMED: set[str] = set()


class SpanObserver:
    """``tracer_provider`` and ``capture_content`` override the process settings (the logger's);
    ``claims`` makes this observer take the completions it traces away from the process-wide one."""

    def __init__(
        self, tracer_provider: Any = None, capture_content: bool | None = None, *, claims: bool = False
    ) -> None:
        self.table = SpanTable()
        self._otel: OTel | None = None
        self._provider = tracer_provider
        self._capture = capture_content
        self._claims = claims
        self._handlers: dict[EventKind, Callable[[RunEvent], None]] = {
            EventKind.RUN_START: self._run_start,
            EventKind.RUN_END: self._run_end,
            EventKind.ITERATION_START: self._iteration_start,
            EventKind.ITERATION_END: self._iteration_end,
            EventKind.CODE_START: self._code_start,
            EventKind.CODE_END: self._code_end,
            EventKind.SUBCALL_START: self._subcall_start,
            EventKind.SUBCALL_END: self._subcall_end,
            EventKind.BATCH_START: self._batch_start,
            EventKind.BATCH_END: self._batch_end,
            EventKind.LM_CALL_START: self._model_call_start,
            EventKind.LM_CALL_END: self._model_call_end,
            EventKind.STRATEGY_ACTION: self._strategy_action,
        }

    def on_event(self, event: RunEvent) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    # -- runs ------------------------------------------------------------------------------------

    def _new_tree(self, event: RunEvent) -> Tree | None:
        if not self._claims and event.span_id in CLAIMED:
            return None  # an otel logger traces this completion
        tracer = provider.resolve_tracer(self._provider)
        if tracer is None:
            return None
        if self._otel is None:
            self._otel = OTel.load()
        metadata = event.payload.metadata
        backends = {metadata.root_model: metadata.backend}
        backends.update(zip(metadata.sub_models, metadata.other_backends, strict=False))
        capture = settings.capture_content() if self._capture is None else self._capture
        writer = ContentWriter() if capture else None
        return Tree(tracer, self._otel, writer, backends, metadata.backend)

    def _run_start(self, event: RunEvent) -> None:
        parent = self.table.open.get(event.parent_span_id) if event.parent_span_id else None
        if parent is not None:
            tree = parent.tree
        elif event.parent_run_id is None:
            new = self._new_tree(event)
            if new is None:
                return
            tree = new
        else:
            return  # a child run of a completion that is not traced
        metadata = event.payload.metadata
        backend = attrs_.provider_name(metadata.backend)
        entry = self.table.start(
            event.span_id,
            attrs_.RUN_NAME,
            tree,
            event.run_id,
            attrs_.run_start(event, metadata, backend),
            event.timestamp,
            parent,
        )
        if parent is None and not entry.span.is_recording():
            # The sampler dropped this completion: its spans would record nothing, so keep none.
            self.table.pop(event.span_id)
            entry.span.end()
            return
        if parent is None and self._claims:
            CLAIMED.add(event.span_id)
        if tree.content is not None:
            entry.run = RunContent(metadata.system_prompt, metadata.root_prompt)

    def _run_end(self, event: RunEvent) -> None:
        entry = self.table.pop(event.span_id)
        if entry is None:
            return
        if self._claims and event.parent_run_id is None:
            CLAIMED.discard(event.span_id)  # the process-wide observer sees this end next: and skips it
        end_time = nanoseconds(event.timestamp)
        # A root run's end closes whatever its tree left open; a child run's, what it left.
        self.table.end_leftovers(entry.tree, event.run_id if event.parent_run_id else None, end_time)
        result = event.payload.result
        entry.span.set_attributes(attrs_.run_end(result))
        writer = entry.tree.content
        if writer is not None:
            root_prompt = entry.run.root_prompt if entry.run is not None else None
            entry.span.set_attributes(writer.run_end(result, root_prompt))
        if result.error:
            set_error(entry, attrs_.error_description(result.error))
        flush_pending(entry)
        entry.span.end(end_time=end_time)

    # -- spans under a run -------------------------------------------------------------------------

    def _child(
        self, event: RunEvent, name: str, attributes: dict[str, Any], *, client: bool = False
    ) -> OpenSpan | None:
        parent = self.table.open.get(event.parent_span_id) if event.parent_span_id else None
        if parent is None:
            return None
        return self.table.start(
            event.span_id, name, parent.tree, event.run_id, attributes, event.timestamp, parent, client=client
        )

    def _end(self, event: RunEvent, attributes: dict[str, Any], error: str | None = None) -> OpenSpan | None:
        entry = self.table.pop(event.span_id)
        if entry is None:
            return None
        entry.span.set_attributes(attributes)
        if error:
            set_error(entry, attrs_.error_description(error))
        return entry

    def _iteration_start(self, event: RunEvent) -> None:
        entry = self._child(event, attrs_.ITERATION_NAME, attrs_.iteration_start(event))
        if entry is not None:
            entry.waits = entry.tree.content is not None

    def _iteration_end(self, event: RunEvent) -> None:
        record = event.payload.record
        entry = self._end(event, attrs_.iteration_end(record))
        if entry is None:
            return
        if entry.pending and entry.tree.content is not None:
            run = self.table.open.get(event.parent_span_id) if event.parent_span_id else None
            chat_content.attach_root(
                entry.tree.content, entry.pending, record, run.run if run is not None else None
            )
        flush_pending(entry)
        entry.span.end(end_time=nanoseconds(event.timestamp))

    def _code_start(self, event: RunEvent) -> None:
        entry = self._child(event, attrs_.CODE_NAME, attrs_.code_start(event))
        if entry is not None and entry.tree.content is not None:
            entry.span.set_attributes(entry.tree.content.code_cell_start(event.payload.code))

    def _code_end(self, event: RunEvent) -> None:
        result = event.payload.result
        entry = self._end(event, attrs_.code_end(result), result.error)
        if entry is None:
            return
        if entry.tree.content is not None:
            entry.span.set_attributes(entry.tree.content.code_cell_end(result))
        entry.span.end(end_time=nanoseconds(event.timestamp))

    def _subcall_start(self, event: RunEvent) -> None:
        entry = self._child(event, attrs_.subcall_name(event.payload.function), attrs_.subcall_start(event))
        if entry is not None:
            entry.waits = entry.tree.content is not None

    def _subcall_end(self, event: RunEvent) -> None:
        record = event.payload.record
        entry = self._end(event, attrs_.subcall_end(record), record.error)
        if entry is None:
            return
        writer = entry.tree.content
        if writer is not None:
            entry.span.set_attributes(writer.subcall(record))
            if entry.pending:
                chat_content.attach_sub(writer, entry.pending, record)
        flush_pending(entry)
        entry.span.end(end_time=nanoseconds(event.timestamp))

    def _batch_start(self, event: RunEvent) -> None:
        self._child(event, attrs_.subcall_name(event.payload.function), attrs_.batch_start(event))

    def _batch_end(self, event: RunEvent) -> None:
        payload = event.payload
        error = f"{payload.failed} of {payload.size} slots failed" if payload.failed else None
        entry = self._end(event, attrs_.batch_end(payload), error)
        if entry is not None:
            entry.span.end(end_time=nanoseconds(event.timestamp))

    # -- model calls -------------------------------------------------------------------------------

    def _model_call_start(self, event: RunEvent) -> None:
        parent = self.table.open.get(event.parent_span_id) if event.parent_span_id else None
        if parent is None:
            return
        payload = event.payload
        tree = parent.tree
        backend = attrs_.provider_name(tree.backend_of(payload.client))
        entry = self.table.start(
            event.span_id,
            attrs_.model_call_name(payload.model),
            tree,
            event.run_id,
            attrs_.model_call_start(event, backend),
            event.timestamp,
            parent,
            client=True,
        )
        entry.max_tokens = payload.max_tokens

    def _model_call_end(self, event: RunEvent) -> None:
        payload = event.payload
        entry = self.table.pop(event.span_id)
        if entry is None:
            return
        entry.span.set_attributes(attrs_.model_call_end(payload, entry.max_tokens))
        failed = payload.error or payload.outcome.error
        if failed:
            set_error(entry, attrs_.error_description(failed))
        end_time = nanoseconds(event.timestamp)
        parent = self.table.open.get(event.parent_span_id) if event.parent_span_id else None
        if parent is not None and parent.waits:
            # The prompt and the reply arrive with the parent's end: the span ends then, at this time.
            reason, _ = attrs_.finish_reason(payload, entry.max_tokens)
            chat = PendingChat(entry.span, end_time, payload.purpose, bool(failed), reason)
            parent.pending = [*(parent.pending or ()), chat]
            return
        entry.span.end(end_time=end_time)

    # -- strategy actions --------------------------------------------------------------------------

    def _strategy_action(self, event: RunEvent) -> None:
        parent = self.table.open.get(event.parent_span_id) if event.parent_span_id else None
        if parent is None:
            return
        parent.span.add_event(
            attrs_.STRATEGY_EVENT,
            attributes=attrs_.strategy_action(event.payload),
            timestamp=nanoseconds(event.timestamp),
        )
