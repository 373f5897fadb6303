"""Secrets never appear in the client's repr, its attributes' reprs, errors, events or logs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from bedrock_secrets import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN
from rlm_bedrock.client import BedrockClient
from rlm_bedrock.testing import FakeBedrock

from rlm_core import RLM, RLMLogger
from rlm_core.errors import ProviderError
from rlm_core.types import LMRequest, Message

API_KEY = "ABSK" + "TESTONLY" + "bedrockapikey0123456789"
SECRETS = (SECRET_ACCESS_KEY, SESSION_TOKEN, API_KEY)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_repr_str_and_attributes_hide_the_secrets(make_client: Callable[..., BedrockClient]) -> None:
    for client in (
        make_client(aws_session_token=SESSION_TOKEN),
        BedrockClient("m", region_name="us-east-1", api_key=API_KEY),
    ):
        _assert_clean(repr(client) + str(client) + repr(vars(client)))


def test_an_error_that_echoes_a_secret_is_scrubbed(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(aws_session_token=SESSION_TOKEN)
    fake = FakeBedrock().install(client.boto3_client)
    fake.fail_next(
        code="ValidationException", status=400, message=f"bad header {SESSION_TOKEN} / {SECRET_ACCESS_KEY}"
    )
    with pytest.raises(ProviderError) as caught:
        client.complete(LMRequest([Message("user", "x")]))
    _assert_clean(str(caught.value))
    assert "[redacted]" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_secret_in_the_environment_is_scrubbed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", API_KEY)
    client = BedrockClient(
        "amazon.nova-lite-v1:0", region_name="us-east-1", retries={"total_max_attempts": 1}
    )
    fake = FakeBedrock().install(client.boto3_client)
    fake.fail_next(code="UnrecognizedClientException", status=403, message=f"invalid token {API_KEY}")
    with pytest.raises(ProviderError, match="rejected or have expired") as caught:
        client.complete(LMRequest([Message("user", "x")]))
    _assert_clean(str(caught.value))
    assert fake.requests[0].headers["Authorization"] == f"Bearer {API_KEY}"  # botocore's own env support


def test_events_and_the_jsonl_log_of_a_failed_run_hold_no_secret(tmp_path: Path) -> None:
    backend_kwargs = {"model_name": "us.amazon.nova-pro-v1:0", "region_name": "us-east-1",
                      "aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": SECRET_ACCESS_KEY,
                      "aws_session_token": SESSION_TOKEN, "retries": {"total_max_attempts": 1}}  # fmt: skip
    with RLM(backend="bedrock", backend_kwargs=backend_kwargs, logger=RLMLogger(log_dir=str(tmp_path)),
             max_iterations=2) as rlm:  # fmt: skip
        (client,) = rlm.clients.clients.values()
        fake = FakeBedrock().install(client.boto3_client)
        fake.fail_next(5, code="ThrottlingException", status=429, message=f"slow down {SECRET_ACCESS_KEY}")
        result = rlm.completion("context")
    assert result.error and "throttled" in result.error
    _assert_clean(result.error)
    logs = list(tmp_path.glob("*.jsonl"))
    assert logs, "the run wrote its log"
    text = "".join(path.read_text() for path in logs)
    assert "ThrottlingException" in text
    _assert_clean(text)
    for line in text.splitlines():
        json.loads(line)
