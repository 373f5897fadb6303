"""Provider faults on root calls and on sub-calls, through the real OpenAI and Anthropic SDKs and the
openai client's lean HTTP transport against the loopback server: each ends in a recovery (where the
SDK, or the lean transport with the SDK's policy, retries) or a clear, readable error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rlm_core import RLM
from rlm_core.testing import LoopbackLLMServer, ScriptedClient
from rlm_core.types import StopReason

SUB_CELL = """```repl
try:
    print('sub said:', llm_query('hello'))
except Exception as exc:
    print('sub failed:', type(exc).__name__, exc)
```"""

Fault = Callable[[LoopbackLLMServer], None]
FAULTS: dict[str, tuple[Fault, str]] = {
    # name: (inject one fault, what a non-retried failure says)
    "429-retry-after": (lambda s: s.rate_limit_next(1, retry_after=0.01), "429"),
    "500": (lambda s: s.fail_next(1, 500), "500"),
    "503": (lambda s: s.fail_next(1, 503), "503"),
    "hang": (lambda s: s.slow_next(1, delay=30.0), "no reply within"),  # woken by stop()
    "reset": (lambda s: s.drop_next(1), "could not connect"),
    "malformed-json": (lambda s: s.malformed_next(1), "not the expected JSON"),
    "context-length": (lambda s: s.context_length_next(1), "context"),
}
RETRIED = {"429-retry-after", "500", "503", "hang", "reset"}  # the SDKs retry these


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer() as running:
        yield running


# The openai client runs each case on both of its transports; the anthropic client has only the SDK.
APIS = ["openai-http", "openai-sdk"]


def client_kwargs(
    server: LoopbackLLMServer, model: str, retries: int, api: str = "openai-http"
) -> dict[str, Any]:
    base = server.anthropic_base_url if api == "anthropic" else server.base_url
    kwargs = {"model_name": model, "base_url": base, "api_key": "k", "max_retries": retries, "timeout": 1.0}
    if api.startswith("openai-"):
        kwargs["transport"] = api.removeprefix("openai-")
    return kwargs


@pytest.mark.parametrize(
    ("fault", "api"),
    [(fault, api) for fault in sorted(FAULTS) for api in APIS]
    + [(fault, "anthropic") for fault in ("429-retry-after", "500", "malformed-json", "context-length")],
)
def test_a_root_call_fault_without_retries_ends_the_run_with_a_clear_error(
    server: LoopbackLLMServer, fault: str, api: str
) -> None:
    server.reset()
    server.set_replies(["```repl\nFINAL('ok')\n```"])
    inject, says = FAULTS[fault]
    inject(server)
    rlm = RLM(backend=api.split("-")[0], backend_kwargs=client_kwargs(server, "root", 0, api))
    result = rlm.completion("ctx")
    assert result.stop_reason is StopReason.ERROR
    assert says.lower() in (result.error or "").lower(), result.error
    assert "Traceback" not in (result.error or "")
    rlm.close()


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("fault", sorted(RETRIED))
def test_a_root_call_fault_the_sdk_retries_is_survived(
    server: LoopbackLLMServer, fault: str, api: str
) -> None:
    server.reset()
    server.set_replies(["```repl\nFINAL('ok')\n```"])
    FAULTS[fault][0](server)
    result = RLM(backend="openai", backend_kwargs=client_kwargs(server, "root", 2, api)).completion("ctx")
    assert result.response == "ok" and result.error is None
    assert len(server.requests) == 2  # the failed attempt and its retry
    counted = server.model_totals["root"]
    # Exactly the successful call is charged: a failed attempt costs nothing.
    assert result.usage_summary.total.input_tokens == counted.input_tokens


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_sub_call_fault_reaches_the_repl_as_an_exception_and_the_run_goes_on(
    server: LoopbackLLMServer, fault: str, api: str
) -> None:
    server.reset()
    server.set_replies(["sub answer"])
    inject, says = FAULTS[fault]
    inject(server)
    root = ScriptedClient([SUB_CELL, "FINAL(finished)"])
    rlm = RLM(
        backend=root, other_backends=["openai"], other_backend_kwargs=[client_kwargs(server, "sub", 0, api)]
    )
    result = rlm.completion("ctx")
    assert result.response == "finished" and result.error is None
    feedback = root.requests[1].messages[-1].content
    assert "sub failed:" in feedback and says.lower() in feedback.lower(), feedback


@pytest.mark.parametrize("api", APIS)
def test_a_rejected_key_is_not_retried_and_says_what_to_check(api: str) -> None:
    with LoopbackLLMServer(api_key="the-right-key") as server:
        kwargs = client_kwargs(server, "root", 3, api) | {"api_key": "a-wrong-key"}
        result = RLM(backend="openai", backend_kwargs=kwargs).completion("ctx")
        assert len(server.requests) == 1
    assert result.stop_reason is StopReason.ERROR
    assert "401" in (result.error or "") and "api_key" in (result.error or "")
    assert "a-wrong-key" not in (result.error or "")


@pytest.mark.parametrize("api", APIS)
def test_a_rejected_key_on_a_sub_call_reaches_the_repl(api: str) -> None:
    with LoopbackLLMServer(api_key="the-right-key") as server:
        kwargs = client_kwargs(server, "sub", 0, api) | {"api_key": "a-wrong-key"}
        root = ScriptedClient([SUB_CELL, "FINAL(finished)"])
        result = RLM(backend=root, other_backends=["openai"], other_backend_kwargs=[kwargs]).completion("ctx")
    assert result.response == "finished"
    assert "401" in root.requests[1].messages[-1].content
