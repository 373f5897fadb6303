"""End to end, configured the OpenTelemetry way: a fresh process with only OTEL_EXPORTER_OTLP_ENDPOINT
and OTEL_SERVICE_NAME set runs the fan-out completion against a loopback model server; its spans
arrive over OTLP/HTTP at a receiver on 127.0.0.1, which decodes the protobuf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rlm_otel
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otel_receiver import OTLPReceiver, as_dict
from otel_runs import FAN_OUT_SHAPE, FAN_OUT_SPANS, ROOT, SUB
from otel_subprocess import run_python

TESTS = Path(__file__).parent

FAN_OUT_PROGRAM = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from otel_runs import fan_out
from rlm_core.testing import LoopbackLLMServer

with LoopbackLLMServer() as server:
    print(fan_out(server).run_id)
"""  # the SDK exports what is left when the interpreter exits: the program never flushes


def _shape(spans: list[Span], span: Span) -> Any:
    below = sorted(
        (s for s in spans if s.parent_span_id == span.span_id), key=lambda s: s.start_time_unix_nano
    )
    return (span.name, [_shape(spans, child) for child in below])


def test_spans_reach_an_otlp_http_receiver_with_the_service_name_and_the_tree() -> None:
    with OTLPReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "rlm-otel-e2e"}
        run_id = run_python(FAN_OUT_PROGRAM, env).strip()
        spans = receiver.wait_for_spans(FAN_OUT_SPANS)
        requests = list(receiver.requests)
    assert len(spans) == FAN_OUT_SPANS
    assert {h.get("content-type") for h in receiver.headers} == {"application/x-protobuf"}
    for request in requests:
        for resource_spans in request.resource_spans:
            assert as_dict(resource_spans.resource.attributes)["service.name"] == "rlm-otel-e2e"
            for scope_spans in resource_spans.scope_spans:
                assert (scope_spans.scope.name, scope_spans.scope.version) == (
                    "rlm_otel",
                    rlm_otel.__version__,
                )
    (root,) = [s for s in spans if not s.parent_span_id]
    assert _shape(spans, root) == FAN_OUT_SHAPE
    assert len({s.trace_id for s in spans}) == 1
    root_attributes = as_dict(root.attributes)
    assert root_attributes["rlm.run_id"] == run_id
    assert root_attributes["rlm.stop_reason"] == "final"
    assert root_attributes["gen_ai.operation.name"] == "invoke_agent"
    chats = [as_dict(s.attributes) for s in spans if s.name.startswith("chat ")]
    assert {c["gen_ai.request.model"] for c in chats} == {ROOT, SUB}
    assert all(c["gen_ai.provider.name"] == "openai" and c["gen_ai.usage.input_tokens"] > 0 for c in chats)
    assert all(c["gen_ai.response.finish_reasons"] == ("stop",) for c in chats)
    assert all(s.kind == Span.SpanKind.SPAN_KIND_CLIENT for s in spans if s.name.startswith("chat "))
    assert not [key for c in chats for key in c if key.startswith("gen_ai.input")], "content is opt-in"
