"""The ``otel`` logger: ``RLM(logger="otel")`` or ``RLM(logger=OtelLogger(tracer_provider=...))``
traces the runs of that one RLM, into its own tracer provider when given one (else the process's).
The process-wide observer then leaves those runs to it, so nothing is traced twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm_core.events import RunEvent


class OtelLogger:
    """``tracer_provider``: where this RLM's spans go (None: ``configure``'s, the global one, or the
    ``OTEL_EXPORTER_OTLP_*`` variables, as for every run). ``capture_content``: True or False for
    this RLM, None to follow the process's switch."""

    def __init__(self, tracer_provider: Any = None, capture_content: bool | None = None) -> None:
        from rlm_otel.observer import SpanObserver

        self.tracer_provider = tracer_provider
        self._observer = SpanObserver(tracer_provider, capture_content, claims=True)

    def on_event(self, event: RunEvent) -> None:
        self._observer.on_event(event)

    def close(self) -> None:
        """Export what this logger's own provider still buffers (a shared provider is left alone)."""
        force_flush = getattr(self.tracer_provider, "force_flush", None)
        if force_flush is not None:
            force_flush()
