"""Every Bedrock failure a user meets becomes a ProviderError that says what to do."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bedrock_secrets import SECRET_ACCESS_KEY
from botocore.stub import Stubber
from rlm_bedrock.client import BedrockClient

from rlm_core.errors import ProviderError
from rlm_core.types import LMRequest, Message

REQUEST = LMRequest([Message("user", "hello")], max_tokens=16)

CASES = [
    ("ThrottlingException", 429, "Too many requests, please wait before trying again.", True,
     ["Slow down", "Service Quotas", "max_attempts", "adaptive"]),
    ("AccessDeniedException", 403,
     "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: bedrock:InvokeModel", False,
     ["bedrock:InvokeModel", "IAM"]),
    ("AccessDeniedException", 403, "You don't have access to the model with the specified model ID.", False,
     ["Model access", "us-east-1", "inference profile"]),
    ("ResourceNotFoundException", 404, "Model not found.", False,
     ["list-foundation-models --region us-east-1", "Model access", "inference profile"]),
    ("ValidationException", 400,
     "Invocation of model ID anthropic.claude-x with on-demand throughput isn't supported.", False,
     ["inference profile", "'us.<model id>'"]),
    ("ValidationException", 400, "The provided model identifier is invalid.", False, ["Check model_name"]),
    ("ValidationException", 400, "Input is too long for requested model.", False,
     ["Input is too long", "context window"]),
    ("UnrecognizedClientException", 403, "The security token included in the request is invalid.", False,
     ["AWS_ACCESS_KEY_ID", "profile_name"]),
    ("ServiceUnavailableException", 503, "Service unavailable", True, ["try again later"]),
]  # fmt: skip


@pytest.mark.parametrize(("code", "status", "message", "retryable", "hints"), CASES)
def test_service_errors_say_what_to_do(
    make_client: Callable[..., BedrockClient],
    code: str,
    status: int,
    message: str,
    retryable: bool,
    hints: list[str],
) -> None:
    client = make_client()
    with Stubber(client.boto3_client) as stub:
        stub.add_client_error(
            "converse", service_error_code=code, service_message=message, http_status_code=status
        )
        with pytest.raises(ProviderError) as caught:
            client.complete(REQUEST)
    error = caught.value
    assert (error.client, error.model, error.retryable) == ("bedrock", client.model_name, retryable)
    text = str(error)
    assert code in text and message.rstrip(".") in text
    for hint in hints:
        assert hint in text
    assert SECRET_ACCESS_KEY not in text


def test_streaming_access_denied_names_the_streaming_permission(
    make_client: Callable[..., BedrockClient],
) -> None:
    client = make_client(stream=True)
    with Stubber(client.boto3_client) as stub:
        stub.add_client_error(
            "converse_stream", "AccessDeniedException", "not authorized", http_status_code=403
        )
        with pytest.raises(ProviderError, match="bedrock:InvokeModelWithResponseStream"):
            client.complete(REQUEST)


def test_throttling_message_counts_botocores_attempts(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(retries={"max_attempts": 7, "mode": "adaptive"})
    with Stubber(client.boto3_client) as stub:
        stub.add_client_error("converse", "ThrottlingException", "slow", http_status_code=429)
        with pytest.raises(ProviderError, match="after 8 attempts by botocore"):
            client.complete(REQUEST)


def test_no_credentials_names_the_variables_to_set() -> None:
    client = BedrockClient("amazon.nova-micro-v1:0", region_name="eu-west-1")
    with pytest.raises(ProviderError) as caught:
        client.complete(REQUEST)
    text = str(caught.value)
    for hint in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "profile_name", "api_key"):
        assert hint in text
    assert caught.value.retryable is False


def test_a_cut_off_stream_is_a_retryable_provider_error(make_client: Callable[..., BedrockClient]) -> None:
    from botocore.awsrequest import AWSResponse
    from rlm_bedrock.testing import stream_frames

    client = make_client(stream=True)

    class Body:
        def stream(self, **kwargs: object) -> list[bytes]:
            return [stream_frames("partial reply", 3, 2, cut_after=2)]

        def close(self) -> None:
            return None

    def send(request: object, **kwargs: object) -> AWSResponse:
        return AWSResponse("https://x/converse-stream", 200, {}, Body())

    client.boto3_client.meta.events.register("before-send.bedrock-runtime.ConverseStream", send)
    with pytest.raises(ProviderError, match="messageStop") as caught:
        client.complete(REQUEST)
    assert caught.value.retryable is True


def _botocore_failures() -> list[tuple[Exception, bool, str]]:
    from botocore import exceptions as bx

    return [
        (bx.NoRegionError(), False, "AWS_REGION"),
        (bx.NoCredentialsError(), False, "AWS_SECRET_ACCESS_KEY"),
        (bx.ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"), True, "read_timeout"),
        (bx.ConnectTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com"), True, "connect_timeout"),
        (bx.EndpointConnectionError(endpoint_url="https://bedrock-runtime.xx-nowhere-1.amazonaws.com"), True, "region_name"),
        (bx.ParamValidationError(report="Invalid type for parameter inferenceConfig.topP"), False, "topP"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "retryable", "hint"), _botocore_failures(), ids=lambda value: type(value).__name__
)
def test_botocore_failures_say_what_to_do(exc: Exception, retryable: bool, hint: str) -> None:
    from rlm_bedrock.errors import translate_error

    error = translate_error(
        exc, model="amazon.nova-pro-v1:0", region="us-east-1", streaming=False, attempts=5
    )
    assert isinstance(error, ProviderError)
    assert error.retryable is retryable and error.client == "bedrock"
    assert hint in str(error)


def test_anything_else_is_left_alone() -> None:
    from rlm_bedrock.errors import translate_error

    assert translate_error(KeyError("x"), model="m", region=None, streaming=False, attempts=None) is None
