"""Reading finished SDK spans as a tree: children by parent span id, and the tree as nested names."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """``parent``'s direct children, in start order."""
    assert parent.context is not None
    found = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return sorted(found, key=lambda s: s.start_time or 0)


def roots(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is None]


def shape(spans: list[ReadableSpan], span: ReadableSpan) -> Any:
    """The tree below ``span`` as ``(name, [children...])``, children in start order."""
    return (span.name, [shape(spans, child) for child in children(spans, span)])


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})
