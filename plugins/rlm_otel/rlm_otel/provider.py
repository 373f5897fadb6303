"""Which tracer a completion is traced with, if any: the one ``configure`` gave, else the global
provider the user set, else one built from the ``OTEL_EXPORTER_OTLP_*`` variables; none otherwise.

Nothing here imports OpenTelemetry until it is needed: when no module has imported the API, nobody
can have set a global provider, so the answer "no tracer" costs a dictionary look-up.
"""

from __future__ import annotations

import sys
import threading
import warnings
from typing import Any

from rlm_otel import settings

INSTRUMENTATION_NAME = "rlm_otel"
DEFAULT_SERVICE_NAME = "rlm"

_lock = threading.Lock()
_env_provider: Any = None  # the provider built from the environment, once per process
_cached: tuple[Any, Any] = (None, None)  # the last provider traced with, and its tracer


def resolve_tracer(own_provider: Any = None) -> Any:
    """The tracer for a completion that starts now, or None when nothing would receive its spans.
    ``own_provider`` (the ``otel`` logger's) comes before every other source."""
    global _cached
    if settings.sdk_disabled():
        return None
    provider = own_provider or settings.SETTINGS.tracer_provider or _global_provider()
    if provider is None:
        return None
    cached_provider, tracer = _cached
    if cached_provider is not provider:
        from rlm_otel import __version__

        tracer = provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        _cached = (provider, tracer)
    return tracer


def _global_provider() -> Any:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.NoOpTracerProvider):
            return None  # set on purpose: the user wants no tracing
        if not isinstance(provider, trace.ProxyTracerProvider):
            return provider
    if settings.otlp_configured():
        return _provider_from_environment()
    return None


def _provider_from_environment() -> Any:
    """An SDK provider exporting over OTLP/HTTP to the configured endpoint, built once. It is not
    made the global provider: tracing rlm-core must not change what the rest of the program does.
    The SDK flushes it when the interpreter exits."""
    global _env_provider
    with _lock:
        if _env_provider is None:
            _env_provider = _build_otlp_provider()
        return _env_provider


def _build_otlp_provider() -> Any:
    import os

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() and protocol.strip() != "http/protobuf":
        warnings.warn(
            f"rlm-otel exports OTLP over http/protobuf, not {protocol.strip()!r}; for another protocol, "
            "set a global tracer provider with that exporter and rlm-otel uses it",
            RuntimeWarning,
            stacklevel=2,
        )
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without either, the
    # service is named after the engine rather than "unknown_service".
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def flush(timeout_millis: int = 30_000) -> bool:
    """Flush the provider the last traced completion used, when it can be flushed."""
    provider = _cached[0]
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return True
    return bool(force_flush(timeout_millis))
