"""``rlm serve`` under faults: a client that disconnects mid-run (plain and streamed, local and
subprocess environments), a stop with completions in flight (in-process and a real SIGTERM to
``rlm serve``), keys over their concurrency limit and daily ceilings, across two fronts sharing
the limits file. Every wait is on a condition; nothing may be left running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.serve.config import parse_config
from rlm_core.serve.harness import ServerThread
from rlm_core.serve.keys import ApiKey, KeyRing, hash_key
from rlm_core.serve.limits import KeyLimits, Limiter, Reservation
from rlm_core.testing import LoopbackLLMServer, repl
from rlm_core.types import StopReason

REPO = Path(__file__).resolve().parents[1]
PROSE = "Partial: I asked the sub model."
USER = [{"role": "user", "content": "tag-x"}]


def wait_until(condition: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class Model:
    """Root: prose, then a cell that asks the sub model; the sub model hangs until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.server = LoopbackLLMServer(self.reply)

    def reply(self, request: dict[str, Any]) -> str:
        if request["model"] == "sub":
            self.release.wait(60)
            return "SUB:late"
        return f"{PROSE}\n" + repl("FINAL(llm_query('echo ' + str(context)))")

    def subcalls(self) -> int:
        return sum(1 for r in self.server.requests if r["model"] == "sub")


@pytest.fixture
def model() -> Iterator[Model]:
    made = Model()
    with made.server:
        yield made
        made.release.set()


def profile(llm: LoopbackLLMServer, **settings: Any) -> dict[str, Any]:
    connection = {"base_url": llm.base_url, "api_key": "k", "max_retries": 0, "timeout": 60}
    return {
        "backend": "openai",
        "backend_kwargs": {"model_name": "root", **connection},
        "other_backends": ["openai"],
        "other_backend_kwargs": [{"model_name": "sub", **connection}],
        **settings,
    }


def config(tmp_path: Path, llm: LoopbackLLMServer, grace: float = 30.0, **settings: Any) -> Any:
    return parse_config(
        {
            "server": {"limits_db": str(tmp_path / "limits.sqlite3"), "grace_seconds": grace},
            "profiles": {"p": profile(llm, logger=f"jsonl:{tmp_path / 'logs'}", **settings)},
        }
    )


def post_in_background(server: ServerThread) -> tuple[threading.Thread, list[httpx.Response]]:
    """A client posting USER to ``server`` from a thread; its response lands in the list."""
    responses: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: responses.append(
            httpx.post(
                f"{server.base_url}/chat/completions", json={"model": "p", "messages": USER}, timeout=60
            )
        )
    )
    client.start()
    return client, responses


def cell_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rlm-local-cell" and t.is_alive()]


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line.split()[0]) for line in out.stdout.splitlines() if "ps -o" not in line]


def check_cancelled_log(log_dir: Path) -> None:
    (path,) = log_dir.glob("*.jsonl")
    trajectory = read_trajectory(path)
    assert trajectory.result is not None, trajectory.problems
    assert trajectory.result.stop_reason is StopReason.CANCELLED
    assert trajectory.result.response == PROSE


def check_nothing_left(server: ServerThread, tmp_path: Path) -> None:
    wait_until(lambda: len(server.service.completions) == 0)
    wait_until(lambda: cell_threads() == [])
    wait_until(lambda: children(os.getpid()) == [])
    check_cancelled_log(tmp_path / "logs")
    usage = server.service.completions.limiter.usage("anonymous")
    assert usage.in_flight == 0 and usage.completions == 1
    assert usage.tokens > 0  # the root call it made is charged


@pytest.mark.parametrize("environment", ["local", "subprocess"])
def test_a_client_that_disconnects_cancels_its_completion(
    model: Model, tmp_path: Path, environment: str
) -> None:
    with ServerThread(config(tmp_path, model.server, environment=environment)) as server:

        async def leave_mid_run() -> None:
            async with httpx.AsyncClient(timeout=60) as http:
                request = asyncio.ensure_future(
                    http.post(f"{server.base_url}/chat/completions", json={"model": "p", "messages": USER})
                )
                while model.subcalls() < 1:
                    assert not request.done()
                    await asyncio.sleep(0.02)
                request.cancel()  # closes the connection: the client is gone
                with pytest.raises(asyncio.CancelledError):
                    await request

        asyncio.run(leave_mid_run())
        check_nothing_left(server, tmp_path)


