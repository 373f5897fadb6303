"""A test kit without an AWS account: a fake Bedrock runtime behind botocore's ``before-send`` event.

botocore serialises and signs each request as for the real service; the fake reads the request body,
answers with a real Converse JSON body or real binary event-stream frames (ConverseStream), and
botocore parses that reply as it would the service's::

    from rlm_bedrock.client import BedrockClient
    from rlm_bedrock.testing import FakeBedrock

    client = BedrockClient("amazon.nova-lite-v1:0", region_name="us-east-1",
                           aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x" * 40)
    fake = FakeBedrock(["hello"]).install(client.boto3_client)

Token counts follow ``rlm_core.testing.tokens`` (as the core's loopback servers count them).
"""

from __future__ import annotations

import binascii
import json
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from rlm_core.testing.tokens import count_tokens, truncate_to_tokens

__all__ = [
    "FakeBedrock",
    "SeenRequest",
    "converse_response_body",
    "encode_event_frame",
    "stream_frames",
]

_STRING_HEADER = 7  # the event-stream header value type "string"
_DELTA_BYTES = 16  # text per contentBlockDelta, so a stream has several deltas


def encode_event_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One binary event-stream message: prelude (total and header lengths, CRC32), string headers,
    payload, and the CRC32 of everything before it."""
    encoded_headers = b"".join(
        struct.pack("!B", len(name.encode())) + name.encode() + struct.pack("!BH", _STRING_HEADER, len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )  # fmt: skip
    total = 12 + len(encoded_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded_headers))
    message = prelude + struct.pack("!I", binascii.crc32(prelude)) + encoded_headers + payload
    return message + struct.pack("!I", binascii.crc32(message))


def _event(event_type: str, body: Mapping[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_event_frame(headers, json.dumps(body).encode())


def _exception(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_event_frame(headers, json.dumps({"message": message}).encode())


def converse_response_body(
    text: str, input_tokens: int, output_tokens: int, stop_reason: str = "end_turn"
) -> bytes:
    """A Converse JSON response as the service sends it."""
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                  "totalTokens": input_tokens + output_tokens},
        "metrics": {"latencyMs": 1},
    }  # fmt: skip
    return json.dumps(body).encode()


def stream_frames(
    text: str,
    input_tokens: int,
    output_tokens: int,
    stop_reason: str = "end_turn",
    *,
    cut_after: int | None = None,
) -> bytes:
    """ConverseStream frames: messageStart, contentBlockDelta..., contentBlockStop, messageStop, metadata.

    ``cut_after`` keeps only that many frames (a stream that ends early).
    """
    frames = [_event("messageStart", {"role": "assistant"})]
    for start in range(0, len(text), _DELTA_BYTES):
        delta = {"delta": {"text": text[start : start + _DELTA_BYTES]}, "contentBlockIndex": 0}
        frames.append(_event("contentBlockDelta", delta))
    frames.append(_event("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(_event("messageStop", {"stopReason": stop_reason}))
    usage = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
    frames.append(_event("metadata", {"usage": usage, "metrics": {"latencyMs": 1}}))
    return b"".join(frames if cut_after is None else frames[:cut_after])


class _RawBody:
    """The ``raw`` of an AWSResponse: what botocore reads JSON bodies and event streams from."""

    def __init__(self, data: bytes, chunk: int = 64) -> None:
        self._data = data
        self._chunk = chunk

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        for start in range(0, len(self._data), self._chunk):
            yield self._data[start : start + self._chunk]

    def read(self, amt: int | None = None) -> bytes:
        return self._data

    def close(self) -> None:
        return None


@attrs.define
class SeenRequest:
    """A request as botocore sent it: operation, URL, headers (including authorization) and JSON body."""

    operation: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


@attrs.define
class _Fault:
    code: str
    status: int
    message: str
    mid_stream: bool


class FakeBedrock:
    """Answers Converse and ConverseStream in-process, after botocore has serialised and signed them.

    ``replies`` is a list consumed in order (the last one repeats) or ``reply(body) -> str``.
    Replies are cut to ``inferenceConfig.maxTokens`` (stop reason ``max_tokens``). ``latency``
    seconds are slept per request inside botocore's send, as a network round trip would.
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[[dict[str, Any]], str] = ("ok",),
        *,
        latency: float = 0.0,
    ) -> None:
        self._replies = replies if callable(replies) else list(replies)
        self.latency = latency
        self.requests: list[SeenRequest] = []
        self.total_input_tokens = 0
        self.total_output_tokens = 0
        self._faults: list[_Fault] = []
        self._index = 0
        self._lock = threading.Lock()

    def install(self, boto3_client: Any) -> FakeBedrock:
        """Serve every Converse and ConverseStream call of ``boto3_client``."""
        events = boto3_client.meta.events
        events.register(
            "before-send.bedrock-runtime.Converse", self._handle, unique_id=f"fake-converse-{id(self)}"
        )
        events.register(
            "before-send.bedrock-runtime.ConverseStream", self._handle, unique_id=f"fake-stream-{id(self)}"
        )
        return self

    def fail_next(
        self,
        count: int = 1,
        *,
        code: str = "ThrottlingException",
        status: int = 429,
        message: str = "Too many requests",
    ) -> None:
        """The next ``count`` requests fail with a service error (an HTTP error, or for a stream an
        exception frame after the first deltas when ``status`` is 200)."""
        with self._lock:
            self._faults.extend(_Fault(code, status, message, status == 200) for _ in range(count))

    def _handle(self, request: Any, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        operation = "ConverseStream" if request.url.endswith("/converse-stream") else "Converse"
        body = json.loads(request.body or b"{}")
        headers = {
            key: (value.decode() if isinstance(value, bytes) else value)
            for key, value in request.headers.items()
        }
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.requests.append(SeenRequest(operation, request.url, headers, body))
            fault = self._faults.pop(0) if self._faults else None
            if fault is None or fault.mid_stream:
                text = self._next_reply(body)
        if fault is not None and not fault.mid_stream:
            error_headers = {
                "content-type": "application/json",
                "x-amzn-errortype": f"{fault.code}:http://internal/",
            }
            payload = json.dumps({"message": fault.message}).encode()
            return AWSResponse(request.url, fault.status, error_headers, _RawBody(payload))
        input_tokens = self._count_input(body)
        cap = body.get("inferenceConfig", {}).get("maxTokens")
        text, truncated = truncate_to_tokens(text, cap)
        output_tokens = max(1, count_tokens(text))
        stop = "max_tokens" if truncated else "end_turn"
        with self._lock:
            self.total_input_tokens += input_tokens
            self.total_output_tokens += output_tokens
        if operation == "Converse":
            data = converse_response_body(text, input_tokens, output_tokens, stop)
            return AWSResponse(request.url, 200, {"content-type": "application/json"}, _RawBody(data))
        if fault is not None:  # a stream that starts, then fails with an exception frame
            data = stream_frames(text, input_tokens, output_tokens, stop, cut_after=2)
            data += _exception(fault.code[:1].lower() + fault.code[1:], fault.message)
        else:
            data = stream_frames(text, input_tokens, output_tokens, stop)
        return AWSResponse(
            request.url, 200, {"content-type": "application/vnd.amazon.eventstream"}, _RawBody(data)
        )

    def _next_reply(self, body: dict[str, Any]) -> str:
        if callable(self._replies):
            return self._replies(body)
        reply = self._replies[min(self._index, len(self._replies) - 1)]
        self._index += 1
        return reply

    @staticmethod
    def _count_input(body: Mapping[str, Any]) -> int:
        texts = [block.get("text", "") for block in body.get("system", [])]
        for message in body.get("messages", []):
            texts.extend(block.get("text", "") for block in message.get("content", []))
        return sum(count_tokens(text) + 4 for text in texts) + 3
