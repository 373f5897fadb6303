"""The batch layer against the trajectory server (its own process): scale, kill-and-resume,
job-wide ceilings, bad input, the sub-call cache, retrying failures and the Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_batch_support import ROOT, SUB, ServerProcess, question_for

from rlm_core import RLM
from rlm_core.batch import BatchItem, arun_batch, run_batch


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = ServerProcess(tmp_path)
    yield running
    running.stop()


def write_items(path: Path, ids: list[str], **extra: Any) -> Path:
    with path.open("w") as out:
        for item_id in ids:
            out.write(
                json.dumps({"id": item_id, "context": "ctx", "question": question_for(item_id), **extra})
            )
            out.write("\n")
    return path


def read_results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rlm_batch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rlm_core", "batch", *args], capture_output=True, text=True, timeout=240
    )


async def test_a_thousand_items_at_concurrency_fifty(server: ServerProcess, tmp_path: Path) -> None:
    ids = [f"i{n:04d}" for n in range(1000)]
    output = tmp_path / "results.jsonl"
    report = await arun_batch(
        write_items(tmp_path / "items.jsonl", ids),
        output,
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(),
        max_concurrent=50,
        max_model_calls=64,
    )
    records = read_results(output)
    assert Counter(r["id"] for r in records) == Counter(ids)  # each exactly once
    assert all(r["status"] == "ok" and r["response"] == f"answer-{r['id']}" for r in records)
    assert server.counts(ROOT) == Counter({i: 2 for i in ids})
    assert server.counts(SUB) == Counter({i: 1 for i in ids})
    summary = report.summary
    assert (summary.ok, summary.failed, summary.by_stop_reason) == (1000, 0, {"final": 1000})
    assert summary.tokens == server.tokens() == sum(r["tokens"] for r in records)
    assert summary.p50_duration is not None and summary.p95_duration >= summary.p50_duration
    assert [r.id for r in report.results] == ids  # input order


def test_sigkill_mid_job_then_resume_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, latency=0.02)
    try:
        ids = [f"k{n:03d}" for n in range(300)]
        items, output = write_items(tmp_path / "items.jsonl", ids), tmp_path / "results.jsonl"
        command = [sys.executable, "-m", "rlm_core", "batch", str(items), "-o", str(output),
                   "--max-concurrent", "20", *server.cli_flags()]  # fmt: skip
        job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not output.exists() or len(read_results(output)) < 60):
            assert job.poll() is None, job.stderr.read() if job.stderr else ""
            time.sleep(0.05)
        os.kill(job.pid, signal.SIGKILL)
        job.wait(timeout=10)
        first_run = {r["id"] for r in read_results(output)}
        assert 60 <= len(first_run) < len(ids)

        finished = rlm_batch(str(items), "-o", str(output), "--max-concurrent", "20", *server.cli_flags())
        assert finished.returncode == 0, finished.stderr
        assert f"{len(first_run)} done before" in finished.stdout
        records = read_results(output)
        assert Counter(r["id"] for r in records) == Counter(ids)  # none lost, none written twice
        root = server.counts(ROOT)
        for item_id in first_run:  # finished before the kill: never asked again
            assert root[item_id] == 2, item_id
        asked_twice = [i for i in ids if root[i] > 2]
        assert all(i not in first_run for i in asked_twice)
        assert len(asked_twice) <= 20  # at most the items in flight at the kill
        assert all(root[i] >= 2 for i in ids)
    finally:
        server.stop()


async def test_job_token_ceiling_stops_new_items_at_the_right_point(
    server: ServerProcess, tmp_path: Path
) -> None:
    ids = [f"c{n:02d}" for n in range(20)]
    probe = await arun_batch(
        [{"id": "c99", "context": "ctx", "question": question_for("c99")}],
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(),
    )
    per_item = probe.results[0].tokens
    assert per_item > 0
    output = tmp_path / "results.jsonl"
    report = await arun_batch(
        write_items(tmp_path / "items.jsonl", ids),
        output,
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(),
        max_concurrent=1,
        max_job_tokens=int(per_item * 5.5),
    )
    assert [r["id"] for r in read_results(output)] == ids[:5]  # the 6th would pass the ceiling
    assert report.summary.ok == 5 and report.summary.not_started == 15
    assert "job ceiling" in (report.summary.stopped_by or "")
    assert sum(server.counts(ROOT).values()) == 2 * 6  # the probe and five items, nothing more
    # A rerun with the same ceiling starts nothing new (the job's spend is already near it) ...
    again = await arun_batch(
        output.parent / "items.jsonl",
        output,
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(),
        max_job_tokens=int(per_item * 5.5),
    )
    assert again.summary.resumed == 5 and again.summary.ok == 0
    # ... and a raised one continues where it stopped, with up to max_concurrent items in flight.
    raised = await arun_batch(
        output.parent / "items.jsonl",
        output,
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(),
        max_job_tokens=per_item * 10,
        max_concurrent=3,
    )
    assert raised.summary.ok + raised.summary.resumed <= 10
    assert raised.summary.ok >= 3
    assert server.tokens() <= per_item * 11 + per_item * 3


def test_bad_lines_missing_files_and_unknown_settings_fail_only_their_item(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "doc.txt").write_text("a document")
    lines = [
        json.dumps({"id": "good1", "context": "c", "question": question_for("good1")}),
        '{"id": "broken", "context": ',
        json.dumps({"id": "nofile", "context_path": "missing.txt", "question": question_for("nofile")}),
        json.dumps({"id": "odd", "context": "c", "question": question_for("odd"), "temprature": 0}),
        json.dumps({"id": "good2", "context_path": "doc.txt", "question": question_for("good2")}),
    ]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(lines) + "\n")
    output = tmp_path / "results.jsonl"
    done = rlm_batch(
        str(items), "-o", str(output), "--json", "--log-dir", str(tmp_path / "logs"), *server.cli_flags()
    )
    assert done.returncode == 1, done.stderr
    by_id = {r["id"]: r for r in read_results(output)}
    assert set(by_id) == {"good1", "line-2", "nofile", "odd", "good2"}
    assert by_id["good1"]["status"] == by_id["good2"]["status"] == "ok"
    assert "line 2 is not valid JSON" in by_id["line-2"]["error"]
    assert (
        "cannot read context_path" in by_id["nofile"]["error"] and "missing.txt" in by_id["nofile"]["error"]
    )
    assert "unknown settings ['temprature']" in by_id["odd"]["error"]
    assert server.counts(ROOT).keys() == {"good1", "good2"}
    log = Path(by_id["good2"]["log_path"])  # each item's trajectory, for rlm view
    assert log.parent == tmp_path / "logs" and "answer-good2" in log.read_text()
    summary = json.loads(done.stdout)
    assert summary["ok"] == 2 and summary["failed"] == 3
    progress = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert progress[0]["event"] == "start" and progress[0]["total"] == 5
    assert progress[-1]["event"] == "end"
    assert sum(1 for p in progress if p["event"] == "item") == 5


async def test_sub_call_cache_asks_each_identical_sub_call_once_across_runs(
    server: ServerProcess, tmp_path: Path
) -> None:
    cache = tmp_path / "subcalls.sqlite"
    items = [
        {"id": f"s{n}", "context": "c", "question": question_for(f"s{n}") + " [cache]"} for n in range(6)
    ]
    first = await arun_batch(
        items,
        tmp_path / "one.jsonl",
        rlm_factory=RLM,
        rlm_kwargs=server.rlm_kwargs(True),
        cache=cache,
        max_concurrent=1,
    )
    assert all(r.ok for r in first.results)
    assert sum(server.counts(SUB).values()) == 1  # six items, one identical sub-call, asked once
    assert [r.cached_calls for r in first.results] == [0, 1, 1, 1, 1, 1]
    second = await arun_batch(
        items, tmp_path / "two.jsonl", rlm_factory=RLM, rlm_kwargs=server.rlm_kwargs(True), cache=cache
    )
    assert sum(server.counts(SUB).values()) == 1  # the rerun asked nothing for it
    assert all(r.ok and r.cached_calls == 1 for r in second.results)
    assert all(
        r.usage["sub"]["total_tokens"] == 0 and r.usage["sub"]["total_calls"] == 1 for r in second.results
    )
    # Without temperature 0 nothing is cached: another answer could come back.
    await arun_batch(
        items[:2], tmp_path / "three.jsonl", rlm_factory=RLM, rlm_kwargs=server.rlm_kwargs(), cache=cache
    )
    assert sum(server.counts(SUB).values()) == 3


async def test_failed_items_are_kept_until_retry_failed(server: ServerProcess, tmp_path: Path) -> None:
    items = write_items(tmp_path / "items.jsonl", ["f1", "f2"], max_iterations=1)  # needs 2 turns
    output, kwargs = tmp_path / "results.jsonl", server.rlm_kwargs()
    first = await arun_batch(items, output, rlm_factory=RLM, rlm_kwargs=kwargs)
    assert [r["stop_reason"] for r in read_results(output)] == ["max_iterations"] * 2
    assert first.summary.failed == 2 and first.summary.by_stop_reason == {"max_iterations": 2}
    asked = sum(server.counts(ROOT).values())
    again = await arun_batch(items, output, rlm_factory=RLM, rlm_kwargs=kwargs)
    assert again.summary.resumed == 2 and sum(server.counts(ROOT).values()) == asked
    retry = await arun_batch(items, output, rlm_factory=RLM, rlm_kwargs=kwargs, retry_failed=True)
    assert retry.summary.failed == 2 and sum(server.counts(ROOT).values()) == 2 * asked


def test_rlm_batch_in_input_or_completion_order(server: ServerProcess, tmp_path: Path) -> None:
    items = [{"id": f"a{n}", "context": "c", "question": question_for(f"a{n}")} for n in range(8)]
    items.append(
        BatchItem(id="tuned", question=question_for("tuned"), context="c", settings={"max_iterations": 1})
    )
    with RLM(**server.rlm_kwargs()) as rlm:
        ordered = rlm.batch(items, max_concurrent=4)
        assert [r.id for r in ordered] == [f"a{n}" for n in range(8)] + ["tuned"]
        assert [r.response for r in ordered[:8]] == [f"answer-a{n}" for n in range(8)]
        # An item's own settings get an RLM built from this RLM's arguments (RLM.init_kwargs).
        assert ordered[-1].iterations == 1 and ordered[-1].stop_reason == "max_iterations"
        unordered = rlm.batch(items[:8], max_concurrent=4, ordered=False)
        assert sorted(r.id for r in unordered) == [f"a{n}" for n in range(8)]
        tuned = rlm.batch(items[-1:], rlm_kwargs=server.rlm_kwargs())
        assert tuned[0].stop_reason == "max_iterations"
        assert rlm.completion("c", root_prompt=question_for("after")).response == "answer-after"


def test_a_folder_of_documents_with_one_question(server: ServerProcess, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"d{n}.txt").write_text(f"document {n}")
    report = run_batch(docs, question=question_for("folder"), rlm_factory=RLM, rlm_kwargs=server.rlm_kwargs())
    assert [r.id for r in report.results] == ["d0.txt", "d1.txt", "d2.txt"]
    assert all(r.response == "answer-folder" for r in report.results)


class CountingRLM(RLM):
    """A subclass, to see that items with their own settings are built as the caller's kind of RLM."""

    built: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        CountingRLM.built.append(kwargs)
        super().__init__(**kwargs)


def test_items_with_settings_are_built_by_the_factory(server: ServerProcess) -> None:
    CountingRLM.built.clear()
    tuned = BatchItem(id="t", question=question_for("t"), context="c", settings={"max_iterations": 1})
    with CountingRLM(**server.rlm_kwargs()) as rlm:
        (result,) = rlm.batch([tuned])  # factory: type(rlm)
    assert result.stop_reason == "max_iterations"
    assert [kwargs.get("max_iterations") for kwargs in CountingRLM.built] == [None, 1]

    CountingRLM.built.clear()
    report = run_batch([tuned], rlm_factory=CountingRLM, rlm_kwargs=server.rlm_kwargs())
    assert report.results[0].stop_reason == "max_iterations"
    assert [kwargs.get("max_iterations") for kwargs in CountingRLM.built] == [1]


def test_rlm_kwargs_without_a_factory_says_what_to_pass(server: ServerProcess) -> None:
    from rlm_core.batch import BatchInputError

    with pytest.raises(BatchInputError, match=r"rlm_factory=rlm_core\.RLM"):
        run_batch([{"id": "x", "context": "c", "question": "q"}], rlm_kwargs=server.rlm_kwargs())
    assert server.counts(ROOT) == {}  # refused before any model call