def test_a_streaming_client_that_disconnects_cancels_its_completion(model: Model, tmp_path: Path) -> None:
    with ServerThread(config(tmp_path, model.server)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        stream = client.chat.completions.create(model="p", messages=USER, stream=True)
        first = next(iter(stream))
        assert first.choices[0].delta.role == "assistant"
        wait_until(lambda: model.subcalls() >= 1)
        stream.close()
        check_nothing_left(server, tmp_path)


def test_stopping_lets_runs_finish_within_the_grace_period(model: Model, tmp_path: Path) -> None:
    server = ServerThread(config(tmp_path, model.server, grace=30.0)).start()
    replies: list[Any] = []
    worker = threading.Thread(
        target=lambda: replies.append(
            openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0).chat.completions.create(
                model="p", messages=USER
            )
        )
    )
    worker.start()
    wait_until(lambda: model.subcalls() >= 1)
    server.begin_stop()
    wait_until(lambda: server.service.stopping)
    model.release.set()  # the run finishes within the grace period: its client gets the answer
    worker.join(30)
    server.stop()
    assert replies and replies[0].choices[0].message.content == "SUB:late"


def test_stopping_cancels_runs_past_the_grace_period_and_says_so(model: Model, tmp_path: Path) -> None:
    server = ServerThread(config(tmp_path, model.server, grace=0.2)).start()
    worker, responses = post_in_background(server)
    wait_until(lambda: model.subcalls() >= 1)
    server.stop()
    worker.join(30)
    (response,) = responses
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "cancelled" and "shutting down" in body["error"]["message"]
    assert body["rlm"]["stop_reason"] == "cancelled"
    check_cancelled_log(tmp_path / "logs")
    wait_until(lambda: cell_threads() == [])


def test_sigterm_to_rlm_serve_cancels_in_flight_runs_and_leaves_no_process(
    model: Model, tmp_path: Path
) -> None:
    config_file = tmp_path / "rlm-serve.toml"
    connection = f'base_url = "{model.server.base_url}", api_key = "k", max_retries = 0, timeout = 60'
    config_file.write_text(
        f"""
[server]
port = 0
limits_db = "{tmp_path / "limits.sqlite3"}"
grace_seconds = 0.5

[profiles.p]
backend = "openai"
backend_kwargs = {{ model_name = "root", {connection} }}
other_backends = ["openai"]
other_backend_kwargs = [{{ model_name = "sub", {connection} }}]
environment = "subprocess"
logger = "jsonl:{tmp_path / "logs"}"
"""
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "rlm_core", "serve", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "rlm serve: http://127.0.0.1:" in line, process.stderr.read() if process.stderr else ""
        base_url = line.split()[2]
        responses: list[httpx.Response] = []

        def ask() -> None:
            body = {"model": "p", "messages": USER}
            responses.append(httpx.post(f"{base_url}/chat/completions", json=body, timeout=60))

        workers = [threading.Thread(target=ask) for _ in range(2)]
        for worker in workers:
            worker.start()
        wait_until(lambda: model.subcalls() >= 2)
        sandboxes = children(process.pid)
        assert len(sandboxes) == 2
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        for worker in workers:
            worker.join(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [r.status_code for r in responses] == [503, 503]
    assert all(r.json()["rlm"]["stop_reason"] == "cancelled" for r in responses)
    wait_until(lambda: not any(alive(pid) for pid in sandboxes))
    logs = list((tmp_path / "logs").glob("*.jsonl"))
    assert len(logs) == 2
    for path in logs:
        result = read_trajectory(path).result
        assert result is not None and result.stop_reason is StopReason.CANCELLED


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


# -- keys over their limits ---------------------------------------------------------------------


def keyed_config(tmp_path: Path, llm: LoopbackLLMServer) -> Any:
    # The engine estimates a prompt conservatively (the first root prompt, ~530 tokens, at ~2,050),
    # so a completion needs a few thousand tokens of budget to start.
    return parse_config(
        {
            "server": {"limits_db": str(tmp_path / "limits.sqlite3"), "min_request_tokens": 3_000},
            "profiles": {"p": profile(llm, max_root_tokens=6_000, max_sub_tokens=2_000)},
        }
    )


def test_a_key_over_its_concurrency_limit_gets_429_across_two_fronts(model: Model, tmp_path: Path) -> None:
    keys = KeyRing([ApiKey("solo", hash_key("key-solo"), KeyLimits(max_concurrent=1))])
    with (
        ServerThread(keyed_config(tmp_path, model.server), keys) as one,
        ServerThread(keyed_config(tmp_path, model.server), keys) as two,
    ):
        headers = {"authorization": "Bearer key-solo"}
        body = {"model": "p", "messages": USER}
        first: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: first.append(
                httpx.post(f"{one.base_url}/chat/completions", json=body, headers=headers, timeout=60)
            )
        )
        worker.start()
        wait_until(lambda: model.subcalls() >= 1)
        for front in (one, two):
            refused = httpx.post(f"{front.base_url}/chat/completions", json=body, headers=headers)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        model.release.set()
        worker.join(30)
        assert first[0].status_code == 200
        again = httpx.post(f"{two.base_url}/chat/completions", json=body, headers=headers, timeout=60)
        assert again.status_code == 200


def test_a_key_over_its_daily_token_ceiling_gets_429_and_never_spends_past_it(tmp_path: Path) -> None:
    with LoopbackLLMServer(
        lambda r: "SUB:x" if r["model"] == "sub" else repl("FINAL(llm_query('echo hi'))")
    ) as llm:
        ceiling = 5_000  # enough for about four completions of ~550 tokens, then under 3,000 left
        keys = KeyRing([ApiKey("thrifty", hash_key("key-t"), KeyLimits(tokens_per_day=ceiling))])
        with ServerThread(keyed_config(tmp_path, llm), keys) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="key-t", max_retries=0)
            statuses: list[int] = []
            for _ in range(10):
                try:
                    reply = client.chat.completions.create(model="p", messages=USER)
                    assert (reply.model_extra or {})["rlm"]["stop_reason"] == "final"
                    statuses.append(200)
                except openai.RateLimitError as exc:
                    statuses.append(429)
                    assert exc.response.headers["retry-after"].isdigit()
                    assert int(exc.response.headers["retry-after"]) > 1  # until the next UTC day
                    assert exc.code == "token_ceiling_reached"
                    break
            assert statuses[0] == 200 and statuses[-1] == 429
            spent = server.service.completions.limiter.usage("thrifty").tokens
            served = llm.total_input_tokens + llm.total_output_tokens
            assert spent == served <= ceiling


