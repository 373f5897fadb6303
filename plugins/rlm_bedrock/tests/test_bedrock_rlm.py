"""RLM(backend="bedrock") end to end over the fake Bedrock runtime: discovery, a two-turn run, usage."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bedrock_secrets import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from rlm_bedrock.client import BedrockClient
from rlm_bedrock.testing import FakeBedrock

from rlm_core import RLM

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def _rlm(**kwargs: Any) -> RLM:
    backend_kwargs = {"model_name": MODEL, "region_name": "us-east-1", "aws_access_key_id": ACCESS_KEY_ID,
                      "aws_secret_access_key": SECRET_ACCESS_KEY, "retries": {"total_max_attempts": 1}}  # fmt: skip
    return RLM(backend="bedrock", backend_kwargs=backend_kwargs, **kwargs)


def _only_client(rlm: RLM) -> BedrockClient:
    (client,) = rlm.clients.clients.values()
    assert isinstance(client, BedrockClient)
    return client


def test_rlm_plugins_lists_the_bedrock_client() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "rlm_core", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    bedrock = next(info for info in json.loads(listed.stdout) if info["distribution"] == "rlm-bedrock")
    assert bedrock["registered"]["clients"] == ["bedrock"] and not bedrock["error"]


def test_a_two_turn_run_with_a_sub_call_finishes_with_bedrock_usage() -> None:
    script = [
        "```repl\nn = context.count('needle')\nsub = llm_query('Say yes')\nprint(n, sub)\n```",
        "yes",
        "```repl\nFINAL(f'{n} needles, sub said {sub}')\n```",
    ]
    with _rlm(max_iterations=4) as rlm:
        client = _only_client(rlm)
        fake = FakeBedrock(script).install(client.boto3_client)
        result = rlm.completion("hay needle hay needle hay")
    assert result.ok, result.error
    assert result.response == "2 needles, sub said yes"
    assert [r.operation for r in fake.requests] == ["Converse"] * 3
    assert fake.requests[0].body["system"], "the engine's system prompt goes in Converse's system field"
    usage = result.usage_summary.to_dict()
    total = usage["total"]
    assert total["total_calls"] == 3
    assert (total["total_input_tokens"], total["total_output_tokens"]) == (
        fake.total_input_tokens,
        fake.total_output_tokens,
    )
    expected_cost = (fake.total_input_tokens * 3.0 + fake.total_output_tokens * 15.0) / 1e6
    assert abs(total["total_cost"] - expected_cost) < 1e-12


def test_a_failing_model_ends_the_run_with_a_readable_error() -> None:
    with _rlm(max_iterations=2) as rlm:
        fake = FakeBedrock().install(_only_client(rlm).boto3_client)
        fake.fail_next(
            10,
            code="AccessDeniedException",
            status=403,
            message="not authorized to perform: bedrock:InvokeModel",
        )
        result = rlm.completion("context")
    assert not result.ok
    assert result.error is not None and "bedrock:InvokeModel" in result.error
    assert SECRET_ACCESS_KEY not in result.error
