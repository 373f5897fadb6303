"""``BedrockClient``: AWS Bedrock models through boto3's Converse and ConverseStream APIs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rlm_bedrock import models
from rlm_bedrock.converse import (
    IncompleteStreamError,
    StreamCollector,
    reply_from_response,
    to_converse_messages,
)
from rlm_bedrock.errors import REGION_HINT, translate_error
from rlm_core.clients.base import BaseClient, Price
from rlm_core.errors import ConfigurationError, ProviderError, did_you_mean
from rlm_core.redact import Secret
from rlm_core.types import LMRequest, LMResponse

__all__ = ["DEFAULT_MAX_CONCURRENCY", "DEFAULT_READ_TIMEOUT", "BedrockClient"]

# Calls in flight at once: threads for acomplete and botocore's connection pool (its default of 10
# would queue the engine's concurrent sub-calls behind each other).
DEFAULT_MAX_CONCURRENCY = 64
# botocore's default read timeout (60 s) cuts off long generations; a slow model may take minutes.
DEFAULT_READ_TIMEOUT = 300.0
# Standard mode retries throttling and transient errors with backoff; botocore is the only retry layer.
# botocore's max_attempts counts retries: 4 means up to 5 requests.
DEFAULT_RETRIES: Mapping[str, Any] = {"mode": "standard", "max_attempts": 4}
_RETRY_KEYS = frozenset({"mode", "max_attempts", "total_max_attempts"})
_RETRY_MODES = frozenset({"legacy", "standard", "adaptive"})
# The upstream project's Bedrock settings, honoured so its examples run unchanged.
_COMPAT_API_KEY_ENV = "AWS_BEDROCK_API_KEY"
_COMPAT_REGION_ENV = "AWS_BEDROCK_REGION"
_NATIVE_API_KEY_ENV = "AWS_BEARER_TOKEN_BEDROCK"
_USER_AGENT = "rlm-bedrock"


class BedrockClient(BaseClient):
    """A Bedrock model through the Converse API (ConverseStream with ``stream=True``).

    backend_kwargs:

    - ``model_name`` (required): a model id (``amazon.nova-pro-v1:0``), a cross-region inference
      profile id (``us.anthropic.claude-sonnet-4-5-20250929-v1:0``) or an ARN;
    - ``region_name`` (else the profile's or the environment's region, ``AWS_REGION``/
      ``AWS_DEFAULT_REGION``, else ``AWS_BEDROCK_REGION``), ``profile_name`` (a named profile of the
      AWS config files), or explicit ``aws_access_key_id``/``aws_secret_access_key``/
      ``aws_session_token``; with none of these, boto3's standard credential chain applies;
    - ``api_key``: a Bedrock API key (else ``AWS_BEARER_TOKEN_BEDROCK`` or ``AWS_BEDROCK_API_KEY``),
      sent as a bearer token instead of SigV4 signing;
    - ``max_tokens`` (default output cap, sent as ``inferenceConfig.maxTokens``), ``temperature``,
      ``top_p``, ``stop_sequences``, ``additional_model_request_fields`` (model-specific, e.g.
      ``{"top_k": 50}``), ``stream``;
    - ``price`` (``Price`` or ``(input, output)`` USD per million tokens; default from the table of
      common models), ``context_window`` (default from the same table);
    - ``retries`` (botocore's ``{"max_attempts": ..., "mode": "standard" | "adaptive" | "legacy"}``,
      default standard mode with up to 4 retries), ``config`` (a ``botocore.config.Config``, merged over ours and
      winning), ``connect_timeout``, ``read_timeout`` (seconds, default 300), ``endpoint_url``
      (a VPC endpoint), ``max_concurrency`` (threads and pooled connections, default 64).

    boto3 is synchronous: ``acomplete`` runs ``complete`` on the client's own thread pool, so up to
    ``max_concurrency`` calls overlap. Secrets never appear in the repr, events, logs or errors.
    """

    backend = "bedrock"

    def __init__(
        self,
        model_name: str | None = None,
        *,
        region_name: str | None = None,
        profile_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        api_key: str | None = None,
        endpoint_url: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop_sequences: Sequence[str] | None = None,
        additional_model_request_fields: Mapping[str, Any] | None = None,
        stream: bool = False,
        price: Price | Sequence[float] | None = None,
        context_window: int | None = None,
        retries: Mapping[str, Any] | None = None,
        config: Any = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        **unknown: Any,
    ) -> None:
        _reject_unknown(unknown)
        if not model_name or not isinstance(model_name, str) or not model_name.strip():
            raise ConfigurationError(
                "BedrockClient needs a model: pass backend_kwargs={'model_name': "
                "'us.anthropic.claude-sonnet-4-5-20250929-v1:0'} or another Bedrock model id "
                f"(got {model_name!r})."
            )
        if bool(aws_access_key_id) != bool(aws_secret_access_key):
            raise ConfigurationError(
                "BedrockClient: pass aws_access_key_id and aws_secret_access_key together (or neither, to use "
                "profile_name or the standard credential chain)."
            )
        if aws_access_key_id and profile_name:
            raise ConfigurationError(
                "BedrockClient: pass either profile_name or explicit aws_access_key_id/aws_secret_access_key, "
                "not both."
            )
        self.model_name = model_name.strip()
        self.profile_name = profile_name
        self.endpoint_url = endpoint_url
        self.max_tokens = _positive("max_tokens", max_tokens, int)
        self.temperature = temperature
        self.top_p = top_p
        self.stop_sequences = list(stop_sequences) if stop_sequences else None
        self.additional_model_request_fields = dict(additional_model_request_fields or {})
        self.stream = bool(stream)
        self.price = _as_price(price) if price is not None else models.price_for(self.model_name)
        self.context_window = _positive("context_window", context_window, int) or models.context_window_for(
            self.model_name
        )
        self.max_concurrency = _positive("max_concurrency", max_concurrency, int)
        self._access_key_id = aws_access_key_id
        self._secret_access_key = Secret(aws_secret_access_key) if aws_secret_access_key else None
        self._session_token = Secret(aws_session_token) if aws_session_token else None
        self._api_key = _resolve_api_key(api_key)
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._client, self.region_name = self._make_boto3_client(
            region_name,
            retries,
            config,
            _positive("connect_timeout", connect_timeout, float),
            _positive("read_timeout", read_timeout, float),
        )

    # -- configuration -----------------------------------------------------------------------

    def _make_boto3_client(
        self,
        region_name: str | None,
        retries: Mapping[str, Any] | None,
        config: Any,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> tuple[Any, str]:
        # boto3 is imported here, not at module level, so `import rlm_bedrock` (plugin discovery) stays cheap.
        import boto3
        import botocore.config
        import botocore.exceptions
        import botocore.session

        core_session = botocore.session.Session(profile=self.profile_name)
        if self._api_key is not None:
            core_session.register_component("token_provider", _StaticTokenProvider(self._api_key))
        try:
            data_path = core_session.get_config_variable("data_path")  # reads the profile: may raise
            core_session.register_component("data_loader", _shared_loader(data_path))
            session = boto3.Session(
                aws_access_key_id=self._access_key_id,
                aws_secret_access_key=self._secret_access_key.reveal() if self._secret_access_key else None,
                aws_session_token=self._session_token.reveal() if self._session_token else None,
                botocore_session=core_session,
            )
            region = region_name or session.region_name or os.environ.get(_COMPAT_REGION_ENV)
        except botocore.exceptions.ProfileNotFound as exc:
            known = ", ".join(botocore.session.Session().available_profiles) or "none"
            raise ConfigurationError(
                f"BedrockClient: the AWS profile {self.profile_name!r} is not in the AWS config files "
                f"(profiles found: {known}). Fix profile_name or AWS_PROFILE, or run `aws configure --profile NAME`."
            ) from exc
        if not region:
            raise ConfigurationError(
                f"BedrockClient for model {self.model_name!r}: no AWS region. {REGION_HINT}"
            )
        if config is not None and not isinstance(config, botocore.config.Config):
            raise ConfigurationError(
                f"BedrockClient: config must be a botocore.config.Config, got {type(config).__name__}."
            )
        ours = botocore.config.Config(
            retries=_check_retries(retries),
            connect_timeout=connect_timeout if connect_timeout is not None else 60,
            read_timeout=read_timeout if read_timeout is not None else 60,
            max_pool_connections=self.max_concurrency,
            user_agent_extra=_USER_AGENT,
            # A Bedrock API key replaces SigV4 signing with a bearer token.
            **({"signature_version": "bearer"} if self._api_key is not None else {}),
        )
        merged = ours.merge(config) if config is not None else ours
        client = session.client(
            "bedrock-runtime", region_name=region, endpoint_url=self.endpoint_url, config=merged
        )
        return client, region

    def __repr__(self) -> str:
        profile = f", profile_name={self.profile_name!r}" if self.profile_name else ""
        return (
            f"BedrockClient(model_name={self.model_name!r}, region_name={self.region_name!r}{profile}, "
            f"stream={self.stream})"
        )

    __str__ = __repr__

    @property
    def boto3_client(self) -> Any:
        """The underlying ``bedrock-runtime`` client (for event hooks, stubbing, or extra calls)."""
        return self._client

    def _secrets(self) -> list[str]:
        held = [self._secret_access_key, self._session_token, self._api_key]
        return [secret.reveal() for secret in held if secret is not None] + [
            value for name in (_NATIVE_API_KEY_ENV, "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            if (value := os.environ.get(name))
        ]  # fmt: skip

    def _attempts(self) -> int | None:
        retries = getattr(self._client.meta.config, "retries", None) or {}
        if "total_max_attempts" in retries:
            return int(retries["total_max_attempts"])
        if "max_attempts" in retries:
            return int(retries["max_attempts"]) + 1  # botocore counts retries here, not the first try
        return None

    # -- calls -------------------------------------------------------------------------------

    def converse_params(self, request: LMRequest) -> dict[str, Any]:
        """The Converse request for ``request`` (public so tests and tools can inspect it)."""
        system, messages = to_converse_messages(request.messages)
        params: dict[str, Any] = {"modelId": self.model_name, "messages": messages}
        if system:
            params["system"] = system
        inference: dict[str, Any] = {}
        # The engine has already lowered request.max_tokens to what the budget allows: it wins.
        cap = request.max_tokens if request.max_tokens is not None else self.max_tokens
        if cap is not None:
            inference["maxTokens"] = cap
        if self.temperature is not None:
            inference["temperature"] = self.temperature
        if self.top_p is not None:
            inference["topP"] = self.top_p
        if self.stop_sequences:
            inference["stopSequences"] = list(self.stop_sequences)
        if inference:
            params["inferenceConfig"] = inference
        if self.additional_model_request_fields:
            params["additionalModelRequestFields"] = dict(self.additional_model_request_fields)
        return params

    def complete(self, request: LMRequest) -> LMResponse:
        started = time.perf_counter()
        params = self.converse_params(request)
        try:
            reply = (
                self._stream(params) if self.stream else reply_from_response(self._client.converse(**params))
            )
        except Exception as exc:
            error = self._translate(exc)
            if error is None:
                raise
            raise error from None  # the botocore exception may carry request details; the message has it all
        usage = reply["usage"]
        return LMResponse(
            text=reply["text"],
            usage=usage,
            model=self.model_name,
            finish_reason=reply["finish_reason"],
            cost=self.price.cost(usage) if self.price is not None else None,
            latency=time.perf_counter() - started,
        )

    async def acomplete(self, request: LMRequest) -> LMResponse:
        # asyncio.to_thread would share the loop's default pool (min(32, cpus + 4) threads: 6 here),
        # which would queue concurrent sub-calls; our own pool matches max_concurrency.
        call = functools.partial(contextvars.copy_context().run, self.complete, request)
        return await asyncio.get_running_loop().run_in_executor(self._executor(), call)

    def _stream(self, params: dict[str, Any]) -> dict[str, Any]:
        stream = self._client.converse_stream(**params)["stream"]
        collector = StreamCollector()
        try:
            for event in stream:
                collector.add(event)
        finally:
            stream.close()
        return collector.reply()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrency, thread_name_prefix="rlm-bedrock"
                )
            return self._pool

    def _translate(self, exc: Exception) -> ProviderError | None:
        if isinstance(exc, IncompleteStreamError):
            return ProviderError(
                f"bedrock model {self.model_name!r} in {self.region_name}: {exc}. The stream was cut off; "
                "try again, or use stream=False.",
                client=self.backend,
                model=self.model_name,
                retryable=True,
            )
        return translate_error(
            exc,
            model=self.model_name,
            region=self.region_name,
            streaming=self.stream,
            attempts=self._attempts(),
            secrets=self._secrets(),
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        self._client.close()


@functools.cache
def _shared_loader(data_path: str | None) -> Any:
    # Each client has its own botocore session (its own profile and credentials); sharing the loader
    # lets them share the parsed service model, which costs ~0.3 s to load per session otherwise.
    import botocore.loaders

    return botocore.loaders.create_loader(data_path)


class _StaticTokenProvider:
    """Hands botocore a Bedrock API key as the bearer token for every request."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def load_token(self, **kwargs: Any) -> Any:
        from botocore.tokens import FrozenAuthToken

        return FrozenAuthToken(self._token.reveal())


