"""rlm-otel: every rlm-core run as OpenTelemetry spans, following the GenAI semantic conventions.

The plugin is one ``rlm_on_event`` observer (every run in the process) and the ``otel`` logger
(``RLM(logger="otel")``: one RLM's runs, into a provider of its own if given one). Importing it
imports neither the OpenTelemetry API nor its SDK: the observer is built at the first event, and a
run is traced only when a tracer provider is there (the user's global one, one given to
``configure``, or one built from ``OTEL_EXPORTER_OTLP_*``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rlm_core import hookimpl
from rlm_otel.settings import configure

if TYPE_CHECKING:
    from rlm_core.events import RunEvent
    from rlm_otel.observer import SpanObserver

__version__ = "0.2.0"
__all__ = ["__version__", "configure", "force_flush", "rlm_on_event", "rlm_register_loggers"]

_observer: SpanObserver | None = None


def _get_observer() -> SpanObserver:
    global _observer
    if _observer is None:
        from rlm_otel.observer import SpanObserver

        _observer = SpanObserver()
    return _observer


@hookimpl
def rlm_on_event(event: RunEvent) -> None:
    (_observer or _get_observer()).on_event(event)


def _otel_logger(**kwargs: Any) -> Any:
    from rlm_otel.logger import OtelLogger

    return OtelLogger(**kwargs)


@hookimpl
def rlm_register_loggers(register: Callable[..., Any]) -> None:
    register("otel", _otel_logger)


def force_flush(timeout_millis: int = 30_000) -> bool:
    """Export the spans still buffered by the provider rlm-otel traces with (when it has a
    ``force_flush``, as the SDK's has): call it before a short-lived process ends if you cannot
    rely on the SDK's own flush at exit. True when there was nothing to flush or the flush finished."""
    from rlm_otel.provider import flush

    return flush(timeout_millis)
