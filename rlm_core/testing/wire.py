"""The OpenAI and Anthropic wire formats the loopback servers answer in: completions, messages,
their server-sent event streams and error bodies, shaped as the real SDKs parse them."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

STREAM_PIECES = 4  # a reply is streamed in up to this many deltas: enough to exercise accumulation


def reply(
    api: str,
    body: dict[str, Any],
    ident: int,
    model: str,
    text: str,
    truncated: bool,
    tokens: tuple[int, int],
    omit_usage: bool = False,
    alternatives: Sequence[tuple[str, float]] | None = None,
) -> tuple[bytes, str]:
    """The body and content type of a successful reply to ``body`` in ``api``'s format (plain or a
    stream, as the request asked). ``tokens`` is (input, output); ``omit_usage`` leaves usage out,
    as some servers do (the Anthropic stream format always carries usage fields: they are zeros)."""
    input_tokens, output_tokens = (0, 0) if omit_usage else tokens
    stream = bool(body.get("stream"))
    logprobs = openai_logprobs(alternatives) if alternatives is not None else None
    if api == "openai":
        finish = "length" if truncated else "stop"
        if stream:
            options = body.get("stream_options") or {}
            usage = isinstance(options, dict) and bool(options.get("include_usage")) and not omit_usage
            events = openai_stream(ident, model, text, finish, input_tokens, output_tokens, usage, logprobs)
            return events, EVENTS
        payload = openai_completion(ident, model, text, finish, input_tokens, output_tokens, logprobs)
    else:
        stop = "max_tokens" if truncated else "end_turn"
        if stream:
            return anthropic_stream(ident, model, text, stop, input_tokens, output_tokens), EVENTS
        payload = anthropic_message(ident, model, text, stop, input_tokens, output_tokens)
    if omit_usage:
        del payload["usage"]
    return json.dumps(payload).encode("utf-8"), "application/json"


EVENTS = "text/event-stream"


def openai_error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def anthropic_error(message: str, kind: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def pieces(text: str) -> list[str]:
    if not text:
        return []
    size = -(-len(text) // STREAM_PIECES)
    return [text[i : i + size] for i in range(0, len(text), size)]


def openai_logprobs(alternatives: Sequence[tuple[str, float]]) -> dict[str, Any]:
    """A Chat Completions ``logprobs`` object for a reply's first token: the most likely of
    ``alternatives`` as the chosen token, all of them as its ``top_logprobs``."""
    ranked = sorted(alternatives, key=lambda pair: -pair[1])
    options = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in ranked]
    chosen = options[0] if options else {"token": "", "logprob": 0.0, "bytes": []}
    return {"content": [{**chosen, "top_logprobs": options}], "refusal": None}


def openai_completion(
    ident: int,
    model: str,
    text: str,
    finish: str,
    input_tokens: int,
    output_tokens: int,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-loopback-{ident}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }


def openai_stream(
    ident: int,
    model: str,
    text: str,
    finish: str,
    input_tokens: int,
    output_tokens: int,
    include_usage: bool,
    logprobs: dict[str, Any] | None = None,
) -> bytes:
    base = {
        "id": f"chatcmpl-loopback-{ident}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": piece}, None) for piece in pieces(text)]
    deltas.append(({}, finish))
    chunks = [
        {
            **base,
            # The first content chunk carries the first token's log-probabilities, as providers send.
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": logprobs if i == 1 else None,
                    "finish_reason": reason,
                }
            ],
        }
        for i, (delta, reason) in enumerate(deltas)
    ]
    if include_usage:
        usage = {
            "prompt_tokens": input_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        chunks.append({**base, "choices": [], "usage": usage})
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode("utf-8")


def anthropic_message(
    ident: int, model: str, text: str, stop: str, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": f"msg_loopback_{ident}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def anthropic_stream(
    ident: int, model: str, text: str, stop: str, input_tokens: int, output_tokens: int
) -> bytes:
    start = anthropic_message(ident, model, "", stop, input_tokens, 0)
    start.update(content=[], stop_reason=None)
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        for piece in pieces(text)
    ]
    events += [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode("utf-8")
