"""Budgets hold by the server's own count when a provider omits usage, and each of 100 concurrent
completions on one RLM names its own log. Real HTTP server, real OpenAI SDK."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core import RLM, RLMLogger
from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.testing import LoopbackLLMServer, repl
from rlm_core.types import StopReason

ROOT, SUB = "root-model", "sub-model"


@pytest.fixture
def bare_server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer(omit_usage=True) as running:
        yield running


def connection(server: LoopbackLLMServer, model: str) -> dict[str, Any]:
    return {"model_name": model, "base_url": server.base_url, "api_key": "test", "max_retries": 0}


def test_a_reply_without_usage_is_charged_at_the_estimate_and_the_root_limit_holds(
    bare_server: LoopbackLLMServer, tmp_path: Path
) -> None:
    # The reproduction from the report: a talkative root model, no usage in any reply.
    bare_server.set_replies([f"Still looking. {'word ' * 300}\n" + repl("print(1)")])
    logger = RLMLogger(tmp_path)
    rlm = RLM(
        backend="openai",
        backend_kwargs=connection(bare_server, ROOT),
        max_root_tokens=6000,
        max_iterations=50,
        logger=logger,
    )
    result = rlm.completion("ctx")
    counted = bare_server.model_totals[ROOT]
    spent = counted.input_tokens + counted.output_tokens
    assert counted.requests >= 1
    assert spent <= 6000, f"the server counted {spent} tokens against max_root_tokens=6000"
    assert result.stop_reason is StopReason.ROOT_BUDGET
    usage = result.usage_summary.by_tier_model[("root", ROOT)]
    assert usage.estimated_calls == usage.calls == counted.requests
    # The estimate is conservative: never below what the server counted.
    assert usage.total_tokens >= spent
    assert "estimated" in str(result.usage_summary.to_dict())
    trajectory = read_trajectory(result.log_path or "")
    calls = [call for iteration in trajectory.iterations for call in iteration.calls]
    assert calls and all(call.usage_estimated for call in calls)
    assert trajectory.result is not None
    logged = trajectory.result.usage_summary.by_tier_model[("root", ROOT)]
    assert logged.estimated_calls == usage.estimated_calls


def test_sub_calls_without_usage_hold_the_sub_limit(bare_server: LoopbackLLMServer) -> None:
    def reply(request: dict[str, Any]) -> str:
        if request["model"] == SUB:
            return "word " * 200
        turns = sum(1 for m in request["messages"] if m["role"] == "assistant")
        code = "out = [llm_query('question %d' % i) for i in range(30)]" if turns == 0 else "FINAL('ok')"
        return repl(code)

    bare_server.set_replies(reply)
    rlm = RLM(
        backend="openai",
        backend_kwargs=connection(bare_server, ROOT),
        other_backends=["openai"],
        other_backend_kwargs=[connection(bare_server, SUB)],
        max_sub_tokens=3000,
    )
    result = rlm.completion("ctx")
    sub = bare_server.model_totals[SUB]
    assert sub.input_tokens + sub.output_tokens <= 3000
    assert result.usage_summary.by_tier_model[("sub", SUB)].estimated_calls == sub.requests


def test_each_of_100_concurrent_completions_names_its_own_log(tmp_path: Path) -> None:
    # Each run answers with the marker in its own REPL's context: a run that saw another's shows.
    # Each also leaves a 1 MB object in its namespace, watched by a weak reference, to show that
    # every run's memory is released when it ends (no cyclic collection needed).
    probe = types.ModuleType("rlm_load_probe")
    probe.refs = []  # type: ignore[attr-defined]
    sys.modules["rlm_load_probe"] = probe
    reply = repl(
        "import sys, weakref\n"
        "class Blob:\n    data = None\n"
        "blob = Blob()\nblob.data = bytearray(1_000_000)\n"
        "sys.modules['rlm_load_probe'].refs.append(weakref.ref(blob))\n"
        "FINAL(context.split('MARK-')[1].split()[0])"
    )

    async def main(rlm: RLM) -> list[Any]:
        return await asyncio.gather(*(rlm.acompletion(f"context MARK-{i} end") for i in range(100)))

    threads_before = threading.active_count()
    with LoopbackLLMServer([reply]) as server:
        rlm = RLM(backend="openai", backend_kwargs=connection(server, ROOT), logger=RLMLogger(tmp_path))
        gc.disable()
        try:
            results = asyncio.run(main(rlm))
            rlm.close()
            alive = sum(1 for ref in probe.refs if ref() is not None)  # type: ignore[attr-defined]
        finally:
            gc.enable()
            del sys.modules["rlm_load_probe"]
        assert server.model_totals[ROOT].requests == 100
        counted = server.model_totals[ROOT]
    assert len(probe.refs) == 100 and alive == 0  # type: ignore[attr-defined]
    assert threading.active_count() <= threads_before + 1  # the SDK's pool may keep one
    paths = [result.log_path for result in results]
    assert len(set(paths)) == 100 and None not in paths
    for index, result in enumerate(results):
        assert result.response == str(index)
        trajectory = read_trajectory(result.log_path)
        assert trajectory.run_id == result.run_id
        assert trajectory.result is not None and trajectory.result.response == str(index)
    # Exact usage per run: the runs' sums are the server's count, to the token.
    assert sum(r.usage_summary.total.input_tokens for r in results) == counted.input_tokens
    assert sum(r.usage_summary.total.output_tokens for r in results) == counted.output_tokens
