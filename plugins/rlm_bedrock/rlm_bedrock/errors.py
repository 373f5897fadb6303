"""Bedrock and botocore failures turned into ProviderError messages that say what to do."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rlm_core.errors import ProviderError

__all__ = ["CREDENTIAL_HINT", "REGION_HINT", "translate_error"]

CREDENTIAL_HINT = (
    "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or "
    "AWS_PROFILE (run `aws sso login --profile NAME` for SSO profiles), or pass backend_kwargs "
    "profile_name=... or aws_access_key_id=.../aws_secret_access_key=...; a Bedrock API key goes in "
    "AWS_BEARER_TOKEN_BEDROCK or backend_kwargs api_key=..."
)
REGION_HINT = (
    "Set AWS_REGION (or AWS_DEFAULT_REGION), give the profile a region, or pass backend_kwargs "
    "region_name='us-east-1' (a region where the model is enabled)."
)
_THROTTLED = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "ServiceQuotaExceededException", "Throttling"}
)
_SERVER_SIDE = frozenset(
    {
        "InternalServerException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
        "ModelErrorException",
    }
)
_BAD_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)
_MAX_PROVIDER_TEXT = 400


def translate_error(
    exc: BaseException,
    *,
    model: str,
    region: str | None,
    streaming: bool,
    attempts: int | None,
    secrets: Iterable[str] = (),
) -> ProviderError | None:
    """A ProviderError for a botocore failure, ``None`` for anything else (re-raised as is).

    ``secrets`` are scrubbed from any text the service or botocore sent back.
    """
    from botocore import exceptions as bx

    scrub = _scrubber(secrets)
    who = f"bedrock model {model!r} in {region or 'no region'}"
    tries = f"after {attempts} attempts by botocore" if attempts else "after botocore's retries"

    def error(message: str, retryable: bool) -> ProviderError:
        return ProviderError(scrub(message), client="bedrock", model=model, retryable=retryable)

    if isinstance(exc, bx.ClientError):
        info = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        code = str(info.get("Code") or "")
        # Exceptions inside a ConverseStream carry the event member's name: "throttlingException".
        code = code[:1].upper() + code[1:]
        said = _clip(str(info.get("Message") or exc)).rstrip(".")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if exc.response else None
        return error(_client_error_text(who, code, said, status, streaming, tries, region), _retryable(code))
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.TokenRetrievalError):
        return error(f"{who}: no usable AWS credentials were found ({exc}). {CREDENTIAL_HINT}", False)
    if isinstance(exc, bx.NoRegionError):
        return error(f"bedrock model {model!r}: no AWS region is configured. {REGION_HINT}", False)
    if isinstance(exc, bx.ReadTimeoutError | bx.ConnectTimeoutError):
        return error(
            f"{who}: the request timed out ({_clip(str(exc))}) {tries}. Raise backend_kwargs "
            "read_timeout=... / connect_timeout=... (seconds), or lower max_tokens for long replies.",
            True,
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError | bx.HTTPClientError):
        return error(
            f"{who}: could not reach the Bedrock endpoint ({_clip(str(exc))}) {tries}. Check the network, "
            "proxy settings, and that region_name is a region where Bedrock runs.",
            True,
        )
    if isinstance(exc, bx.ParamValidationError):
        return error(
            f"{who}: botocore rejected the request before sending it: {_clip(str(exc))}. Check the "
            "backend_kwargs that go into the request (additional_model_request_fields, stop_sequences).",
            False,
        )
    if isinstance(exc, bx.BotoCoreError):
        return error(f"{who}: botocore failed: {_clip(str(exc))}", False)
    return None


def _client_error_text(
    who: str, code: str, said: str, status: Any, streaming: bool, tries: str, region: str | None
) -> str:
    head = f"{who}: {code or 'error'}" + (f" (HTTP {status})" if status else "") + f": {said}"
    lowered = said.lower()
    if code in _THROTTLED:
        return (
            f"{head}, still throttled {tries}. Slow down (lower max_concurrency or the number of "
            "concurrent sub-calls), request a higher on-demand quota for this model in Service Quotas, "
            "use a cross-region inference profile (us./eu./apac./global. prefix) to spread load, or raise "
            "retries={'max_attempts': ..., 'mode': 'adaptive'}."
        )
    if code == "AccessDeniedException":
        if "access to the model" in lowered or "model access" in lowered:
            return f"{head}. {_enable_model_hint(region)}"
        action = "bedrock:InvokeModelWithResponseStream" if streaming else "bedrock:InvokeModel"
        return (
            f"{head}. The caller's IAM identity needs permission {action} on this model (for an inference "
            "profile: on the profile and on the foundation model in each region it routes to). "
            f"{_enable_model_hint(region)}"
        )
    if code == "ResourceNotFoundException":
        return (
            f"{head}. Check model_name against `aws bedrock list-foundation-models --region {region or 'REGION'}`; "
            f"{_enable_model_hint(region)}"
        )
    if code == "ValidationException":
        if "inference profile" in lowered or "on-demand throughput" in lowered:
            return (
                f"{head}. This model is served on demand only through an inference profile: use model_name "
                "with a geography prefix, e.g. 'us.<model id>' (see `aws bedrock list-inference-profiles`)."
            )
        if "model identifier is invalid" in lowered:
            return f"{head}. Check model_name (a Bedrock model id, inference profile id or ARN)."
        return (
            f"{head}. The request was invalid as Bedrock says above: check the prompt length against the "
            "model's context window, max_tokens against the model's output limit, and "
            "additional_model_request_fields."
        )
    if code in _BAD_CREDENTIALS:
        return f"{head}. The AWS credentials were rejected or have expired. {CREDENTIAL_HINT}"
    if code in _SERVER_SIDE:
        return f"{head}, still failing {tries}. Bedrock had a server-side problem: try again later."
    return f"{head}."


def _enable_model_hint(region: str | None) -> str:
    return (
        f"If the model is not enabled for this account, enable it under Bedrock > Model access in the console "
        f"for region {region or 'REGION'}, or use a cross-region inference profile id (e.g. "
        "'us.anthropic.claude-...') for models served only through profiles."
    )


def _retryable(code: str) -> bool:
    return code in _THROTTLED or code in _SERVER_SIDE


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_PROVIDER_TEXT else text[:_MAX_PROVIDER_TEXT] + "..."


def _scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    # Short values would redact ordinary words; real secrets are long.
    values = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for value in values:
            text = text.replace(value, "[redacted]")
        return text

    return scrub
