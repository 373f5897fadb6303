"""The small pieces on their own: reading error types, inferring finish reasons, naming providers,
the content switch's values, and the content writer's redaction of text no engine masked first."""

from __future__ import annotations

import json

import pytest
import rlm_otel
from rlm_otel import attributes, settings
from rlm_otel.content import ContentWriter

from rlm_core.records import CallOutcome
from rlm_core.redact import REDACTED
from rlm_core.types import TokenUsage

KEY = "sk-ant-" + "api03-" + "x" * 30


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("ProviderError: root-model: 500", "ProviderError"),
        ("openai.InternalServerError: boom", "openai.InternalServerError"),
        (
            "Traceback (most recent call last):\n  File ...\nZeroDivisionError: division by zero\n",
            "ZeroDivisionError",
        ),
        ("the run exceeded max_timeout=3s", "error"),
        ("", "error"),
    ],
)
def test_error_type_names_the_exception_class(error: str, expected: str) -> None:
    assert attributes.error_type(error) == expected


def _ended(output_tokens: int, error: str | None = None, **extra: object) -> object:
    outcome = CallOutcome(
        "s", "r", "c", "m", "sub", 1, "llm_query", usage=TokenUsage(5, output_tokens), error=error
    )

    class Ended:
        def __init__(self) -> None:
            self.outcome, self.error = outcome, error
            for name, value in extra.items():
                setattr(self, name, value)

    return Ended()


def test_finish_reasons_are_inferred_from_the_cap_and_the_error_until_events_carry_them() -> None:
    assert attributes.finish_reason(_ended(3), max_tokens=10) == ("stop", True)
    assert attributes.finish_reason(_ended(10), max_tokens=10) == ("length", True)
    assert attributes.finish_reason(_ended(0, error="ProviderError: x"), max_tokens=10) == ("error", True)
    # The provider's own reason wins once the core's event carries one.
    assert attributes.finish_reason(_ended(10, finish_reason="tool_calls"), max_tokens=10) == (
        "tool_calls",
        False,
    )


def test_backend_names_map_to_the_conventions_provider_names() -> None:
    assert [
        attributes.provider_name(b) for b in ("openai", "anthropic", "bedrock", "gemini", "vllm", "")
    ] == [
        "openai",
        "anthropic",
        "aws.bedrock",
        "gcp.gemini",
        "vllm",
        "unknown",
    ]


@pytest.mark.parametrize(
    ("value", "on"),
    [
        ("true", True),
        ("True", True),
        ("SPAN_ONLY", True),
        ("span_and_event", True),
        ("false", False),
        ("NO_CONTENT", False),
        ("EVENT_ONLY", False),  # content on log events only: this plugin writes none
        ("", False),
    ],
)
def test_the_content_switch_reads_the_conventions_values(
    monkeypatch: pytest.MonkeyPatch, value: str, on: bool
) -> None:
    monkeypatch.setenv(settings.CAPTURE_ENV, value)
    assert settings.capture_content() is on
    rlm_otel.configure(capture_content=not on)
    assert settings.capture_content() is (not on)


def test_the_content_writer_redacts_key_shapes_urls_and_secret_environment_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-value-123456")
    writer = ContentWriter()  # reads the secret environment values now
    text = f"key {KEY} at https://user:hunter22@db.internal/x with tok-value-123456"
    (message,) = json.loads(writer.output_message(text))
    written = message["parts"][0]["content"]
    assert KEY not in written and "hunter22" not in written and "tok-value-123456" not in written
    assert written.count(REDACTED) == 3
    code = json.loads(writer.code_cell_start(f"k = {KEY!r}")["gen_ai.tool.call.arguments"])["code"]
    assert code == f"k = '{REDACTED}'"
    (instructions,) = json.loads(writer.system_instructions(KEY))
    assert instructions == {"type": "text", "content": REDACTED}
