"""``rlm serve --ray`` on a real local Ray cluster: completions run in the worker actors (not in the
front), each key is charged exactly what the model server counted, and a client that leaves or a
server that stops cancels the run on its worker, whose log ends ``cancelled`` with the partial
answer. CI installs Ray and runs these; elsewhere they skip when Ray is missing."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from ray_support import ray, ray_cluster  # noqa: F401 (a fixture every test here uses)
from test_serve_faults import USER, Model, check_cancelled_log, post_in_background, profile, wait_until

from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.serve.config import parse_config
from rlm_core.serve.harness import ServerThread
from rlm_core.testing import LoopbackLLMServer, repl

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
def model() -> Iterator[Model]:
    made = Model()
    with made.server:
        yield made
        made.release.set()


def ray_config(tmp_path: Path, llm: LoopbackLLMServer, grace: float = 30.0, workers: int = 2) -> Any:
    return parse_config(
        {
            "server": {
                "limits_db": str(tmp_path / "limits.sqlite3"),
                "grace_seconds": grace,
                "ray": "local",
                "ray_workers": workers,
            },
            "profiles": {"p": profile(llm, logger=f"jsonl:{tmp_path / 'logs'}")},
        }
    )


def worker_pids(server: ServerThread) -> list[int]:
    remote = server.service.completions.remote
    assert remote is not None
    return list(ray.get([worker.pid.remote() for worker in remote.workers]))


def test_completions_run_on_the_workers_and_each_key_is_charged_what_the_model_counted(
    tmp_path: Path,
) -> None:
    with (
        LoopbackLLMServer(
            lambda r: (
                "SUB:" + r["messages"][-1]["content"]
                if r["model"] == "sub"
                else repl("FINAL(llm_query(context))")
            )
        ) as llm,
        ServerThread(ray_config(tmp_path, llm)) as server,
    ):
        pids = worker_pids(server)
        assert len(pids) == 2 and os.getpid() not in pids
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        for n in range(4):
            messages = [{"role": "user", "content": f"tag-{n}"}]
            reply = client.chat.completions.create(model="p", messages=messages)
            extension = (reply.model_extra or {})["rlm"]
            assert reply.choices[0].message.content == f"SUB:tag-{n}"
            assert extension["stop_reason"] == "final" and extension["answer_source"] == "final"
            trajectory = read_trajectory(Path(extension["log_path"]))  # written by a worker
            assert trajectory.result is not None and trajectory.result.response == f"SUB:tag-{n}"
        usage = server.service.completions.limiter.usage("anonymous")
        assert usage.completions == 4 and usage.in_flight == 0
        assert usage.tokens == llm.total_input_tokens + llm.total_output_tokens


def test_a_client_that_leaves_cancels_the_run_on_its_worker(model: Model, tmp_path: Path) -> None:
    with ServerThread(ray_config(tmp_path, model.server)) as server:

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
        wait_until(lambda: len(server.service.completions) == 0)
        check_cancelled_log(tmp_path / "logs")  # the worker's run ended, with the partial answer
        usage = server.service.completions.limiter.usage("anonymous")
        assert usage.in_flight == 0 and usage.completions == 1
        assert usage.tokens > 0  # the root call the worker made is charged, from its partial result


def test_a_stop_past_the_grace_period_cancels_the_workers_runs_and_answers_503(
    model: Model, tmp_path: Path
) -> None:
    server = ServerThread(ray_config(tmp_path, model.server, grace=0.2)).start()
    client, responses = post_in_background(server)
    wait_until(lambda: model.subcalls() >= 1)
    server.stop()
    client.join(30)
    (response,) = responses
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "cancelled" and "shutting down" in body["error"]["message"]
    # The worker's partial result reached the front: its run id, and the log it wrote.
    assert body["rlm"]["stop_reason"] == "cancelled" and body["rlm"]["run_id"]
    assert body["rlm"]["log_path"] and Path(body["rlm"]["log_path"]).exists()
    check_cancelled_log(tmp_path / "logs")


def test_a_worker_killed_mid_run_answers_502_and_charges_the_whole_reservation(
    model: Model, tmp_path: Path
) -> None:
    with ServerThread(ray_config(tmp_path, model.server, workers=1)) as server:
        client, responses = post_in_background(server)
        wait_until(lambda: model.subcalls() >= 1)
        remote = server.service.completions.remote
        assert remote is not None
        ray.kill(remote.workers[0], no_restart=True)
        client.join(30)
        (response,) = responses
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "worker_failed"
        usage = server.service.completions.limiter.usage("anonymous")
        assert usage.in_flight == 0 and usage.completions == 1
        # What the dead worker spent is not known: the key is charged all it was allowed to spend.
        assert usage.tokens == server.service.completions.profiles["p"].wanted({})[0]
