"""How the embedded server is spoken to: rlm-core's OpenAI client, except that an answer picked from
a list (a JSON object with one property whose schema is an ``enum``, which is what a typed
``llm_query(..., choices=[...])`` asks for) is constrained by a GBNF grammar of compact JSON.

llama.cpp's own JSON-schema grammar lets the model spend tokens on whitespace: ``{\\n  "answer":
"no"\\n}`` is 16 tokens, ``{"answer": "no"}`` is 8. Measured on 2 cores with Qwen2.5-Coder-1.5B on
yes/no classifications of customer messages: the compact form agreed with the labels on 30 of 39
(the schema grammar: 24 of 39) and on 49 of 50; a bare ``no`` without the JSON frame (2 tokens)
agreed on 36 of 41 where the schema grammar agreed on 41 of 41, so the frame stays.
"""

from __future__ import annotations

import json
from typing import Any

from rlm_core.clients.openai_client import OpenAIClient
from rlm_core.types import LMRequest


def choice_grammar(schema: dict[str, Any] | None) -> str | None:
    """A GBNF grammar whose only sentences are ``{"key": <choice>}`` in compact JSON, for an object
    schema with exactly one property, required, whose schema is an ``enum``; None for any other."""
    if not schema or schema.get("type") != "object":
        return None
    properties = schema.get("properties") or {}
    if len(properties) != 1:
        return None
    ((key, inner),) = properties.items()
    options = inner.get("enum") if isinstance(inner, dict) else None
    if not options or set(inner) - {"enum", "description", "title"} or schema.get("required") != [key]:
        return None
    # A JSON string literal is also a GBNF literal: both escape quotes, backslashes and control
    # characters the same way, so each JSON text is quoted once more to become a literal.
    literals = " | ".join(json.dumps(json.dumps(option)) for option in options)
    return f'root ::= {json.dumps("{" + json.dumps(key) + ": ")} ({literals}) "}}"'


class LlamaServerClient(OpenAIClient):
    """The OpenAI client, with a compact grammar for answers picked from a list."""

    def _params(self, request: LMRequest) -> dict[str, Any]:
        params = super()._params(request)
        grammar = choice_grammar(request.response_schema)
        if grammar is not None:
            params.pop("response_format", None)
            # Not a create() keyword: the SDK call sends it in the JSON body as it is.
            params["grammar"] = grammar
        return params
