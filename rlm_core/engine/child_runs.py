"""A child RLM: ``rlm_query`` below ``max_depth`` runs a whole run of its own, in an environment of
its own, on the prompt as its context; its usage, model and sub-calls are filed under the sub-call
that started it, and a child that failed fails that sub-call."""

from __future__ import annotations

from typing import Any, Protocol

from rlm_core.environments.base import Environment
from rlm_core.errors import RLMError
from rlm_core.records import SubCallRecord
from rlm_core.types import RLMChatCompletion, StopReason, TokenUsage


class ChildRun(Protocol):
    """What this needs of the child (``engine.run.Run`` provides it)."""

    run_id: str
    root_model: str
    all_subcalls: list[SubCallRecord]
    host_call: Any

    async def run(self) -> RLMChatCompletion: ...


async def run_child(
    child: ChildRun, environment: Environment, prompt: Any, record: SubCallRecord, tools: dict[str, Any]
) -> str:
    """Run ``child`` in ``environment`` (closed afterwards, whatever happens) and return its answer."""
    try:
        await environment.start(child.host_call, tools)
        await environment.load_context(0, prompt)
        result = await child.run()
    finally:
        await environment.close()
    record.child_run_id = child.run_id
    record.child_iterations = result.iterations
    record.model = child.root_model
    total = result.usage_summary.total
    record.usage = TokenUsage(total.input_tokens, total.output_tokens)
    record.cost = total.cost
    record.children = child.all_subcalls
    if result.stop_reason is StopReason.ERROR:
        raise RLMError(f"child RLM failed: {result.error}")
    return result.response
