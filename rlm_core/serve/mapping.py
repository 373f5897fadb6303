"""A chat completion request to an RLM completion, and its result back to the OpenAI shapes.

The rule (docs/serve.md):

- the last message must be the user's: it is the question, ``root_prompt``; the texts of
  ``system``/``developer`` messages go before it, as instructions;
- the context, ``prompt``, is the request's ``context`` (extra body: a string, list or object, kept
  as is) when given; else the earlier user/assistant messages as a transcript of ``role: text``
  blocks; else (a single user message) that message itself, with only the instructions (if any) as
  ``root_prompt``: the model finds the question inside the context;
- ``rlm`` (extra body) may lower the profile's limits for this request: ``max_root_tokens``,
  ``max_sub_tokens``, ``max_cost``, ``max_iterations``, ``max_llm_calls``, ``max_timeout``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import attrs

from rlm_core.redact import redact, redact_text
from rlm_core.serve.errors import ApiError
from rlm_core.types import RLMChatCompletion, StopReason

OVERRIDABLE = (
    "max_root_tokens",
    "max_sub_tokens",
    "max_cost",
    "max_iterations",
    "max_llm_calls",
    "max_timeout",
)
_INSTRUCTION_ROLES = ("system", "developer")
_DIALOGUE_ROLES = ("user", "assistant")
_UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "audio", "prediction")
STREAM_PIECE_CHARS = 512  # the answer goes out as content deltas of at most this many characters


@attrs.define(frozen=True)
class CompletionInput:
    model: str
    prompt: Any
    root_prompt: str | None
    stream: bool = False
    include_usage: bool = False
    overrides: dict[str, Any] = attrs.field(factory=dict)


def _bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param=param, code=code)


def _text(content: Any, index: int) -> str:
    """A message's text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise _bad(
                    f"messages[{index}]: only text content is supported, got a {kind!r} part", "messages"
                )
        return "".join(texts)
    if content is None:
        return ""
    raise _bad(f"messages[{index}].content must be a string or a list of text parts", "messages")


def parse_request(body: Any) -> CompletionInput:
    """Check a ``/v1/chat/completions`` body and apply the mapping rule."""
    if not isinstance(body, Mapping):
        raise _bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: the name of a profile (GET /v1/models lists them)", "model")
    for name in _UNSUPPORTED:
        if body.get(name):
            raise _bad(f"'{name}' is not supported by an RLM service", name)
    n = body.get("n", 1)
    if n not in (1, None):
        raise _bad("only n=1 is supported", "n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list", "messages")
    instructions: list[str] = []
    dialogue: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise _bad(f"messages[{index}] must be an object with role and content", "messages")
        role = message.get("role")
        text = _text(message.get("content"), index)
        if role in _INSTRUCTION_ROLES:
            instructions.append(text)
        elif role in _DIALOGUE_ROLES:
            dialogue.append((str(role), text))
        else:
            raise _bad(
                f"messages[{index}]: role {role!r} is not supported (system, developer, user, assistant)",
                "messages",
            )
    if not dialogue or dialogue[-1][0] != "user":
        raise _bad("the last user/assistant message must be the user's: it is the question", "messages")
    question = dialogue[-1][1]
    earlier = dialogue[:-1]
    has_context = "context" in body and body["context"] is not None
    if has_context and earlier:
        raise _bad(
            "give the context either as 'context' or as earlier messages, not both "
            "(the earlier messages would otherwise be lost)",
            "context",
        )
    if has_context:
        prompt: Any = body["context"]
        root_prompt: str | None = "\n\n".join([*instructions, question])
    elif earlier:
        prompt = "\n\n".join(f"{role}: {text}" for role, text in earlier)
        root_prompt = "\n\n".join([*instructions, question])
    else:
        prompt = question
        root_prompt = "\n\n".join(instructions) or None
    options = body.get("stream_options") or {}
    return CompletionInput(
        model=model,
        prompt=prompt,
        root_prompt=root_prompt,
        stream=bool(body.get("stream")),
        include_usage=isinstance(options, Mapping) and bool(options.get("include_usage")),
        overrides=_overrides(body.get("rlm")),
    )


def _overrides(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad("'rlm' must be an object of limits, e.g. {\"max_iterations\": 5}", "rlm")
    unknown = sorted(set(value) - set(OVERRIDABLE))
    if unknown:
        raise _bad(f"'rlm' may set only {', '.join(OVERRIDABLE)}; got {', '.join(unknown)}", "rlm")
    return dict(value)


# -- the result back ------------------------------------------------------------------------------


def finish_reason(result: RLMChatCompletion) -> str:
    return "stop" if result.stop_reason in (StopReason.FINAL, StopReason.STRATEGY) else "length"


def usage_of(result: RLMChatCompletion | None) -> dict[str, int]:
    total = result.usage_summary.total if result is not None else None
    prompt = total.input_tokens if total else 0
    completion = total.output_tokens if total else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def extension(result: RLMChatCompletion | None, log_path: str | None) -> dict[str, Any]:
    """The ``rlm`` object of a response: what the run did, beyond the OpenAI fields."""
    if result is None:
        return {"run_id": None, "stop_reason": "cancelled", "log_path": log_path}
    summary = result.usage_summary
    payload = {
        "run_id": result.run_id,
        "stop_reason": result.stop_reason.value,
        "answer_source": result.answer_source,
        "iterations": result.iterations,
        "execution_time": result.execution_time,
        "error": result.error,
        "usage": summary.to_dict(),
        "cost": summary.total.cost,
        "log_path": log_path,
    }
    return dict(redact(payload))


def completion_id(result: RLMChatCompletion | None) -> str:
    return f"chatcmpl-{result.run_id}" if result is not None and result.run_id else "chatcmpl-rlm"


def answer_text(result: RLMChatCompletion | None) -> str:
    return redact_text(result.response or "") if result is not None else ""


def completion_body(model: str, result: RLMChatCompletion, log_path: str | None) -> dict[str, Any]:
    return {
        "id": completion_id(result),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer_text(result), "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage_of(result),
        "rlm": extension(result, log_path),
    }


def sse(payload: Mapping[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


KEEPALIVE = b": keep-alive\n\n"


def chunk(
    ident: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def final_chunks(
    ident: str, model: str, created: int, result: RLMChatCompletion, log_path: str | None, include_usage: bool
) -> list[bytes]:
    """The end of a stream: the answer as content deltas, the finish (with the ``rlm`` object), the
    usage chunk when asked for, and ``[DONE]``."""
    text = answer_text(result)
    out = [
        sse(chunk(ident, model, created, {"content": text[i : i + STREAM_PIECE_CHARS]}))
        for i in range(0, len(text), STREAM_PIECE_CHARS)
    ]
    last = chunk(ident, model, created, {}, finish_reason(result))
    last["rlm"] = extension(result, log_path)
    out.append(sse(last))
    if include_usage:
        out.append(sse({**chunk(ident, model, created, {}), "choices": [], "usage": usage_of(result)}))
    out.append(sse("[DONE]"))
    return out
