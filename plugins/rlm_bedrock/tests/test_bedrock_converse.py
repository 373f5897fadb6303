"""Converse through botocore's Stubber: the request we build, the reply and usage we read back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber
from rlm_bedrock.client import BedrockClient

from rlm_core.clients.base import Price
from rlm_core.types import LMRequest, Message, TokenUsage


def _reply(text: str, input_tokens: int = 11, output_tokens: int = 3, **usage: int) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                  "totalTokens": input_tokens + output_tokens, **usage},
        "metrics": {"latencyMs": 12},
    }  # fmt: skip


def test_system_prompt_turns_and_inference_config_reach_converse(
    make_client: Callable[..., BedrockClient],
) -> None:
    client = make_client(
        temperature=0.2, top_p=0.9, stop_sequences=["END"], additional_model_request_fields={"top_k": 5}
    )
    request = LMRequest(
        [Message("system", "Be terse."), Message("user", "Hi"), Message("user", "there"),
         Message("assistant", "Hello"), Message("user", "Sum 2+2")],
        max_tokens=64,
    )  # fmt: skip
    expected = {
        "modelId": client.model_name,
        "system": [{"text": "Be terse."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}, {"text": "there"}]},
            {"role": "assistant", "content": [{"text": "Hello"}]},
            {"role": "user", "content": [{"text": "Sum 2+2"}]},
        ],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "additionalModelRequestFields": {"top_k": 5},
    }
    with Stubber(client.boto3_client) as stub:
        stub.add_response("converse", _reply("4", 20, 1), expected)
        response = client.complete(request)
        stub.assert_no_pending_responses()
    assert response.text == "4"
    assert response.usage == TokenUsage(20, 1)
    assert response.finish_reason == "end_turn"
    assert response.model == client.model_name


def test_request_max_tokens_wins_over_the_client_default(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(max_tokens=1000)
    assert client.converse_params(LMRequest([Message("user", "x")], max_tokens=7))["inferenceConfig"] == {
        "maxTokens": 7
    }
    assert client.converse_params(LMRequest([Message("user", "x")]))["inferenceConfig"] == {"maxTokens": 1000}
    assert "inferenceConfig" not in make_client().converse_params(LMRequest([Message("user", "x")]))


def test_a_conversation_opening_with_the_assistant_gets_a_user_turn(
    make_client: Callable[..., BedrockClient],
) -> None:
    params = make_client().converse_params(LMRequest([Message("assistant", "earlier"), Message("user", "")]))
    assert params["messages"][0]["role"] == "user"
    assert [m["role"] for m in params["messages"]] == ["user", "assistant", "user"]
    assert all(block["text"].strip() for m in params["messages"] for block in m["content"])
    assert "system" not in params


def test_usage_counts_cache_tokens_as_input_and_prices_the_call(
    make_client: Callable[..., BedrockClient],
) -> None:
    client = make_client(price=(2.0, 10.0))
    with Stubber(client.boto3_client) as stub:
        stub.add_response(
            "converse", _reply("ok", 100, 50, cacheReadInputTokens=400, cacheWriteInputTokens=500)
        )
        response = client.complete(LMRequest([Message("user", "x")]))
    assert response.usage == TokenUsage(1000, 50)
    assert client.price == Price(2.0, 10.0)
    assert response.cost == pytest.approx((1000 * 2.0 + 50 * 10.0) / 1e6)


async def test_acomplete_reads_the_same_reply(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client()
    with Stubber(client.boto3_client) as stub:
        stub.add_response("converse", _reply("async", 5, 2))
        response = await client.acomplete(LMRequest([Message("user", "x")]))
    assert (response.text, response.usage) == ("async", TokenUsage(5, 2))
    client.close()
