"""Interruption: task cancellation, SIGINT and SIGTERM with sub-calls in flight, in the local,
subprocess and docker environments. The log ends with the interrupted iteration, its sub-calls, the
stop reason and the partial answer; nothing is left running."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core import RLM, RLMLogger
from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.testing import LoopbackLLMServer
from rlm_core.testing.sandbox_lifecycle_contract import interpreter_ctrl_c
from rlm_core.types import StopReason

ROOT, SUB = "root-model", "sub-model"
TEST_IMAGE = os.environ.get("RLM_TEST_IMAGE", "rlm-test-python:3.11")
_IN_CI = os.environ.get("CI", "").lower() == "true"
CELL = "```repl\nprint('asking')\nanswers = llm_query_batched(['a', 'b', 'c'])\n```"
PROSE = "I will ask three sub-models about the pieces. Partial: the fox is brown."


def hanging_subcalls(request: dict[str, Any]) -> str:
    if request["model"] == SUB:
        time.sleep(30)  # the server's stop() does not wait for handler threads
        return "late"
    return f"{PROSE}\n{CELL}"


@pytest.fixture(autouse=True)
def ctrl_c_reaches_the_interpreter() -> Iterator[None]:
    """These tests press Ctrl-C; a suite started as a background job has SIGINT ignored."""
    with interpreter_ctrl_c():
        yield


@pytest.fixture
def server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer(hanging_subcalls) as running:
        yield running


def settings(server: LoopbackLLMServer, log_dir: Path, environment: str, env_kwargs: dict[str, Any]) -> Any:
    connection = {"base_url": server.base_url, "api_key": "k", "max_retries": 0, "timeout": 60}
    return {
        "backend": "openai",
        "backend_kwargs": {"model_name": ROOT, **connection},
        "other_backends": ["openai"],
        "other_backend_kwargs": [{"model_name": SUB, **connection}],
        "environment": environment,
        "environment_kwargs": env_kwargs,
        "logger": RLMLogger(log_dir),
    }


async def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def check_interrupted_log(log_dir: Path) -> None:
    (path,) = log_dir.glob("*.jsonl")
    trajectory = read_trajectory(path)
    assert trajectory.result is not None, trajectory.problems
    assert trajectory.result.stop_reason is StopReason.CANCELLED
    assert trajectory.result.response == PROSE
    last = trajectory.iterations[-1]
    assert any("interrupted" in note for note in last.notes)
    (block,) = last.code_blocks
    assert "llm_query_batched" in block.code and "interrupted" in (block.error or "")
    assert len(block.subcalls) == 3
    assert all("interrupted" in (call.error or "") for call in block.subcalls)
    assert {call.batch_index for call in block.subcalls} == {0, 1, 2}


def cell_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rlm-local-cell" and t.is_alive()]


@pytest.mark.parametrize("environment", ["local", "subprocess"])
def test_cancelling_a_completion_logs_where_it_stopped_and_leaves_nothing(
    server: LoopbackLLMServer, tmp_path: Path, environment: str
) -> None:
    env_kwargs = {"timeout": 60}
    rlm = RLM(**settings(server, tmp_path, environment, env_kwargs))

    async def main() -> None:
        task = asyncio.ensure_future(rlm.acompletion("the quick brown fox"))
        await wait_for(lambda: sum(1 for r in server.requests if r["model"] == SUB) == 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    check_interrupted_log(tmp_path)
    wait_until(lambda: cell_threads() == [])
    wait_until(lambda: _children_of_this_process() == [])


def _children_of_this_process() -> list[str]:
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True
    )
    return [line for line in out.stdout.splitlines() if "ps -o" not in line]


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from rlm_core import RLM, RLMLogger
    base_url, log_dir, environment, env_kwargs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    connection = {"base_url": base_url, "api_key": "k", "max_retries": 0, "timeout": 60}
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": "root-model", **connection},
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": "sub-model", **connection}],
        environment=environment,
        environment_kwargs=env_kwargs,
        logger=RLMLogger(log_dir),
    )
    try:
        rlm.completion("the quick brown fox")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    """
)


