"""Clients of one process share one TLS context (building one costs ~40 ms) on both transports (the
SDK's and the lean one); a caller's own http_client is used as given (on the SDK); calls go to a
loopback server."""

from __future__ import annotations

import asyncio

import pytest

from rlm_core.clients.openai_client import OpenAIClient
from rlm_core.clients.transports import shared_ssl_context
from rlm_core.testing.servers import LoopbackLLMServer
from rlm_core.types import LMRequest, Message


def _ssl_context(client: object) -> object:
    # The SDK keeps its HTTP client in ``_client``; the lean transport in ``http``.
    http = getattr(client, "http", None) or client._client  # type: ignore[attr-defined]
    return http._transport._pool._ssl_context


@pytest.mark.parametrize("transport", ["http", "sdk"])
def test_clients_share_the_process_tls_context(transport: str) -> None:
    with LoopbackLLMServer(["ok"]) as server:
        clients = [
            OpenAIClient(model_name="m", base_url=server.base_url, api_key="k", transport=transport)
            for _ in range(2)
        ]
        request = LMRequest([Message("user", "hi")])
        assert [c.complete(request).text for c in clients] == ["ok", "ok"]

        async def both() -> list[object]:
            sdk = [await c._get_async_client() for c in clients]
            texts = [(await c.acomplete(request)).text for c in clients]
            assert texts == ["ok", "ok"]
            contexts = [_ssl_context(s) for s in sdk]
            for c in clients:
                await c.aclose()
            return contexts

        contexts = asyncio.run(both())
        contexts += [_ssl_context(c._get_sync_client()) for c in clients]
        assert all(ctx is shared_ssl_context() for ctx in contexts)
        for c in clients:
            c.close()


def test_a_given_http_client_is_used_as_is() -> None:
    import openai

    own = openai.DefaultHttpxClient()
    client = OpenAIClient(
        model_name="m", base_url="http://127.0.0.1:9/v1", api_key="k", client_kwargs={"http_client": own}
    )
    assert client._get_sync_client()._client is own
    client.close()
