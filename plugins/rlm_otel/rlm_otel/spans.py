"""The open spans of traced completions, keyed by the engine's span ids: starting a span under its
parent's, ending it at the event's time, and the per-completion state (tracer, content switch,
which backend serves which client) every span of one completion tree shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from rlm_otel.content import ContentWriter


def nanoseconds(timestamp: float) -> int:
    """An event's wall-clock time (``time.time()`` seconds) as OpenTelemetry's nanoseconds."""
    return int(timestamp * 1e9)


@attrs.define(slots=True, eq=False)
class OTel:
    """The few OpenTelemetry API names the observer needs, imported once, when a run is traced."""

    set_span_in_context: Any
    get_current: Any
    internal: Any
    client: Any
    status: Any
    error: Any

    @classmethod
    def load(cls) -> OTel:
        from opentelemetry import context, trace

        return cls(
            set_span_in_context=trace.set_span_in_context,
            get_current=context.get_current,
            internal=trace.SpanKind.INTERNAL,
            client=trace.SpanKind.CLIENT,
            status=trace.Status,
            error=trace.StatusCode.ERROR,
        )


@attrs.define(slots=True, eq=False)
class Tree:
    """One completion tree: the root run, its iterations, calls and child runs."""

    tracer: Any
    otel: OTel
    content: ContentWriter | None  # None: content is not captured
    backends: dict[str, str]  # configured client name (or model name) -> backend name
    root_backend: str
    open_ids: set[str] = attrs.field(factory=set)

    def backend_of(self, client: str) -> str:
        backend = self.backends.get(client)
        if backend is not None:
            return backend
        prefix, colon, _ = client.partition(":")  # "backend:model" when two backends share a model
        return prefix if colon else self.root_backend


@attrs.define(slots=True, eq=False)
class PendingChat:
    """A finished model call whose span waits for its content (prompt and reply reach the observer
    only with the iteration or sub-call that made the call)."""

    span: Any
    end_time: int
    purpose: str
    failed: bool
    finish_reason: str


@attrs.define(slots=True, eq=False)
class OpenSpan:
    span: Any
    tree: Tree
    run_id: str
    max_tokens: int | None = None  # a model call's output cap
    waits: bool = False  # an iteration or sub-call whose model calls wait for its content
    pending: list[PendingChat] | None = None  # model calls waiting for this span's content
    run: RunContent | None = None  # a run's content state, when content is captured


@attrs.define(slots=True, eq=False)
class RunContent:
    """What a run's root calls were sent so far, kept only when content is captured: each call's
    prompt is the history the engine sent it (events carry only what each turn added)."""

    system_prompt: str
    root_prompt: str | None
    history: list[tuple[str, str]] = attrs.field(factory=list)  # redacted
    system_instructions: str | None = None  # the system prompt as the attribute, made once


class SpanTable:
    """Open spans by engine span id. Events of one completion come from its own event loop, so a
    plain dict (whose single operations are atomic) serves several completions in threads."""

    def __init__(self) -> None:
        self.open: dict[str, OpenSpan] = {}

    def start(
        self,
        span_id: str,
        name: str,
        tree: Tree,
        run_id: str,
        attributes: dict[str, Any],
        timestamp: float,
        parent: OpenSpan | None,
        *,
        client: bool = False,
    ) -> OpenSpan:
        otel = tree.otel
        context = otel.set_span_in_context(parent.span) if parent is not None else otel.get_current()
        span = tree.tracer.start_span(
            name,
            context=context,
            kind=otel.client if client else otel.internal,
            attributes=attributes,
            start_time=nanoseconds(timestamp),
        )
        entry = OpenSpan(span, tree, run_id)
        self.open[span_id] = entry
        tree.open_ids.add(span_id)
        return entry

    def pop(self, span_id: str) -> OpenSpan | None:
        entry = self.open.pop(span_id, None)
        if entry is not None:
            entry.tree.open_ids.discard(span_id)
        return entry

    def end_leftovers(self, tree: Tree, run_id: str | None, end_time: int) -> None:
        """End the spans of a run (``None``: of the whole tree, when its root run ends) that ended
        without their end events (a cancelled cell), so no span of a finished run stays open."""
        leftovers = [
            span_id
            for span_id in list(tree.open_ids)
            if (entry := self.open.get(span_id)) is not None and run_id in (None, entry.run_id)
        ]
        for span_id in leftovers:
            left = self.pop(span_id)
            if left is not None:
                flush_pending(left)
                left.span.set_attribute("rlm.incomplete", True)
                left.span.end(end_time=end_time)


def set_error(entry: OpenSpan, description: str) -> None:
    otel = entry.tree.otel
    entry.span.set_status(otel.status(otel.error, description))


def flush_pending(entry: OpenSpan) -> None:
    """End the model-call spans still waiting under ``entry`` (without content)."""
    for chat in entry.pending or ():
        chat.span.end(end_time=chat.end_time)
    entry.pending = None
