"""Construction: credentials, regions, profiles, retries, timeouts, pools; lazy import; bad keywords."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from bedrock_secrets import SESSION_TOKEN
from botocore.config import Config
from rlm_bedrock.client import DEFAULT_MAX_CONCURRENCY, BedrockClient
from rlm_bedrock.testing import FakeBedrock

from rlm_core.errors import ConfigurationError
from rlm_core.types import LMRequest, Message

REQUEST = LMRequest([Message("user", "hi")], max_tokens=8)


def test_importing_the_plugin_does_not_import_boto3() -> None:
    code = "import sys, rlm_bedrock; print('boto3' in sys.modules or 'botocore' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "False\n"
    )


def test_a_misspelt_keyword_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match=r"'regoin_name' \(Did you mean 'region_name'\?\)"):
        BedrockClient("amazon.nova-pro-v1:0", regoin_name="us-east-1")
    with pytest.raises(ConfigurationError, match="additional_model_request_fields"):
        BedrockClient("amazon.nova-pro-v1:0", region_name="us-east-1", top_k=5)


def test_a_model_is_required() -> None:
    with pytest.raises(ConfigurationError, match="model_name"):
        BedrockClient(region_name="us-east-1")


def test_no_region_anywhere_names_the_settings() -> None:
    with pytest.raises(ConfigurationError, match=r"AWS_REGION.*region_name"):
        BedrockClient("amazon.nova-pro-v1:0")


def test_region_comes_from_the_environment_then_the_upstream_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_BEDROCK_REGION", "ap-southeast-2")
    assert BedrockClient("amazon.nova-pro-v1:0").region_name == "ap-southeast-2"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert BedrockClient("amazon.nova-pro-v1:0").region_name == "eu-central-1"
    assert BedrockClient("amazon.nova-pro-v1:0", region_name="us-west-2").region_name == "us-west-2"


def test_a_named_profile_supplies_region_and_keys(isolated_aws: Path, tmp_path: Path) -> None:
    isolated_aws.write_text("[profile research]\nregion = eu-west-3\n")
    (tmp_path / "aws-credentials").write_text(
        "[research]\naws_access_key_id = AKIAPROFILEEXAMPLE\naws_secret_access_key = profilesecret0123456789\n"
    )
    client = BedrockClient("amazon.nova-pro-v1:0", profile_name="research")
    assert client.region_name == "eu-west-3"
    fake = FakeBedrock(["from the profile"]).install(client.boto3_client)
    assert client.complete(REQUEST).text == "from the profile"
    assert "Credential=AKIAPROFILEEXAMPLE/" in fake.requests[0].headers["Authorization"]
    assert "/eu-west-3/bedrock/" in fake.requests[0].headers["Authorization"]


def test_an_unknown_profile_lists_the_known_ones(isolated_aws: Path) -> None:
    isolated_aws.write_text("[profile research]\nregion = eu-west-3\n")
    with pytest.raises(ConfigurationError, match=r"'typo'.*profiles found: research"):
        BedrockClient("amazon.nova-pro-v1:0", profile_name="typo")


def test_explicit_keys_must_come_in_pairs_and_not_with_a_profile() -> None:
    with pytest.raises(ConfigurationError, match="together"):
        BedrockClient("m", region_name="us-east-1", aws_access_key_id="AKIAONLYEXAMPLE")
    with pytest.raises(ConfigurationError, match="either profile_name"):
        BedrockClient(
            "m", region_name="us-east-1", profile_name="p", aws_access_key_id="a", aws_secret_access_key="b"
        )


def test_a_session_token_is_sent_with_temporary_keys(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(aws_session_token=SESSION_TOKEN)
    fake = FakeBedrock(["ok"]).install(client.boto3_client)
    client.complete(REQUEST)
    assert fake.requests[0].headers["X-Amz-Security-Token"] == SESSION_TOKEN


@pytest.mark.parametrize("source", ["kwarg", "upstream-env"])
def test_a_bedrock_api_key_is_sent_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    key = "ABSK" + "TESTONLY" + "bedrockapikey0123456789"
    if source == "upstream-env":
        monkeypatch.setenv("AWS_BEDROCK_API_KEY", key)
    client = BedrockClient(
        "amazon.nova-pro-v1:0", region_name="us-east-1", api_key=key if source == "kwarg" else None
    )
    fake = FakeBedrock(["ok"]).install(client.boto3_client)
    assert client.complete(REQUEST).text == "ok"
    assert fake.requests[0].headers["Authorization"] == f"Bearer {key}"


def test_retries_timeouts_and_pool_size_reach_botocore(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(
        retries={"max_attempts": 9, "mode": "adaptive"},
        connect_timeout=3,
        read_timeout=700,
        max_concurrency=96,
    )
    config = client.boto3_client.meta.config
    # botocore stores max_attempts (retries) as total_max_attempts (the first try included)
    assert config.retries["mode"] == "adaptive" and config.retries["total_max_attempts"] == 10
    assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (3, 700, 96)


def test_defaults_suit_long_generations_and_concurrent_sub_calls(
    make_client: Callable[..., BedrockClient],
) -> None:
    config = make_client(retries=None).boto3_client.meta.config
    assert config.read_timeout == 300
    assert config.max_pool_connections == DEFAULT_MAX_CONCURRENCY > 10
    assert config.retries["mode"] == "standard"


def test_a_botocore_config_is_merged_over_ours(make_client: Callable[..., BedrockClient]) -> None:
    user = Config(retries={"total_max_attempts": 2, "mode": "legacy"}, read_timeout=30)
    config = make_client(config=user, max_concurrency=20).boto3_client.meta.config
    assert config.retries["mode"] == "legacy" and config.read_timeout == 30
    assert config.max_pool_connections == 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": {"attempts": 3}}, "retries must be a dict"),
        ({"retries": {"mode": "eager"}}, "retries\\['mode'\\]"),
        ({"retries": {"max_attempts": -1}}, "integer >= 0"),
        ({"config": {"read_timeout": 3}}, "botocore.config.Config"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"read_timeout": -5}, "read_timeout"),
        ({"price": "cheap"}, "price must be"),
    ],
)
def test_bad_settings_are_configuration_errors(
    make_client: Callable[..., BedrockClient], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_client(**kwargs)
