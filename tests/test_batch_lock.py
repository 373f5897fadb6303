"""One batch job per output file, with real processes: a second job refuses and names the holder, a
SIGKILLed holder's lock is taken over, two jobs started together run once, and ``rlm batch`` says so.

Run as ``python tests/test_batch_lock.py hold OUTPUT`` (holds the lock until a line on stdin) or
``... batch OUTPUT COUNT BLOCK_AT [--go]``: a batch of COUNT scripted items, one at a time, that
prints ``running`` and waits for a line on stdin at model call BLOCK_AT (with ``--go`` it first
prints ``ready`` and waits for a line); it prints ``refused PID`` (exit 3) when the output is held.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import IO, Any

import pytest

from rlm_core import RLM
from rlm_core.batch import BatchLockedError, OutputLock, lock_path_for, run_batch
from rlm_core.batch.holder import Holder
from rlm_core.testing import ScriptedClient

EXIT_REFUSED = 3


def items(count: int) -> list[dict[str, Any]]:
    return [{"id": f"i{n:02d}", "context": "ctx", "question": "q"} for n in range(count)]


def result_ids(output: Path) -> Counter[str]:
    return Counter(json.loads(line)["id"] for line in output.read_text().splitlines() if line.strip())


def _child_batch(output: str, count: int, block_at: int, wait_for_go: bool) -> int:
    calls = 0

    def reply(request: Any) -> str:
        nonlocal calls
        if calls == block_at:
            print("running", flush=True)
            sys.stdin.readline()  # the test lets the job go on (or kills it here)
        calls += 1
        return "FINAL(done)"

    if wait_for_go:
        print("ready", flush=True)
        sys.stdin.readline()
    try:
        with RLM(backend=ScriptedClient(reply)) as rlm:
            report = run_batch(items(count), output, rlm=rlm, max_concurrent=1)
    except BatchLockedError as exc:
        print(f"refused {exc.holder.pid if exc.holder else '?'}", flush=True)
        return EXIT_REFUSED
    print(f"done {report.summary.ok} {report.summary.resumed}", flush=True)
    return 0


def _child(argv: list[str]) -> int:
    if argv[0] == "hold":
        with OutputLock(argv[1]):
            print("held", flush=True)
            sys.stdin.readline()
        return 0
    return _child_batch(argv[1], int(argv[2]), int(argv[3]), "--go" in argv)


class Child:
    """This file run as a child process; ``line()`` waits for its next stdout line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid
        self._lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.strip())
        self._lines.put("<eof>")

    def line(self, timeout: float = 120) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child {self.pid} said nothing in {timeout}s") from None

    def send(self, text: str = "") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def finish(self) -> tuple[int, str]:
        self.process.stdin.close()  # type: ignore[union-attr]
        code = self.process.wait(timeout=120)
        return code, self.process.stderr.read() if self.process.stderr else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def children() -> Any:
    started: list[Child] = []

    def start(*args: str) -> Child:
        child = Child(*args)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def scripted_rlm() -> RLM:
    return RLM(backend=ScriptedClient(["FINAL(done)"]))


