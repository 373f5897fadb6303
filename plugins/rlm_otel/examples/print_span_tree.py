"""Traces one RLM completion into your own tracer provider and prints the span tree.

Runs as it is, with no API key: the models are rlm-core's loopback OpenAI-compatible test server
on 127.0.0.1. Replace the server with your provider and the in-memory exporter with yours.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rlm_core import RLM
from rlm_core.testing import LoopbackLLMServer, repl

# Your application's tracer provider: rlm-otel traces into the global one once it is set.
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

# The root model asks two sub-calls in one batch, then finishes; the sub-model answers "ok".
replies = [repl("print(llm_query_batched(['first half', 'second half']))"), "ok", "ok", repl("FINAL('done')")]
with LoopbackLLMServer(replies) as server:
    connection = {"base_url": server.base_url, "api_key": "not-needed"}
    with RLM(
        backend="openai",
        backend_kwargs={"model_name": "root-model", **connection},
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": "sub-model", **connection}],
    ) as rlm:
        print("answer:", rlm.completion("a long document").response)

spans = exporter.get_finished_spans()


def show(span: ReadableSpan, indent: int = 0) -> None:
    tokens = span.attributes.get("gen_ai.usage.output_tokens") if span.attributes else None
    print("  " * indent + span.name + (f"  ({tokens} output tokens)" if tokens is not None else ""))
    below = [s for s in spans if s.parent and span.context and s.parent.span_id == span.context.span_id]
    for child in sorted(below, key=lambda s: s.start_time or 0):
        show(child, indent + 1)


for root in (s for s in spans if s.parent is None):
    show(root)
