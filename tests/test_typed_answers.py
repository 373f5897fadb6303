"""Typed sub-call answers (``llm_query(..., choices=/schema=)``): the validator, the provider's
structured output through the real SDKs against the loopback servers, and the validated retry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rlm_core import RLM
from rlm_core.clients.anthropic_client import ANSWER_TOOL, AnthropicClient, _message_info
from rlm_core.clients.openai_client import OpenAIClient
from rlm_core.engine.typed_answers import TypedAnswerError, answer_spec, read_answer, validate
from rlm_core.testing import LoopbackLLMServer, ScriptedClient, pytest_plugin, repl
from rlm_core.types import LMRequest, Message

openai_server = pytest_plugin.openai_server
anthropic_server = pytest_plugin.anthropic_server

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


# -- the validator ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "schema", "problem"),
    [
        ({"name": "Ana", "age": 3}, PERSON, None),
        ({"name": "Ana"}, PERSON, "missing the required property 'age'"),
        ({"name": "Ana", "age": "3"}, PERSON, "answer.age must be of type integer"),
        ({"name": "Ana", "age": 3, "x": 1}, PERSON, "does not allow"),
        ([1, 2, 3], {"type": "array", "items": {"type": "integer"}}, None),
        ([1, "2"], {"type": "array", "items": {"type": "integer"}}, "answer[1] must be of type integer"),
        (True, {"type": "integer"}, "must be of type integer"),  # JSON booleans are not numbers
        (4.0, {"type": "integer"}, None),
        ("maybe", {"enum": ["yes", "no"]}, 'must be one of "yes", "no"'),
        (None, {"type": ["string", "null"]}, None),
    ],
)
def test_validate_names_the_first_problem(value: Any, schema: dict[str, Any], problem: str | None) -> None:
    found = validate(value, schema)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("choices", "schema", "message"),
    [
        (["a"], {"type": "string"}, "not both"),
        ([], None, "non-empty list"),
        ("yes", None, "non-empty list"),
        ([{"a": 1}], None, "strings or numbers"),
        (None, "integer", "JSON-schema dict"),
        (None, {"type": "string", "pattern": "x"}, "pattern"),
        (None, {"type": "decimal"}, "unknown type"),
    ],
)
def test_bad_arguments_are_clear_errors(choices: Any, schema: Any, message: str) -> None:
    with pytest.raises(TypedAnswerError, match=message):
        answer_spec(choices, schema)


def test_replies_are_read_from_json_wrapped_values_fences_and_bare_choices() -> None:
    spec = answer_spec(choices=["refund", "other"])
    assert spec is not None and spec.wire["properties"]["answer"] == {"enum": ["refund", "other"]}
    assert read_answer('{"answer": "refund"}', spec) == ("refund", None)
    assert read_answer("Refund.", spec) == ("refund", None)
    assert read_answer("The answer is: other", spec) == ("other", None)
    value, problem = read_answer("both", spec)
    assert value == "both" and problem is not None and "one of" in problem
    person = answer_spec(schema=PERSON)
    assert person is not None and not person.wrapped and person.wire == PERSON
    assert read_answer('```json\n{"name": "Ana", "age": 3}\n```', person) == ({"name": "Ana", "age": 3}, None)
    assert read_answer('Sure: {"name": "Ana", "age": 3} ok', person)[1] is None
    assert "not valid JSON" in (read_answer("no idea", person)[1] or "")


# -- providers' structured output --------------------------------------------------------------------


def test_openai_client_sends_a_json_schema_response_format(openai_server: LoopbackLLMServer) -> None:
    openai_server.set_replies(['{"answer": "no"}'])
    client = OpenAIClient(model_name="gpt-4o-mini", api_key="k", base_url=openai_server.base_url)
    spec = answer_spec(choices=["yes", "no"])
    assert spec is not None
    response = client.complete(LMRequest([Message("user", "Is it?")], response_schema=spec.wire))
    assert read_answer(response.text, spec) == ("no", None)
    sent = openai_server.requests[0]["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == spec.wire and sent["json_schema"]["strict"] is True
    # an open schema cannot use strict mode, and a plain request sends no response_format at all
    open_schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client.complete(LMRequest([Message("user", "x")], response_schema=open_schema))
    assert openai_server.requests[1]["response_format"]["json_schema"]["strict"] is False
    client.complete(LMRequest([Message("user", "x")]))
    assert "response_format" not in openai_server.requests[2]
    client.close()


def test_anthropic_client_forces_an_answer_tool(anthropic_server: LoopbackLLMServer) -> None:
    anthropic_server.set_replies(['{"name": "Ana", "age": 3}'])
    client = AnthropicClient(
        model_name="claude-haiku-4-5", api_key="k", base_url=anthropic_server.anthropic_base_url
    )
    client.complete(LMRequest([Message("user", "Who?")], response_schema=PERSON))
    body = anthropic_server.requests[0]
    assert body["tools"][0]["name"] == ANSWER_TOOL and body["tools"][0]["input_schema"] == PERSON
    assert body["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
    client.close()


def test_anthropic_tool_input_becomes_the_answer_text() -> None:
    # The loopback server answers in text only, so the tool_use path is checked on the real SDK's types.
    from anthropic.types import Message as SDKMessage

    message = SDKMessage.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [
                {"type": "tool_use", "id": "tu_1", "name": ANSWER_TOOL, "input": {"name": "Ana", "age": 3}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
    )
    info = _message_info(message)
    assert json.loads(info["text"]) == {"name": "Ana", "age": 3} and info["usage"].output_tokens == 5


# -- through a whole run ------------------------------------------------------------------------------


def test_llm_query_with_choices_returns_a_choice_through_structured_output(
    openai_server: LoopbackLLMServer,
) -> None:
    code = (
        'labels = llm_query_batched(["Review: great! Positive?", "Review: awful. Positive?"], '
        'choices=["yes", "no"])\n'
        'person = llm_query("Who wrote it?", schema=' + repr(PERSON) + ")\n"
        "print(labels, person['age'] + 1)"
    )
    root = ScriptedClient([repl(code), "FINAL(done)"], model_name="gpt-big")

    def reply(body: dict[str, Any]) -> str:
        schema = body["response_format"]["json_schema"]["schema"]
        if "name" in schema["properties"]:
            return '{"name": "Ana", "age": 41}'
        return '{"answer": "yes"}' if "great" in body["messages"][-1]["content"] else '{"answer": "no"}'

    openai_server.set_replies(reply)
    rlm = RLM(
        backend=root,
        other_backends=["openai"],
        other_backend_kwargs=[
            {"model_name": "gpt-4o-mini", "api_key": "k", "base_url": openai_server.base_url}
        ],
    )
    result = rlm.completion("some reviews", root_prompt="Which reviews are positive?")
    rlm.close()
    assert result.response == "done"
    feedback = root.requests[1].messages[-1].content
    assert "['yes', 'no'] 42" in feedback
    assert len(openai_server.requests) == 3  # no retries: structured output gave valid answers


def test_plain_text_provider_gets_one_corrective_retry_that_usage_counts() -> None:
    code = 'print(llm_query("Is the sky green?", choices=["yes", "no"]))'
    root = ScriptedClient([repl(code), "FINAL(done)"], model_name="gpt-big")
    sub = ScriptedClient(["It depends on the weather.", "no"], model_name="sub-model")
    result = RLM(backend=root, other_backends=[sub]).completion("x", root_prompt="q")
    assert "no" in root.requests[1].messages[-1].content.split("```output")[1]
    assert sub.calls == 2
    retry = sub.requests[1].messages
    assert retry[-2] == Message("assistant", "It depends on the weather.")
    assert 'must be one of "yes", "no"' in retry[-1].content
    assert result.usage_summary.tier_total("sub").calls == 2


def test_an_answer_still_wrong_after_the_retry_is_an_error_the_code_sees() -> None:
    code = (
        'out = llm_query_batched(["a?", "b?"], choices=["yes", "no"])\n'
        "print([o if o in ('yes', 'no') else o[:30] for o in out])\n"
        'print(llm_query("c?", schema={"type": "integer"}))'
    )
    root = ScriptedClient([repl(code), "FINAL(done)"], model_name="gpt-big")
    sub = ScriptedClient(lambda r: "yes" if r.messages[0].content.startswith("a?") else "perhaps")
    RLM(backend=root, other_backends=[sub]).completion("x", root_prompt="q")
    output = root.requests[1].messages[-1].content
    assert "['yes', 'Error: TypedAnswerError: the s']" in output
    assert "did not match the requested shape after one retry" in output