def test_a_second_job_refuses_while_a_running_job_holds_the_output(children: Any, tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    holder = children("batch", str(output), "3", "0")
    assert holder.line() == "running"  # its first item waits on us: the job is alive and holds the output
    with scripted_rlm() as rlm, pytest.raises(BatchLockedError) as refused:
        run_batch(items(3), output, rlm=rlm)
    assert refused.value.holder is not None and refused.value.holder.pid == holder.pid
    message = str(refused.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}" in message
    assert f"kill {holder.pid}" in message and "another output file" in message
    assert not output.exists() or result_ids(output) == Counter()  # the refused job wrote nothing

    holder.send()
    assert holder.line() == "done 3 0"
    assert holder.finish()[0] == 0
    assert not lock_path_for(output).exists()  # removed at the job's end
    with scripted_rlm() as rlm:
        report = run_batch(items(4), output, rlm=rlm)  # the holder is gone: this job runs
    assert (report.summary.ok, report.summary.resumed) == (1, 3)
    assert result_ids(output) == Counter({f"i{n:02d}": 1 for n in range(4)})


def test_a_sigkilled_holders_lock_is_taken_over_and_every_item_runs_once(
    children: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    output = tmp_path / "results.jsonl"
    holder = children("batch", str(output), "10", "3")
    assert holder.line() == "running"  # three items written, the fourth in flight
    assert result_ids(output) == Counter({"i00": 1, "i01": 1, "i02": 1})
    os.kill(holder.pid, signal.SIGKILL)
    holder.kill()
    lock_file = lock_path_for(output)
    left = Holder.parse(lock_file.read_text())  # a SIGKILL leaves the lock file behind
    assert left is not None and left.pid == holder.pid

    client = ScriptedClient(["FINAL(done)"])
    with caplog.at_level(logging.WARNING, logger="rlm_core.batch"), RLM(backend=client) as rlm:
        report = run_batch(items(10), output, rlm=rlm)
    assert (report.summary.ok, report.summary.resumed) == (7, 3)
    assert client.calls == 7  # the killed job's finished items were not asked again
    assert result_ids(output) == Counter({f"i{n:02d}": 1 for n in range(10)})  # each exactly once
    assert any("taking over" in r.message and f"pid {holder.pid}" in r.message for r in caplog.records)
    assert not lock_file.exists()


def test_two_jobs_started_together_on_one_output_run_once(children: Any, tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    jobs = [children("batch", str(output), "4", "0", "--go") for _ in range(2)]
    assert [job.line() for job in jobs] == ["ready", "ready"]
    for job in jobs:
        job.send()  # go, both at once
    said = {job.pid: job.line() for job in jobs}
    winners = [job for job in jobs if said[job.pid] == "running"]
    losers = [job for job in jobs if said[job.pid] != "running"]
    assert len(winners) == 1 and len(losers) == 1, said
    (winner,), (loser,) = winners, losers
    assert said[loser.pid] == f"refused {winner.pid}"
    assert loser.finish()[0] == EXIT_REFUSED
    winner.send()
    assert winner.line() == "done 4 0"
    assert winner.finish()[0] == 0
    assert result_ids(output) == Counter({f"i{n:02d}": 1 for n in range(4)})


def race_for(output: Path, racers: int) -> tuple[list[OutputLock], list[BatchLockedError]]:
    """``racers`` threads let go of one barrier and try to take the output at once."""
    start = threading.Barrier(racers)
    won: list[OutputLock] = []
    refused: list[BatchLockedError] = []

    def attempt() -> None:
        lock = OutputLock(output)
        start.wait()
        try:
            lock.acquire()
        except BatchLockedError as exc:
            refused.append(exc)
        else:
            won.append(lock)

    threads = [threading.Thread(target=attempt) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, refused


def test_threads_racing_for_one_output_get_one_lock(tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    for _ in range(20):  # each round also races the release of the round before
        won, refused = race_for(output, 8)
        assert (len(won), len(refused)) == (1, 7)
        won[0].release()
        assert not lock_path_for(output).exists()


def test_rlm_batch_exits_with_a_usage_error_naming_the_holder(children: Any, tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    items_file = tmp_path / "items.jsonl"
    items_file.write_text("".join(json.dumps(item) + "\n" for item in items(2)))
    holder = children("hold", str(output))
    assert holder.line() == "held"
    command = [sys.executable, "-m", "rlm_core", "batch", str(items_file), "-o", str(output),
               "--backend", "openai", "--model", "m", "--backend-kwarg", "base_url=http://127.0.0.1:9",
               "api_key=test", "max_retries=0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("rlm batch: error: ")
    assert f"pid {holder.pid}" in done.stderr and "Traceback" not in done.stderr
    assert holder.finish()[0] == 0


def test_a_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    lock_file = lock_path_for(output)
    record = Holder(pid=4242, host="other-host.invalid", started="2024-01-01T00:00:00+00:00").to_json()
    lock_file.write_text(record)
    with scripted_rlm() as rlm, pytest.raises(BatchLockedError) as refused:
        run_batch(items(2), output, rlm=rlm)
    assert "another host" in str(refused.value) and f"delete {lock_file}" in str(refused.value)
    assert lock_file.read_text() == record  # left as it was
    lock_file.unlink()  # what the message says to do once that job is known to be gone
    with scripted_rlm() as rlm:
        assert run_batch(items(2), output, rlm=rlm).summary.ok == 2


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    output = tmp_path / "results.jsonl"
    me = Holder.current()  # a live pid, but not the process that wrote the lock file
    lock_path_for(output).write_text(
        Holder(me.pid, me.host, me.started, proc_start=1, boot_id=me.boot_id).to_json()
    )
    with caplog.at_level(logging.WARNING, logger="rlm_core.batch"), scripted_rlm() as rlm:
        assert run_batch(items(2), output, rlm=rlm).summary.ok == 2
    assert any("no longer running" in r.message for r in caplog.records)


@pytest.mark.parametrize("failure", [RuntimeError("boom"), KeyboardInterrupt()])
def test_the_lock_file_goes_when_the_job_fails_or_is_interrupted(
    tmp_path: Path, failure: BaseException
) -> None:
    output = tmp_path / "results.jsonl"

    def on_result(result: Any) -> None:
        assert lock_path_for(output).exists()  # held while the job runs
        raise failure

    # An error in a task arrives wrapped by the job's TaskGroup; Ctrl-C arrives as it is.
    with scripted_rlm() as rlm, pytest.raises((type(failure), BaseExceptionGroup)):
        run_batch(items(2), output, rlm=rlm, max_concurrent=1, on_result=on_result)
    assert not lock_path_for(output).exists()
    with scripted_rlm() as rlm:
        assert run_batch(items(2), output, rlm=rlm).summary.items == 2  # nothing stays held


def test_no_output_file_takes_no_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with scripted_rlm() as rlm:
        assert run_batch(items(2), rlm=rlm).summary.ok == 2
    assert list(tmp_path.iterdir()) == []


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
