"""Fixtures for rlm-otel's tests: an in-memory span exporter the plugin traces into, a loopback
OpenAI-compatible server, and an environment free of the machine's OpenTelemetry settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import rlm_otel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rlm_core.testing import LoopbackLLMServer


@pytest.fixture(autouse=True)
def clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* or RLM_OTEL_* setting of the machine leaks into a test; the plugin's own settings
    are back to their defaults after each."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "RLM_OTEL_")):
            monkeypatch.delenv(name)
    yield
    rlm_otel.configure(tracer_provider=None, capture_content=None)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of every completion in the test, finished and exported synchronously."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    rlm_otel.configure(tracer_provider=provider)
    yield spans
    provider.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer() as running:
        yield running
