"""``rlm serve`` under load: 200 concurrent requests from 20 keys through the real ``openai``
AsyncOpenAI SDK, plain and streamed, spread over two fronts that share one limits file, backed by
the loopback model server. No answer crosses to another request, each key's usage is exactly what
the model server counted for it, and keys with a small daily token ceiling get 429s once it is
spent and never go past it.

Each key has a profile of its own whose models are named after it (``root-K``, ``sub-K``), so the
model server's own per-model count is the count per key. The unlimited keys' first model calls
are held until all 180 of their completions are in flight, so the concurrency is real, not a
queue that drained early. Every wait is on what the assertions read; none is on time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from rlm_core.serve.config import parse_config
from rlm_core.serve.harness import ServerThread
from rlm_core.serve.keys import ApiKey, KeyRing, hash_key
from rlm_core.serve.limits import KeyLimits
from rlm_core.testing import LoopbackLLMServer, repl

KEYS = 20
PER_KEY = 10
CEILING_KEYS = (18, 19)  # keys with a small daily token ceiling; the others have none
CEILING = 20_000
UNLIMITED = [k for k in range(KEYS) if k not in CEILING_KEYS]
PAD = " pad" * 3_000  # a ceiling key's sub model says far more than its budget lets through


class Model:
    """Root: one cell that asks the sub model about the context and finishes with its answer. Sub:
    echoes the tag it was asked about (a ceiling key's tag with a long tail, cut to the budget)."""

    def __init__(self) -> None:
        self.all_in = threading.Event()
        self.held = 0
        self.in_flight_when_all_in = 0
        self.fronts: list[ServerThread] = []
        self._lock = threading.Lock()
        self.server = LoopbackLLMServer(self.reply)

    def reply(self, request: dict[str, Any]) -> str:
        model = request["model"]
        if model.startswith("sub-"):
            tag = request["messages"][-1]["content"].split("echo ", 1)[-1]
            return "SUB:" + tag + (PAD if tag.startswith("hungry") else "")
        if int(model.split("-")[1]) in UNLIMITED and not self.all_in.is_set():
            with self._lock:
                self.held += 1
                if self.held == len(UNLIMITED) * PER_KEY:
                    self.in_flight_when_all_in = sum(len(f.service.completions) for f in self.fronts)
                    self.all_in.set()
            assert self.all_in.wait(60), "not every completion reached the model"
        return repl("FINAL(llm_query('echo ' + str(context)))")


@pytest.fixture
def model() -> Iterator[Model]:
    made = Model()
    with made.server:
        yield made
        made.all_in.set()


def profiles(llm: LoopbackLLMServer) -> dict[str, Any]:
    connection = {"base_url": llm.base_url, "api_key": "sk-load", "max_retries": 0, "timeout": 60}
    out: dict[str, Any] = {}
    for k in range(KEYS):
        out[f"p{k}"] = {
            "backend": "openai",
            "backend_kwargs": {"model_name": f"root-{k}", **connection},
            "other_backends": ["openai"],
            "other_backend_kwargs": [{"model_name": f"sub-{k}", **connection}],
            "max_iterations": 3,
            **({"max_root_tokens": 8_000, "max_sub_tokens": 2_000} if k in CEILING_KEYS else {}),
        }
    return out


def keyring() -> KeyRing:
    return KeyRing(
        [
            ApiKey(
                f"k{k}",
                hash_key(f"key-{k}"),
                KeyLimits(max_concurrent=PER_KEY, tokens_per_day=CEILING if k in CEILING_KEYS else None),
                frozenset({f"p{k}"}),
            )
            for k in range(KEYS)
        ]
    )


def tag(k: int, j: int) -> str:
    return f"{'hungry' if k in CEILING_KEYS else 'tag'}-k{k}-r{j}"


async def ask(client: openai.AsyncOpenAI, k: int, j: int) -> tuple[str, int, dict[str, Any]]:
    """One request, one of four shapes (plain or streamed; the tag as the message or as the
    ``context`` extra body): its answer, its usage and its ``rlm`` object."""
    extra: dict[str, Any] = {}
    messages: list[Any] = [{"role": "user", "content": tag(k, j)}]
    if j % 3 == 0:
        extra, messages = {"context": tag(k, j)}, [{"role": "user", "content": "Which tag is it?"}]
    if j % 4 < 2:
        reply = await client.chat.completions.create(model=f"p{k}", messages=messages, extra_body=extra)
        assert reply.usage is not None
        return (
            reply.choices[0].message.content or "",
            reply.usage.total_tokens,
            (reply.model_extra or {})["rlm"],
        )
    stream = await client.chat.completions.create(
        model=f"p{k}",
        messages=messages,
        extra_body=extra,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, extension = "", None, None
    async for piece in stream:
        if piece.choices:
            text += piece.choices[0].delta.content or ""
            if piece.choices[0].finish_reason:
                extension = (piece.model_extra or {})["rlm"]
        if piece.usage is not None:
            usage = piece.usage.total_tokens
    assert usage is not None and extension is not None
    return text, usage, extension


def spent_by_model_server(llm: LoopbackLLMServer, k: int) -> int:
    totals = llm.model_totals
    return sum(
        totals[name].input_tokens + totals[name].output_tokens
        for name in (f"root-{k}", f"sub-{k}")
        if name in totals
    )


def test_200_concurrent_requests_from_20_keys_over_two_fronts(model: Model, tmp_path: Path) -> None:
    config = parse_config(
        {
            "server": {"limits_db": str(tmp_path / "limits.sqlite3"), "min_request_tokens": 3_000},
            "profiles": profiles(model.server),
        }
    )
    keys = keyring()
    with ServerThread(config, keys) as one, ServerThread(config, keys) as two:
        fronts = model.fronts = [one, two]

        async def load() -> list[Any]:
            clients = {
                (k, f): openai.AsyncOpenAI(
                    base_url=front.base_url, api_key=f"key-{k}", max_retries=0, timeout=60
                )
                for k in range(KEYS)
                for f, front in enumerate(fronts)
            }
            try:
                requests = [ask(clients[k, j % 2], k, j) for k in range(KEYS) for j in range(PER_KEY)]
                return await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 90)
            finally:
                await asyncio.gather(*(client.close() for client in clients.values()))

        outcomes = asyncio.run(load())
        assert model.in_flight_when_all_in >= len(UNLIMITED) * PER_KEY

        limiter = one.service.completions.limiter
        run_ids: set[str] = set()
        for k in range(KEYS):
            answered = 0
            tokens = 0
            for j in range(PER_KEY):
                outcome = outcomes[k * PER_KEY + j]
                if k in CEILING_KEYS and isinstance(outcome, openai.RateLimitError):
                    # held by the key's running completions (its day is far from spent): retry soon
                    assert outcome.code == "token_ceiling_reached", outcome
                    assert outcome.response.headers["retry-after"] == "1"
                    continue
                assert not isinstance(outcome, BaseException), (k, j, outcome)
                text, usage, extension = outcome
                expected = "SUB:" + tag(k, j)
                if k in CEILING_KEYS:  # cut to the budget: the tag, then as much of the tail as fitted
                    assert text.startswith(expected) and PAD.startswith(text[len(expected) :]), (k, j)
                else:
                    assert text == expected, (k, j, text)
                assert extension["stop_reason"] == "final"
                assert extension["usage"]["total"]["total_tokens"] == usage
                run_ids.add(extension["run_id"])
                answered += 1
                tokens += usage
            if k in UNLIMITED:
                assert answered == PER_KEY
            else:
                assert answered >= 1  # the first admitted completion always fits
            ledger = limiter.usage(f"k{k}")
            assert ledger.in_flight == 0 and ledger.completions == answered
            assert ledger.tokens == tokens == spent_by_model_server(model.server, k), k
        assert len(run_ids) == sum(1 for o in outcomes if not isinstance(o, BaseException))
        everything = model.server.total_input_tokens + model.server.total_output_tokens
        assert sum(limiter.usage(f"k{k}").tokens for k in range(KEYS)) == everything

        # The ceiling keys ask on, alternating fronts, until their day is spent: never past it.
        for k in CEILING_KEYS:
            refusal = None
            for j in range(PER_KEY, PER_KEY + 30):
                front = fronts[j % 2]
                client = openai.OpenAI(base_url=front.base_url, api_key=f"key-{k}", max_retries=0)
                try:
                    reply = client.chat.completions.create(
                        model=f"p{k}", messages=[{"role": "user", "content": tag(k, j)}]
                    )
                    assert (reply.choices[0].message.content or "").startswith("SUB:" + tag(k, j))
                except openai.RateLimitError as exc:
                    refusal = exc
                    break
                finally:
                    client.close()
            assert refusal is not None and refusal.code == "token_ceiling_reached"
            assert int(refusal.response.headers["retry-after"]) > 1  # spent: until the next UTC day
            served = spent_by_model_server(model.server, k)
            assert limiter.usage(f"k{k}").tokens == served <= CEILING
            assert served > CEILING - 3_000  # spent down to less than one request's minimum
            for front in fronts:  # both fronts refuse it now, and the model hears nothing more
                again = openai.OpenAI(base_url=front.base_url, api_key=f"key-{k}", max_retries=0)
                with pytest.raises(openai.RateLimitError):
                    again.chat.completions.create(model=f"p{k}", messages=[{"role": "user", "content": "x"}])
                again.close()
            assert spent_by_model_server(model.server, k) == served
