"""Span names and attributes for each kind of run event: the OpenTelemetry GenAI semantic
conventions (``gen_ai.*``) where they name the thing, ``rlm.*`` for what only an RLM has."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlm_core.redact import redact_text

Attributes = dict[str, Any]

# GenAI semantic conventions
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name, still read by many back ends
AGENT_NAME = "gen_ai.agent.name"
AGENT_ID = "gen_ai.agent.id"
CONVERSATION_ID = "gen_ai.conversation.id"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
RESPONSE_MODEL = "gen_ai.response.model"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"

AGENT = "rlm"
REPL_TOOL = "repl"

# The conventions' provider names for rlm-core's backend names; others pass through as they are.
PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
}


def provider_name(backend: str) -> str:
    return PROVIDER_NAMES.get(backend, backend or "unknown")


def _present(attributes: Attributes) -> Attributes:
    """OpenTelemetry takes no None values: leave those out."""
    return {key: value for key, value in attributes.items() if value is not None}


def error_type(error: str) -> str:
    """The exception class an engine error names: its first line's (``"ProviderError: ..."``), or a
    traceback's last line's (``"ZeroDivisionError: division by zero"``); ``"error"`` when neither."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    for line in lines[:1] + lines[-1:]:
        head = line.split(":", 1)[0].strip()
        if head and all(part.isidentifier() for part in head.split(".")):
            return head
    return "error"


def error_description(error: str) -> str:
    return redact_text(error)[:1000]


# -- runs (the conventions' agent invocation) ----------------------------------------------------


RUN_NAME = f"invoke_agent {AGENT}"


def run_start(event: Any, metadata: Any, provider: str) -> Attributes:
    return _present(
        {
            OPERATION: "invoke_agent",
            AGENT_NAME: AGENT,
            AGENT_ID: event.run_id,
            CONVERSATION_ID: event.run_id if event.parent_run_id is None else None,
            PROVIDER: provider,
            SYSTEM: provider,
            REQUEST_MODEL: metadata.root_model,
            "rlm.run_id": event.run_id,
            "rlm.parent_run_id": event.parent_run_id,
            "rlm.depth": event.depth,
            "rlm.span_id": event.span_id,
            "rlm.backend": metadata.backend or None,
            "rlm.environment": metadata.environment or None,
            "rlm.sub_models": list(metadata.sub_models) or None,
            "rlm.strategy": metadata.strategy,
            "rlm.max_iterations": metadata.max_iterations,
            "rlm.max_depth": metadata.max_depth,
            "rlm.max_root_tokens": metadata.max_root_tokens,
            "rlm.max_sub_tokens": metadata.max_sub_tokens,
            "rlm.max_cost": metadata.max_cost,
            "rlm.context.type": metadata.context_type,
            "rlm.context.chars": metadata.context_chars,
            "rlm.core_version": metadata.rlm_core_version or None,
        }
    )


def run_end(result: Any) -> Attributes:
    total = result.usage_summary.total
    return _present(
        {
            INPUT_TOKENS: total.input_tokens,
            OUTPUT_TOKENS: total.output_tokens,
            "rlm.calls": total.calls,
            "rlm.cost": total.cost,
            "rlm.stop_reason": str(result.stop_reason),
            "rlm.answer_source": result.answer_source,
            "rlm.iterations": result.iterations,
            "rlm.root.input_tokens": result.usage_summary.tier_total("root").input_tokens,
            "rlm.root.output_tokens": result.usage_summary.tier_total("root").output_tokens,
            "rlm.sub.input_tokens": result.usage_summary.tier_total("sub").input_tokens,
            "rlm.sub.output_tokens": result.usage_summary.tier_total("sub").output_tokens,
        }
    )


# -- iterations ----------------------------------------------------------------------------------

ITERATION_NAME = "rlm.iteration"


def iteration_start(event: Any) -> Attributes:
    return {"rlm.iteration": event.payload.iteration, "rlm.depth": event.depth, "rlm.span_id": event.span_id}


def iteration_end(record: Any) -> Attributes:
    return _present(
        {
            "rlm.code_cells": len(record.code_blocks),
            "rlm.notes": len(record.notes),
            "rlm.model_calls": len(record.calls),
            "rlm.root.input_tokens": record.root_usage.input_tokens,
            "rlm.root.output_tokens": record.root_usage.output_tokens,
            "rlm.sub.input_tokens": record.sub_usage.input_tokens or None,
            "rlm.sub.output_tokens": record.sub_usage.output_tokens or None,
            "rlm.answer_source": record.answer_source,
            "rlm.final": record.final_answer is not None,
        }
    )


# -- code cells (the model's tool: the REPL) -----------------------------------------------------

CODE_NAME = f"execute_tool {REPL_TOOL}"