def _resolve_api_key(api_key: str | None) -> Secret | None:
    if api_key:
        return Secret(api_key)
    # botocore reads AWS_BEARER_TOKEN_BEDROCK itself; the upstream variable name is mapped onto it.
    if not os.environ.get(_NATIVE_API_KEY_ENV) and os.environ.get(_COMPAT_API_KEY_ENV):
        return Secret(os.environ[_COMPAT_API_KEY_ENV])
    return None


@functools.cache
def _option_names() -> tuple[str, ...]:
    parameters = inspect.signature(BedrockClient.__init__).parameters.values()
    return ("model_name", *(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY))


def _reject_unknown(unknown: Mapping[str, Any]) -> None:
    if not unknown:
        return
    hints = []
    for name in sorted(unknown):
        hint = did_you_mean(name, _option_names(), cutoff=0.6)
        hints.append(f"{name!r}" + (f" ({hint.strip()})" if hint else ""))
    raise ConfigurationError(
        f"BedrockClient got unknown backend_kwargs {', '.join(hints)}. Known options: "
        f"{', '.join(sorted(_option_names()))}. Model-specific fields go in additional_model_request_fields."
    )


def _check_retries(retries: Mapping[str, Any] | None) -> dict[str, Any]:
    if retries is None:
        return dict(DEFAULT_RETRIES)
    if not isinstance(retries, Mapping) or not set(retries) <= _RETRY_KEYS:
        raise ConfigurationError(
            f"BedrockClient: retries must be a dict with keys from {sorted(_RETRY_KEYS)}, e.g. "
            f"{{'max_attempts': 8, 'mode': 'adaptive'}}; got {retries!r}."
        )
    if "mode" in retries and retries["mode"] not in _RETRY_MODES:
        raise ConfigurationError(
            f"BedrockClient: retries['mode'] must be one of {sorted(_RETRY_MODES)}, got {retries['mode']!r}."
        )
    for key in ("max_attempts", "total_max_attempts"):
        value = retries.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigurationError(
                f"BedrockClient: retries[{key!r}] must be an integer >= 0, got {value!r}."
            )
    return dict(retries)


def _positive(name: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f"BedrockClient: {name} must be a positive number, got {value!r}.")
    if kind is int and not isinstance(value, int):
        raise ConfigurationError(f"BedrockClient: {name} must be a positive integer, got {value!r}.")
    return kind(value)


def _as_price(price: Any) -> Price:
    if isinstance(price, Price):
        return price
    if isinstance(price, Sequence) and not isinstance(price, str) and len(price) == 2:
        return Price(float(price[0]), float(price[1]))
    raise ConfigurationError(
        "BedrockClient: price must be rlm_core.clients.base.Price(input_per_mtok, output_per_mtok) or a pair "
        f"of USD-per-million-token numbers, got {price!r}."
    )
