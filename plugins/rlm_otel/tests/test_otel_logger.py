"""The ``otel`` logger traces one RLM's runs into its own provider, and the process-wide observer
then leaves those runs alone: each completion is traced once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otel_runs import FAN_OUT_SHAPE, FAN_OUT_TURNS, make_rlm, scripted
from otel_spantree import roots, shape
from rlm_otel.logger import OtelLogger
from rlm_otel.observer import CLAIMED

from rlm_core.testing import LoopbackLLMServer


@pytest.fixture
def own() -> tuple[TracerProvider, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider, spans


def test_the_logger_traces_its_rlm_into_its_provider_and_nothing_twice(
    server: LoopbackLLMServer,
    exporter: InMemorySpanExporter,
    own: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = own
    server.reset()
    server.set_replies(scripted(FAN_OUT_TURNS))
    with make_rlm(
        server, max_depth=2, logger=OtelLogger(tracer_provider=provider, capture_content=True)
    ) as rlm:
        rlm.completion("context")
    mine = list(spans.get_finished_spans())
    (root,) = roots(mine)
    assert shape(mine, root) == FAN_OUT_SHAPE
    assert any("gen_ai.input.messages" in (s.attributes or {}) for s in mine), "the logger's own switch"
    assert exporter.get_finished_spans() == (), "the process-wide observer left the run to the logger"
    assert set() == CLAIMED
    # Another RLM without the logger is traced by the process-wide observer as before.
    with make_rlm(server, max_depth=2) as rlm:
        rlm.completion("context")
    assert len(roots(list(exporter.get_finished_spans()))) == 1
    assert len(spans.get_finished_spans()) == len(mine)


def test_the_logger_is_registered_by_name(server: LoopbackLLMServer, exporter: InMemorySpanExporter) -> None:
    server.reset()
    server.set_replies(scripted(FAN_OUT_TURNS))
    with make_rlm(server, max_depth=2, logger="otel") as rlm:  # no provider of its own: the process's
        assert isinstance(rlm.loggers[0], OtelLogger)
        rlm.completion("context")
    (root,) = roots(list(exporter.get_finished_spans()))
    assert shape(list(exporter.get_finished_spans()), root) == FAN_OUT_SHAPE


def test_rlm_plugins_shows_the_logger() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "rlm_core", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    otel = next(info for info in json.loads(listed.stdout) if info["distribution"] == "rlm-otel")
    assert otel["registered"] == {"loggers": ["otel"]}