def test_dead_processes_do_not_hold_a_keys_slots(tmp_path: Path) -> None:
    limiter = Limiter(tmp_path / "limits.sqlite3")
    try:
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        pid = int(dead.stdout)
        limiter._call(
            lambda: limiter._db.execute(  # type: ignore[union-attr]
                "INSERT INTO inflight VALUES ('stale', 'k', '2000-01-01', ?, 10, 0, 0)", (pid,)
            )
        )
        admitted = asyncio.run(limiter.admit("k", KeyLimits(max_concurrent=1), 1_000, None))
        assert isinstance(admitted, Reservation) and admitted.tokens == 1_000
    finally:
        limiter.close()


def test_a_usd_ceiling_needs_prices_and_caps_the_cost(tmp_path: Path) -> None:
    with LoopbackLLMServer(
        lambda r: "SUB:x" if r["model"] == "sub" else repl("FINAL(llm_query('echo hi'))")
    ) as llm:
        priced = profile(llm)
        for kwargs in (priced["backend_kwargs"], priced["other_backend_kwargs"][0]):
            kwargs["price"] = [100.0, 100.0]  # USD per million tokens: a completion costs ~$0.055
        unpriced = profile(llm)
        cfg = parse_config(
            {
                # the first root prompt is estimated at ~2,050 tokens: ~$0.2 must be left to start
                "server": {"limits_db": str(tmp_path / "l.sqlite3"), "min_request_usd": 0.25},
                "profiles": {"priced": priced, "free": unpriced},
            }
        )
        keys = KeyRing([ApiKey("usd", hash_key("key-usd"), KeyLimits(usd_per_day=0.5))])
        with ServerThread(cfg, keys) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="key-usd", max_retries=0)
            with pytest.raises(openai.BadRequestError, match="price"):
                client.chat.completions.create(model="free", messages=USER)
            outcomes = []
            for _ in range(10):
                try:
                    reply = client.chat.completions.create(model="priced", messages=USER)
                    outcomes.append((reply.model_extra or {})["rlm"]["stop_reason"])
                except openai.RateLimitError as exc:
                    outcomes.append(str(exc.code))
                    break
            assert outcomes[-1] == "cost_ceiling_reached" and set(outcomes[:-1]) == {"final"}, outcomes
            spent = server.service.completions.limiter.usage("usd").usd
            served = (llm.total_input_tokens + llm.total_output_tokens) * 100 / 1e6
            assert spent == pytest.approx(served) and spent <= 0.5
