"""Presets: OpenAI-compatible endpoints (OpenRouter, Portkey, LiteLLM, vLLM, Azure OpenAI, Gemini)
built on ``OpenAIClient`` with each ecosystem's usual API-key variable and default base URL."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from rlm_core.clients.openai_client import OpenAIClient
from rlm_core.errors import ConfigurationError, UnknownNameError
from rlm_core.redact import Secret

__all__ = [
    "PRESETS",
    "AzureOpenAIClient",
    "GeminiClient",
    "LiteLLMClient",
    "OpenRouterClient",
    "PortkeyClient",
    "VLLMClient",
    "make_preset_client",
]


class _PresetClient(OpenAIClient):
    """An OpenAI-compatible endpoint: OpenAI-compatible servers understand ``max_tokens``."""

    def _default_max_tokens_param(self) -> str:
        return "max_tokens"


class OpenRouterClient(_PresetClient):
    """OpenRouter; ``model_name`` like ``"openai/gpt-4o-mini"``."""

    backend = "openrouter"
    api_key_envs: ClassVar[tuple[str, ...]] = ("OPENROUTER_API_KEY",)
    default_base_url: ClassVar[str | None] = "https://openrouter.ai/api/v1"


class PortkeyClient(_PresetClient):
    """The Portkey gateway. Its key travels in ``x-portkey-api-key``; ``virtual_key`` and ``provider``
    become ``x-portkey-virtual-key`` / ``x-portkey-provider``. The ``Authorization`` header carries
    ``provider_api_key`` when given (for Portkey's provider mode), else a placeholder."""

    backend = "portkey"
    api_key_envs: ClassVar[tuple[str, ...]] = ("PORTKEY_API_KEY",)
    default_base_url: ClassVar[str | None] = "https://api.portkey.ai/v1"

    def __init__(
        self,
        model_name: str | None = None,
        *,
        virtual_key: str | None = None,
        provider: str | None = None,
        provider_api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name, **kwargs)
        # super() resolved the Portkey key into _api_key; move it to its header.
        portkey_key = self._api_key
        headers = {"x-portkey-api-key": portkey_key.reveal()} if portkey_key is not None else {}
        if virtual_key:
            headers["x-portkey-virtual-key"] = virtual_key
        if provider:
            headers["x-portkey-provider"] = provider
        self.default_headers = {**headers, **self.default_headers}
        self._api_key = Secret(provider_api_key or "portkey")


class LiteLLMClient(_PresetClient):
    """A LiteLLM proxy (its key is optional: a proxy without a master key accepts any)."""

    backend = "litellm"
    api_key_envs: ClassVar[tuple[str, ...]] = ("LITELLM_API_KEY",)
    api_key_required: ClassVar[bool] = False
    placeholder_api_key: ClassVar[str | None] = "EMPTY"
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:4000"


class VLLMClient(_PresetClient):
    """A vLLM OpenAI-compatible server (``vllm serve``); the key is optional, ``"EMPTY"`` by default."""

    backend = "vllm"
    api_key_envs: ClassVar[tuple[str, ...]] = ("VLLM_API_KEY",)
    api_key_required: ClassVar[bool] = False
    placeholder_api_key: ClassVar[str | None] = "EMPTY"
    default_base_url: ClassVar[str | None] = "http://127.0.0.1:8000/v1"


class GeminiClient(_PresetClient):
    """Google Gemini through its OpenAI-compatible endpoint."""

    backend = "gemini"
    api_key_envs: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY",)
    default_base_url: ClassVar[str | None] = "https://generativelanguage.googleapis.com/v1beta/openai/"


class AzureOpenAIClient(OpenAIClient):
    """Azure OpenAI through the SDK's ``AzureOpenAI``/``AsyncAzureOpenAI``; ``model_name`` is the
    deployment name. ``azure_endpoint`` (else ``AZURE_OPENAI_ENDPOINT``; ``base_url`` is accepted as
    an alias) and ``api_version`` (else ``OPENAI_API_VERSION``) are required. An Entra ID token
    provider may replace the key: ``client_kwargs={"azure_ad_token_provider": ...}``.

    Output caps go as ``max_completion_tokens``: Azure serves OpenAI's own models, whose reasoning
    models reject ``max_tokens``; pass ``max_tokens_param="max_tokens"`` for old API versions.
    """

    backend = "azure_openai"
    api_key_envs: ClassVar[tuple[str, ...]] = ("AZURE_OPENAI_API_KEY",)
    # Deployment URLs, the api-version query, api-key / Entra ID auth: the SDK's AzureOpenAI does them.
    http_transport: ClassVar[bool] = False

    def __init__(
        self,
        model_name: str | None = None,
        *,
        azure_endpoint: str | None = None,
        api_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        client_kwargs = kwargs.get("client_kwargs") or {}
        self._token_auth = any(k in client_kwargs for k in ("azure_ad_token", "azure_ad_token_provider"))
        endpoint = azure_endpoint or kwargs.pop("base_url", None) or os.environ.get("AZURE_OPENAI_ENDPOINT")
        super().__init__(model_name, **kwargs)
        if not endpoint:
            raise ConfigurationError(
                "AzureOpenAIClient needs the resource endpoint: set AZURE_OPENAI_ENDPOINT or pass "
                "backend_kwargs={'azure_endpoint': 'https://<resource>.openai.azure.com'}."
            )
        version = api_version or os.environ.get("OPENAI_API_VERSION")
        if not version:
            raise ConfigurationError(
                "AzureOpenAIClient needs an API version: set OPENAI_API_VERSION or pass "
                "backend_kwargs={'api_version': ...} (see Azure OpenAI's API version list)."
            )
        self.azure_endpoint = endpoint
        self.api_version = version

    def _resolve_api_key(self, api_key: str | None) -> Secret | None:
        if self._token_auth and not api_key and not os.environ.get("AZURE_OPENAI_API_KEY"):
            return None
        return super()._resolve_api_key(api_key)

    def _default_max_tokens_param(self) -> str:
        return "max_completion_tokens"

    def _where(self) -> str:
        return self.azure_endpoint

    def __repr__(self) -> str:
        return (
            f"AzureOpenAIClient(model_name={self.model_name!r}, azure_endpoint={self.azure_endpoint!r}, "
            f"api_version={self.api_version!r}, stream={self.stream})"
        )

    __str__ = __repr__

    def sdk_client_kwargs(self) -> dict[str, Any]:
        kwargs = super().sdk_client_kwargs()
        kwargs["azure_endpoint"] = self.azure_endpoint
        kwargs["api_version"] = self.api_version
        return kwargs

    def _sdk_classes(self) -> tuple[type[Any], type[Any]]:
        sdk = self._sdk()
        return sdk.AzureOpenAI, sdk.AsyncAzureOpenAI


PRESETS: dict[str, type[OpenAIClient]] = {
    "openrouter": OpenRouterClient,
    "portkey": PortkeyClient,
    "litellm": LiteLLMClient,
    "vllm": VLLMClient,
    "azure_openai": AzureOpenAIClient,
    "gemini": GeminiClient,
}


def make_preset_client(name: str, **backend_kwargs: Any) -> OpenAIClient:
    """Build the preset client ``name`` (see ``PRESETS``) from ``backend_kwargs``."""
    try:
        cls = PRESETS[name]
    except KeyError:
        raise UnknownNameError(
            f"no client preset named {name!r}; the presets are {', '.join(sorted(PRESETS))}."
        ) from None
    return cls(**backend_kwargs)
