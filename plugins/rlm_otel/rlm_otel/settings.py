"""rlm-otel's settings: the plugin's own (``configure``) and the OpenTelemetry environment variables
it reads, each read when a completion starts so a change applies to the next run."""

from __future__ import annotations

import os
from typing import Any

import attrs

# The GenAI semantic conventions' content-capture switch, and this plugin's own name for it.
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
PLUGIN_CAPTURE_ENV = "RLM_OTEL_CAPTURE_CONTENT"
# "true" is the switch's classic value; the newer conventions spell where content goes.
_ON = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})

_UNSET: Any = object()


@attrs.define
class Settings:
    """What ``configure`` set; None means "not set here: ask the environment"."""

    tracer_provider: Any = None
    capture_content: bool | None = None


SETTINGS = Settings()


def configure(*, tracer_provider: Any = _UNSET, capture_content: bool | None = _UNSET) -> None:
    """Set rlm-otel's own settings for this process (each applies from the next completion on).

    ``tracer_provider``: the provider to trace with, instead of the global one (None: back to the
    global one, then to the ``OTEL_EXPORTER_OTLP_*`` variables). ``capture_content``: True records
    prompts, completions and code (redacted) on the spans, False never does, None follows
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (off unless set).
    """
    if tracer_provider is not _UNSET:
        SETTINGS.tracer_provider = tracer_provider
    if capture_content is not _UNSET:
        SETTINGS.capture_content = capture_content


def capture_content() -> bool:
    """Whether prompts, completions and code go on spans: opt-in, off by default."""
    if SETTINGS.capture_content is not None:
        return SETTINGS.capture_content
    for name in (PLUGIN_CAPTURE_ENV, CAPTURE_ENV):
        value = os.environ.get(name)
        if value is not None and value.strip():
            return value.strip().lower() in _ON
    return False


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true`` turns every OpenTelemetry SDK off, this plugin's provider too."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_configured() -> bool:
    """Whether the environment asks for OTLP export of traces (an endpoint is set, and the traces
    exporter is not turned off)."""
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if "otlp" not in {e.strip() for e in exporters.split(",")}:
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