def code_start(event: Any) -> Attributes:
    return {
        OPERATION: "execute_tool",
        TOOL_NAME: REPL_TOOL,
        TOOL_TYPE: "function",
        "rlm.depth": event.depth,
        "rlm.span_id": event.span_id,
        "rlm.code.chars": len(event.payload.code),
    }


def code_end(result: Any) -> Attributes:
    return _present(
        {
            "rlm.code.stdout_chars": len(result.stdout),
            "rlm.code.stderr_chars": len(result.stderr),
            "rlm.code.timed_out": result.timed_out or None,
            "rlm.code.state_lost": result.state_lost or None,
            "rlm.code.final_source": result.final_source,
            ERROR_TYPE: error_type(result.error) if result.error else None,
        }
    )


# -- sub-calls and batches (llm_query / rlm_query from code) -------------------------------------


def subcall_name(function: str) -> str:
    return f"execute_tool {function}"


def subcall_start(event: Any) -> Attributes:
    payload = event.payload
    return _present(
        {
            OPERATION: "execute_tool",
            TOOL_NAME: payload.function,
            TOOL_TYPE: "function",
            TOOL_CALL_ID: payload.call_id,
            REQUEST_MODEL: payload.model or None,
            "rlm.depth": event.depth + 1,  # the call's depth: one below the run that made it
            "rlm.span_id": event.span_id,
            "rlm.batch.index": payload.batch_index,
        }
    )


def subcall_end(record: Any) -> Attributes:
    return _present(
        {
            INPUT_TOKENS: record.usage.input_tokens,
            OUTPUT_TOKENS: record.usage.output_tokens,
            "rlm.cost": record.cost,
            "rlm.child_run_id": record.child_run_id,
            "rlm.child_iterations": record.child_iterations or None,
            ERROR_TYPE: error_type(record.error) if record.error else None,
        }
    )


def batch_start(event: Any) -> Attributes:
    payload = event.payload
    return _present(
        {
            OPERATION: "execute_tool",
            TOOL_NAME: payload.function,
            TOOL_TYPE: "function",
            REQUEST_MODEL: payload.model or None,
            "rlm.depth": event.depth + 1,
            "rlm.span_id": event.span_id,
            "rlm.batch.size": payload.size,
        }
    )


def batch_end(payload: Any) -> Attributes:
    return {"rlm.batch.failed": payload.failed}


# -- model calls (the conventions' inference span) -----------------------------------------------


def model_call_name(model: str) -> str:
    return f"chat {model}"


def model_call_start(event: Any, provider: str) -> Attributes:
    payload = event.payload
    return {
        OPERATION: "chat",
        PROVIDER: provider,
        SYSTEM: provider,
        REQUEST_MODEL: payload.model,
        REQUEST_MAX_TOKENS: payload.max_tokens,
        "rlm.client": payload.client,
        "rlm.tier": payload.tier,
        "rlm.purpose": payload.purpose,
        "rlm.depth": event.depth,
        "rlm.run_id": event.run_id,
        "rlm.span_id": event.span_id,
    }


def finish_reason(payload: Any, max_tokens: int | None) -> tuple[str, bool]:
    """The call's finish reason and whether it was inferred: the provider's when the event carries
    one; else "error" for a failed call, "length" when the output reached its cap, "stop" otherwise."""
    outcome = payload.outcome
    given = getattr(payload, "finish_reason", None) or getattr(outcome, "finish_reason", None)
    if given:
        return str(given), False
    if payload.error or outcome.error:
        return "error", True
    if max_tokens and outcome.usage.output_tokens >= max_tokens:
        return "length", True
    return "stop", True


def model_call_end(payload: Any, max_tokens: int | None) -> Attributes:
    outcome = payload.outcome
    reason, inferred = finish_reason(payload, max_tokens)
    failed = payload.error or outcome.error
    return _present(
        {
            RESPONSE_MODEL: outcome.model or payload.model,
            INPUT_TOKENS: outcome.usage.input_tokens,
            OUTPUT_TOKENS: outcome.usage.output_tokens,
            FINISH_REASONS: [reason],
            "rlm.finish_reason_inferred": inferred or None,
            "rlm.cost": outcome.cost,
            "rlm.usage_estimated": outcome.usage_estimated or None,
            "rlm.cached": outcome.cached or None,
            ERROR_TYPE: error_type(failed) if failed else None,
        }
    )


# -- strategy actions (span events on the iteration) ---------------------------------------------

STRATEGY_EVENT = "rlm.strategy_action"


def strategy_action(payload: Any) -> Attributes:
    return {
        "rlm.strategy": payload.strategy,
        "rlm.strategy.action": str(payload.action.get("action", "")),
        "rlm.iteration": payload.iteration,
    }
