"""ConverseStream through real serialisation and real binary event-stream frames."""

from __future__ import annotations

import asyncio
import binascii
import struct
from collections.abc import Callable

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from rlm_bedrock.client import BedrockClient
from rlm_bedrock.testing import FakeBedrock, encode_event_frame, stream_frames

from rlm_core.errors import ProviderError
from rlm_core.types import LMRequest, Message, TokenUsage

REPLY = "The answer, streamed in several deltas, is forty-two."


def test_frames_decode_with_botocores_own_parser() -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(stream_frames(REPLY, 9, 13))
    messages = list(buffer)
    kinds = [m.headers[":event-type"] for m in messages]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    assert kinds.count("contentBlockDelta") > 2


def test_a_corrupted_frame_fails_botocores_checksum() -> None:
    frame = bytearray(encode_event_frame({":event-type": "messageStart"}, b'{"role": "assistant"}'))
    frame[-6] ^= 0xFF  # a payload byte
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)
    total, headers_length, prelude_crc = struct.unpack("!III", bytes(frame[:12]))
    assert (total, prelude_crc) == (len(frame), binascii.crc32(bytes(frame[:8])))
    assert headers_length > 0


def test_stream_collects_text_stop_reason_and_usage(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(stream=True)
    fake = FakeBedrock([REPLY]).install(client.boto3_client)
    request = LMRequest([Message("system", "Be exact."), Message("user", "What is it?")], max_tokens=200)
    response = client.complete(request)
    assert response.text == REPLY
    assert response.finish_reason == "end_turn"
    assert response.usage == TokenUsage(fake.total_input_tokens, fake.total_output_tokens)
    seen = fake.requests[0]
    assert seen.operation == "ConverseStream" and seen.url.endswith("/converse-stream")
    assert seen.body["system"] == [{"text": "Be exact."}]
    assert seen.body["inferenceConfig"] == {"maxTokens": 200}
    assert seen.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")


def test_stream_honours_max_tokens(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(stream=True)
    FakeBedrock([REPLY * 5]).install(client.boto3_client)
    response = client.complete(LMRequest([Message("user", "go")], max_tokens=4))
    assert 0 < response.usage.output_tokens <= 4
    assert response.finish_reason == "max_tokens"


def test_an_exception_inside_the_stream_is_a_provider_error(
    make_client: Callable[..., BedrockClient],
) -> None:
    client = make_client(stream=True)
    fake = FakeBedrock([REPLY]).install(client.boto3_client)
    fake.fail_next(code="ThrottlingException", status=200, message="Too many tokens, slow down")
    with pytest.raises(ProviderError, match="Service Quotas") as caught:
        client.complete(LMRequest([Message("user", "go")]))
    assert caught.value.retryable is True
    assert client.complete(LMRequest([Message("user", "go")])).text == REPLY


def test_async_streams_overlap_on_the_clients_own_threads(make_client: Callable[..., BedrockClient]) -> None:
    client = make_client(stream=True, max_concurrency=8)
    FakeBedrock(lambda body: body["messages"][-1]["content"][0]["text"].upper(), latency=0.05).install(
        client.boto3_client
    )

    async def run() -> list[str]:
        calls = [client.acomplete(LMRequest([Message("user", f"q{i}")])) for i in range(8)]
        return [r.text for r in await asyncio.gather(*calls)]

    assert asyncio.run(run()) == [f"Q{i}" for i in range(8)]
    client.close()
