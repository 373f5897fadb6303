"""What a run's log says about it when it starts (``RunMetadata``): its models and tiers, its limits,
its context's shape, its question, its system prompt and who wrote it, its strategy, its place in
the span tree, and the caller's labels (``extra``: e.g. which key and profile of ``rlm serve``)."""

from __future__ import annotations

import time
from typing import Any, Protocol

from rlm_core._version import __version__
from rlm_core.records import RunMetadata
from rlm_core.redact import redact

# The settings a run's log names in its metadata, as they are.
SETTINGS_IN_METADATA = (
    "backend",
    "environment",
    *("max_iterations", "max_depth", "max_root_tokens", "max_sub_tokens", "max_timeout"),
    *("max_cost", "max_llm_calls"),
)


class DescribedRun(Protocol):
    """What the metadata is read from (``engine.run.Run`` provides it)."""

    run_id: str
    span_id: str
    parent_span_id: str | None
    parent_run_id: str | None
    depth: int
    root_model: str
    context: Any
    root_prompt: str | None
    strategy: Any
    settings: Any
    broker: Any
    labels: dict[str, Any]


def run_metadata(run: DescribedRun, system: str, system_author: str) -> RunMetadata:
    clients = run.broker.clients
    context = run.context
    return RunMetadata(
        run_id=run.run_id,
        root_model=run.root_model,
        started_at=time.time(),
        depth=run.depth,
        parent_run_id=run.parent_run_id,
        other_backends=[clients.backends.get(name, "") for name in clients.tiers[1:]],
        sub_models=[getattr(clients.clients[n], "model_name", n) for n in clients.tiers[1:]],
        context_type=type(context).__name__,
        context_chars=len(context) if isinstance(context, (str, list, dict)) else 0,
        root_prompt=run.root_prompt,
        system_prompt=system,
        rlm_core_version=__version__,
        span_id=run.span_id,
        parent_span_id=run.parent_span_id,
        strategy=run.strategy.name if run.strategy is not None else None,
        system_prompt_author=system_author,
        extra=dict(redact(run.labels)) if run.labels else {},
        **{name: getattr(run.settings, name) for name in SETTINGS_IN_METADATA},
    )
