"""Keeps the Bedrock tests off any real AWS setup: no credentials, config files or instance metadata."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bedrock_secrets import ACCESS_KEY_ID, MODEL, SECRET_ACCESS_KEY
from rlm_bedrock.client import BedrockClient

_AWS_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK", "AWS_BEDROCK_API_KEY", "AWS_BEDROCK_REGION",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An AWS setup with nothing in it; returns the (empty) config file path tests may fill."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    # The credential chain would otherwise ask the instance metadata service over the network.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return config


@pytest.fixture
def make_client() -> Callable[..., BedrockClient]:
    """A BedrockClient with explicit test keys in us-east-1, no retries; keywords override."""

    def make(**kwargs: Any) -> BedrockClient:
        settings: dict[str, Any] = {
            "model_name": MODEL,
            "region_name": "us-east-1",
            "aws_access_key_id": ACCESS_KEY_ID,
            "aws_secret_access_key": SECRET_ACCESS_KEY,
            "retries": {"total_max_attempts": 1},
            **kwargs,
        }
        return BedrockClient(**settings)

    return make
