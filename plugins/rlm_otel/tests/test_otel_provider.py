"""Where the tracer comes from, and the cost when there is none: the plugin loads through its entry
point without importing OpenTelemetry, traces into the user's global provider, and does nothing
(imports nothing, keeps no span) when no provider and no OTLP endpoint are set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import rlm_otel
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from otel_runs import fan_out
from otel_subprocess import run_python

from rlm_core.testing import LoopbackLLMServer

TESTS = Path(__file__).parent


def test_rlm_plugins_lists_the_observer_from_its_entry_point() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "rlm_core", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    otel = next(info for info in json.loads(listed.stdout) if info["distribution"] == "rlm-otel")
    assert otel["error"] is None and otel["version"] == rlm_otel.__version__


def test_importing_and_discovering_the_plugin_imports_no_opentelemetry() -> None:
    loaded = run_python(
        """
        import sys
        import rlm_otel
        from rlm_core.plugins import get_registry
        registry = get_registry()
        registry.ensure_loaded()
        assert "otel" in {info.name for info in registry.infos.values()}, registry.infos
        assert registry.has_observers()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert loaded.strip() == "[]"


def test_without_a_provider_a_whole_run_imports_no_opentelemetry_and_keeps_no_span() -> None:
    seen = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        import rlm_otel
        from otel_runs import fan_out
        from rlm_core.testing import LoopbackLLMServer

        with LoopbackLLMServer() as server:
            fan_out(server)
        observer = rlm_otel._observer
        assert observer is not None, "the observer saw the run's events"
        print(len(observer.table.open), sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert seen.strip() == "0 []"


def test_the_users_global_tracer_provider_receives_the_spans() -> None:
    counted = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from otel_runs import FAN_OUT_SPANS, fan_out
        from rlm_core.testing import LoopbackLLMServer

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("the-users-app")
        with LoopbackLLMServer() as server, tracer.start_as_current_span("handle request") as outer:
            fan_out(server)
        spans = exporter.get_finished_spans()
        (run,) = [s for s in spans if s.name == "invoke_agent rlm" and s.attributes["rlm.depth"] == 0]
        # The completion nests under the span that was current when it started.
        assert run.parent is not None and run.parent.span_id == outer.get_span_context().span_id
        print(len(spans) - 1 == FAN_OUT_SPANS)
        """
    )
    assert counted.strip() == "True"


def test_a_no_op_global_provider_turns_tracing_off_even_with_an_otlp_endpoint() -> None:
    seen = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from opentelemetry import trace
        import rlm_otel
        from otel_runs import fan_out
        from rlm_core.testing import LoopbackLLMServer

        trace.set_tracer_provider(trace.NoOpTracerProvider())
        with LoopbackLLMServer() as server:
            fan_out(server)
        print(len(rlm_otel._observer.table.open), "opentelemetry.sdk" in sys.modules)
        """,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert seen.strip() == "0 False"


def test_no_provider_in_this_process_means_no_spans(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter
) -> None:
    rlm_otel.configure(tracer_provider=None)  # back to the global provider: none is set here
    fan_out(server)
    assert exporter.get_finished_spans() == ()
    assert rlm_otel._observer is not None and rlm_otel._observer.table.open == {}


def test_otel_sdk_disabled_turns_even_a_configured_provider_off(
    server: LoopbackLLMServer, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    fan_out(server)
    assert exporter.get_finished_spans() == ()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    fan_out(server)
    assert exporter.get_finished_spans()


def test_a_completion_the_sampler_drops_keeps_no_span(server: LoopbackLLMServer) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    rlm_otel.configure(tracer_provider=provider)
    fan_out(server)
    assert spans.get_finished_spans() == ()
    assert rlm_otel._observer is not None and rlm_otel._observer.table.open == {}
