"""A trajectory server for the batch tests, in its own process, and a check of its counting.

Run as ``python tests/test_batch_support.py COUNTS_FILE [--latency S]``: it serves the loopback
OpenAI API on 127.0.0.1, prints its base URL, and appends ``model item_id in out`` to COUNTS_FILE
for every request. Each item's trajectory: the root writes code that asks one sub-call, then finishes
with ``FINAL(answer-ID)``. The item id travels in the question as ``[item:ID]``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT, SUB = "root-model", "sub-model"
_ITEM = re.compile(r"\[item:([^\]]+)\]")


def question_for(item_id: str) -> str:
    return f"[item:{item_id}] What does the context say?"


def _reply(request: dict[str, Any]) -> str:
    text = "\n".join(str(m.get("content")) for m in request.get("messages", []))
    found = _ITEM.search(text)
    item_id = found.group(1) if found else "?"
    if request.get("model") == SUB:
        return f"sub answer for {'shared' if 'shared' in text else item_id}"
    turn = sum(1 for m in request["messages"] if m["role"] == "assistant")
    if turn == 0:
        # A shared prompt (same for every item) when the question asks for it: cacheable.
        prompt = "'shared [cache] question'" if "[cache]" in text else f"'sub [item:{item_id}]'"
        return f"```repl\nnote = llm_query({prompt})\nprint(note)\n```"
    return f"FINAL(answer-{item_id})"


def serve(counts_file: str, latency: float) -> None:
    from rlm_core.testing import LoopbackLLMServer
    from rlm_core.testing.tokens import count_message_tokens, count_tokens

    lock = threading.Lock()
    counts = open(counts_file, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the server

    def reply(request: dict[str, Any]) -> str:
        answer = _reply(request)
        text = "\n".join(str(m.get("content")) for m in request.get("messages", []))
        found = _ITEM.search(text)
        tokens_in = count_message_tokens(request.get("messages", []))
        with lock:
            counts.write(f"{request.get('model')} {found.group(1) if found else '-'} {tokens_in} "
                         f"{count_tokens(answer)}\n")  # fmt: skip
        return answer

    server = LoopbackLLMServer(reply, latency=latency).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


class ServerProcess:
    """The trajectory server in a child process; ``counts()`` reads what it was asked."""

    def __init__(self, workdir: Path, latency: float = 0.0) -> None:
        self.counts_file = workdir / "server-counts.txt"
        self.counts_file.touch()
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self.counts_file), str(latency)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()
        assert self.base_url.startswith("http://127.0.0.1:"), self.base_url

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.counts_file.read_text().splitlines() if line.strip()]

    def counts(self, model: str) -> Counter[str]:
        """Requests per item id for one model."""
        return Counter(parts[1] for parts in self.lines() if parts[0] == model)

    def tokens(self) -> int:
        return sum(int(parts[2]) + int(parts[3]) for parts in self.lines())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def cli_flags(self, sub_temperature_zero: bool = False) -> list[str]:
        flags = ["--backend", "openai", "--model", ROOT, "--sub-model", SUB, "--backend-kwarg",
                 f"base_url={self.base_url}", "api_key=test", "max_retries=0"]  # fmt: skip
        if sub_temperature_zero:
            flags.append("temperature=0")
        return flags

    def rlm_kwargs(self, sub_temperature_zero: bool = False) -> dict[str, Any]:
        connection = {"base_url": self.base_url, "api_key": "test", "max_retries": 0}
        sub = {"model_name": SUB, **connection}
        if sub_temperature_zero:
            sub["temperature"] = 0
        return {
            "backend": "openai",
            "backend_kwargs": {"model_name": ROOT, **connection},
            "other_backends": ["openai"],
            "other_backend_kwargs": [sub],
        }


@pytest.fixture
def batch_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path)
    yield server
    server.stop()


def test_the_trajectory_server_counts_each_items_requests(batch_server: ServerProcess) -> None:
    from rlm_core import RLM

    with RLM(**batch_server.rlm_kwargs()) as rlm:
        result = rlm.completion("some context", root_prompt=question_for("x1"))
    assert result.response == "answer-x1"
    assert batch_server.counts(ROOT) == {"x1": 2}
    assert batch_server.counts(SUB) == {"x1": 1}
    assert batch_server.tokens() == result.usage_summary.total.total_tokens


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
