"""The batch layer on a real local Ray cluster: a worker killed mid-job, ceilings held by the ledger
actor. CI installs Ray and runs these; elsewhere they skip when Ray is missing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray_support import ray, ray_cluster  # noqa: F401 (a fixture every test here uses)
from test_batch_support import ROOT, ServerProcess, question_for

from rlm_core import RLM
from rlm_core.batch import BatchLockedError, arun_batch, lock_path_for, run_batch
from rlm_core.batch.holder import Holder

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path, latency=0.05)
    yield running
    running.stop()


def items(ids: list[str]) -> list[dict[str, Any]]:
    return [{"id": i, "context": "ctx", "question": question_for(i)} for i in ids]


def worker_pids() -> list[int]:
    listing = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines() if "ray::_BatchWorker" in line]


async def test_a_killed_worker_loses_no_item_and_duplicates_none(
    server: ServerProcess, tmp_path: Path
) -> None:
    ids = [f"r{n:02d}" for n in range(60)]
    output = tmp_path / "results.jsonl"
    killed: list[int] = []

    async def kill_a_worker_mid_job() -> None:
        while not output.exists() or len(output.read_text().splitlines()) < 10:
            await asyncio.sleep(0.05)
        pids = worker_pids()
        assert pids, "no worker actor process found"
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    killer = asyncio.create_task(kill_a_worker_mid_job())
    report = await arun_batch(
        items(ids), output, rlm_factory=RLM, rlm_kwargs=server.rlm_kwargs(), executor="ray", max_concurrent=8
    )
    await killer
    assert killed
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert Counter(r["id"] for r in records) == Counter(ids)  # complete and exactly once
    assert all(r["status"] == "ok" and r["response"] == f"answer-{r['id']}" for r in records)
    assert report.summary.ok == len(ids)
    root = server.counts(ROOT)
    retried = [i for i in ids if root[i] > 2]
    # The killed worker's items in flight (if the kill caught any: on a loaded machine it can land
    # between items) were asked again, never more than its share of the items in flight.
    assert len(retried) <= 4
    assert report.summary.tokens <= server.tokens()  # retried items were asked, but counted once


async def test_the_ledger_actor_holds_the_job_ceiling(server: ServerProcess, tmp_path: Path) -> None:
    probe = await arun_batch(
        items(["r99"]), rlm_factory=RLM, rlm_kwargs=server.rlm_kwargs()
    )  # tokens of one item
    per_item = probe.results[0].tokens
    ids = [f"q{n:02d}" for n in range(12)]
    report = await arun_batch(
        items(ids),
        tmp_path / "results.jsonl",
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(),
        executor="ray",
        max_concurrent=1,
        max_job_tokens=int(per_item * 4.5),
        max_model_calls=1,
    )
    assert report.summary.ok == 4 and report.summary.not_started == 8
    assert [r.id for r in report.results if r.ok] == ids[:4]
    assert sum(server.counts(ROOT).values()) == 2 * 5


async def test_the_driver_holds_the_output_for_the_whole_ray_job(
    server: ServerProcess, tmp_path: Path
) -> None:
    output = tmp_path / "results.jsonl"
    seen: list[tuple[Holder | None, BaseException | None]] = []

    def second_job_while_running(result: Any) -> None:
        if seen:
            return
        holder = Holder.parse(lock_path_for(output).read_text())
        try:  # another job on the same output, started while this one runs on the cluster
            run_batch(items(["x1"]), output, rlm_factory=RLM, rlm_kwargs=server.rlm_kwargs())
        except BatchLockedError as exc:
            seen.append((holder, exc))
        else:
            seen.append((holder, None))

    ids = [f"l{n}" for n in range(6)]
    report = await arun_batch(
        items(ids),
        output,
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(),
        executor="ray",
        max_concurrent=2,
        on_result=second_job_while_running,
    )
    ((holder, refused),) = seen
    assert holder is not None and holder.pid == os.getpid()  # the driver, which writes the file
    assert isinstance(refused, BatchLockedError) and f"pid {os.getpid()}" in str(refused)
    assert report.summary.ok == len(ids)
    assert Counter(json.loads(line)["id"] for line in output.read_text().splitlines()) == Counter(ids)
    assert server.counts(ROOT)["x1"] == 0  # the refused job asked nothing
    assert not lock_path_for(output).exists()


def test_rlm_batch_ray_joins_a_running_cluster(server: ServerProcess, tmp_path: Path) -> None:
    items_file = tmp_path / "items.jsonl"
    items_file.write_text("".join(json.dumps(item) + "\n" for item in items([f"c{n}" for n in range(10)])))
    output = tmp_path / "results.jsonl"
    command = ["rlm", "batch", str(items_file), "-o", str(output), "--ray", "auto", "--max-concurrent", "4",
               "--json", "--log-dir", str(tmp_path / "logs"), *server.cli_flags()]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "rlm_core", *command[1:]], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["ok"] == 10
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == [f"c{n}" for n in range(10)]
    assert all(Path(r["log_path"]).parent == tmp_path / "logs" for r in records)  # written by the workers
    assert ray.cluster_resources().get("CPU") == 2  # the job left the cluster it joined running