def run_and_signal(
    server: LoopbackLLMServer, log_dir: Path, environment: str, env_kwargs: dict[str, Any], signum: int
) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, server.base_url, str(log_dir), environment, json.dumps(env_kwargs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(1 for r in server.requests if r["model"] == SUB) < 3:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the sub-calls never started"
            time.sleep(0.05)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


class CtrlC(threading.Thread):
    """A real SIGINT to this process once the three sub-calls reached the server (asyncio.run turns
    it into cancelling the completion, then raises KeyboardInterrupt). If the completion has not
    ended a minute later, a second SIGINT ends it anyway and ``hung`` says so: a broken
    cancellation fails the test instead of hanging the suite."""

    def __init__(self, server: LoopbackLLMServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.finished = threading.Event()
        self.hung = False
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while sum(1 for r in self.server.requests if r["model"] == SUB) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
        if not self.finished.wait(60):
            self.hung = True
            os.kill(os.getpid(), signal.SIGINT)

    def completion_ended(self) -> None:
        self.finished.set()
        self.join()
        assert not self.hung, "the completion did not end on Ctrl-C; a second SIGINT was needed"


def wait_until(condition: Any, timeout: float = 20.0) -> None:
    """Wait for what an assertion reads (threads end on their own time), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_ctrl_c_ends_a_local_run_with_a_complete_log(server: LoopbackLLMServer, tmp_path: Path) -> None:
    rlm = RLM(**settings(server, tmp_path, "local", {"timeout": 60}))
    sender = CtrlC(server)
    with pytest.raises(KeyboardInterrupt):
        rlm.completion("the quick brown fox")
    sender.completion_ended()
    check_interrupted_log(tmp_path)
    wait_until(lambda: cell_threads() == [])


@pytest.fixture
def docker_kwargs() -> dict[str, Any]:
    if not os.environ.get("DOCKER_HOST") and not _IN_CI:
        pytest.skip("DOCKER_HOST is unset; run scripts/setup-podman.sh and export what it prints")
    return {"image": TEST_IMAGE, "pull": False, "timeout": 60, "kill_grace": 2}


def containers_of(run_id: str) -> list[Any]:
    from rlm_core.environments.docker_env import make_client

    return make_client().containers.list(all=True, filters={"label": f"rlm-core.run-id={run_id}"})


def test_ctrl_c_during_a_docker_run_removes_its_container_and_logs_where_it_stopped(
    server: LoopbackLLMServer, tmp_path: Path, docker_kwargs: dict[str, Any]
) -> None:
    run_id = f"rlm-int-sigint-{os.getpid()}"
    rlm = RLM(**settings(server, tmp_path, "docker", {**docker_kwargs, "run_id": run_id}))
    sender = CtrlC(server)
    with pytest.raises(KeyboardInterrupt):
        rlm.completion("the quick brown fox")
    sender.completion_ended()
    assert containers_of(run_id) == []
    check_interrupted_log(tmp_path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_during_a_docker_run_removes_its_container(
    server: LoopbackLLMServer, tmp_path: Path, docker_kwargs: dict[str, Any]
) -> None:
    run_id = f"rlm-int-sigterm-{os.getpid()}"
    done = run_and_signal(server, tmp_path, "docker", {**docker_kwargs, "run_id": run_id}, signal.SIGTERM)
    assert containers_of(run_id) == []
    # SIGTERM ends the process once its containers are removed: the log is readable up to the
    # last finished line, without a result line (the documented behaviour for a killed process).
    assert done.returncode == -signal.SIGTERM, done.stderr[-2000:]
    (path,) = tmp_path.glob("*.jsonl")
    trajectory = read_trajectory(path)
    assert trajectory.metadata is not None and trajectory.result is None


def test_the_docker_environment_gives_sigint_back_on_close(docker_kwargs: dict[str, Any]) -> None:
    from rlm_core.environments.docker_env import DockerEnvironment

    async def host(function: str, args: dict[str, Any]) -> Any:
        raise RuntimeError(function)

    async def main() -> tuple[Any, Any, Any]:
        before = signal.getsignal(signal.SIGINT)  # asyncio.run's own Ctrl-C handler
        env = DockerEnvironment(**docker_kwargs)
        await env.start(host, {})
        during = signal.getsignal(signal.SIGINT)
        await env.close()
        return before, during, signal.getsignal(signal.SIGINT)

    before, during, after = asyncio.run(main())
    assert during is not before  # containers are removed on Ctrl-C while one is live
    assert after is before  # whatever was there before (another test's runner may have left its own)


def test_a_finished_runners_ctrl_c_handler_is_never_given_back() -> None:
    import functools

    from rlm_core.environments.docker_env import _still_current

    runner = asyncio.Runner()
    runner.run(asyncio.sleep(0))
    stale = functools.partial(runner._on_sigint, main_task=None)
    live_app_handler = signal.default_int_handler
    assert _still_current(live_app_handler) is live_app_handler
    runner.close()
    # Restoring it would route the next Ctrl-C to a dead run (and skip the next run's own handling).
    assert _still_current(stale) is signal.default_int_handler
