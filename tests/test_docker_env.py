"""The docker environment against a real Docker-API engine (podman here; see scripts/setup-podman.sh).

Skipped only when DOCKER_HOST is unset outside CI; with CI=true a missing engine fails the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from rlm_core.cli.cleanup import cleanup_main
from rlm_core.environments.lifecycle import LiveSandboxes, Owner
from rlm_core.errors import SandboxError
from rlm_core.testing.sandbox_lifecycle_contract import Gate, SandboxLifecycleContract

TEST_IMAGE = os.environ.get("RLM_TEST_IMAGE", "rlm-test-python:3.11")
_IN_CI = os.environ.get("CI", "").lower() == "true"

pytestmark = pytest.mark.skipif(
    not os.environ.get("DOCKER_HOST") and not _IN_CI,
    reason="DOCKER_HOST is unset; run scripts/setup-podman.sh and export what it prints",
)


# Set by _host when a cell asks llm_query("started <what>"): the cell is then surely running.
_started: dict[str, asyncio.Event] = {}


async def _host(function: str, args: dict[str, Any]) -> Any:
    if function == "llm_query" and str(args["prompt"]).startswith("started "):
        _started.setdefault(str(args["prompt"]), asyncio.Event()).set()
    if function == "llm_query":
        return "echo:" + str(args["prompt"])
    if function == "llm_query_batched":
        return ["echo:" + str(p) for p in args["prompts"]]
    raise RuntimeError(function)


def _client() -> Any:
    from rlm_core.environments.docker_env import make_client

    return make_client()


def _containers(run_id: str) -> list[Any]:
    return _client().containers.list(all=True, filters={"label": f"rlm-core.run-id={run_id}"})


def _make(**kwargs: Any) -> Any:
    from rlm_core.environments.docker_env import DockerEnvironment

    settings: dict[str, Any] = {"image": TEST_IMAGE, "pull": False, "timeout": 30, "kill_grace": 2}
    settings.update(kwargs)
    return DockerEnvironment(**settings)


@pytest.fixture
async def env() -> AsyncIterator[Any]:
    environment = _make()
    await environment.start(_host, {})
    yield environment
    await environment.close()
    assert _containers(environment.transport.run_id) == []


async def test_container_is_locked_down_and_labelled(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = env.transport
    info = _client().api.inspect_container(transport.container_id)
    host_config = info["HostConfig"]
    assert host_config["NetworkMode"] == "none"
    assert host_config["Memory"] == 1 << 30
    assert host_config["PidsLimit"] == 256
    labels = info["Config"]["Labels"]
    assert labels["rlm-core"] == "1" and labels["rlm-core.owner-pid"] == str(os.getpid())
    assert labels["rlm-core.run-id"] == transport.run_id
    result = await env.execute(
        "import os, socket\n"
        "print(sorted(os.listdir('/sys/class/net')))\n"
        "print(any('KEY' in k or 'TOKEN' in k for k in os.environ))\n"
        "try:\n"
        "    socket.create_connection(('10.255.255.1', 80), timeout=1)\n"
        "except OSError as exc:\n"
        "    print('no network')"
    )
    assert result.error is None, result.error
    assert result.stdout == "['lo']\nFalse\nno network\n"


async def test_persistent_multi_turn_and_large_context(env: Any) -> None:
    big = "0123456789abcdef" * (1 << 20)  # 16 MiB: travels as a file through put_archive
    await env.load_context(0, big)
    first = await env.execute(
        "import hashlib\nturn_one = hashlib.sha256(context.encode()).hexdigest()\nprint(len(context_0))"
    )
    assert first.stdout == f"{len(big)}\n"
    await env.load_history(0, [{"role": "user", "content": "turn one"}])
    await env.load_context(1, {"second": True})
    second = await env.execute("print(turn_one, context['second'], history_0[0]['content'], len(context_0))")
    expected = hashlib.sha256(big.encode()).hexdigest()
    assert second.stdout == f"{expected} True turn one {len(big)}\n"
    batched = await env.execute("llm_query_batched(['a', 'b'])")
    assert batched.stdout == "['echo:a', 'echo:b']\n"


async def test_memory_exhaustion_is_contained() -> None:
    environment = _make(mem_limit="256m")
    await environment.start(_host, {})
    try:
        await environment.execute("kept = 1")
        result = await environment.execute(
            "hog = bytearray(2 * 1024**3)\nhog[::4096] = b'x' * len(hog[::4096])"
        )
        assert result.error is not None
        assert "MemoryError" in result.error or "SandboxCrash" in result.error
        after = await environment.execute("'alive'")
        assert after.stdout == "alive\n"
    finally:
        await environment.close()


async def test_fork_bomb_hits_the_pids_limit() -> None:
    environment = _make(pids_limit=64, timeout=20)
    await environment.start(_host, {})
    try:
        result = await environment.execute("import os\nwhile True:\n    os.fork()")
        assert result.error is not None
        assert "BlockingIOError" in result.error or "TimeoutError" in result.error
        assert (await environment.execute("'survived'")).stdout == "survived\n"
    finally:
        await environment.close()


async def test_infinite_output_and_loops_are_bounded(env: Any) -> None:
    looped = await env.execute("while True:\n    print('spam' * 1000)", timeout=1)
    assert looped.timed_out and len(looped.stdout) < 300_000
    assert "more characters of output were not kept" in looped.stdout
    stuck = await env.execute("import time\ntime.sleep(3600)", timeout=1)
    assert stuck.timed_out and stuck.state_lost
    assert (await env.execute("'next'")).stdout == "next\n"


async def test_container_removed_mid_run_gets_a_fresh_one(env: Any) -> None:
    await env.execute("kept = 1")
    old_id = env.transport.container_id
    started = _started.setdefault("started removal", asyncio.Event())
    cell = asyncio.create_task(env.execute("llm_query('started removal')\nimport time\ntime.sleep(30)"))
    await asyncio.wait_for(started.wait(), 30)  # the cell is running
    await asyncio.to_thread(_client().api.remove_container, old_id, force=True)
    result = await cell
    assert result.state_lost and "SandboxCrash" in (result.error or "")
    assert env.transport.container_id not in (None, old_id)
    assert (await env.execute("'kept' in globals()")).stdout == "False\n"


async def test_missing_image_and_missing_engine_give_clear_errors() -> None:
    missing = _make(image="rlm-no-such-image:never")
    with pytest.raises(SandboxError, match="does not exist on the engine"):
        await missing.start(_host, {})
    assert _containers(missing.transport.run_id) == []
    no_engine = _make(base_url="unix:///nonexistent/rlm-test.sock")
    with pytest.raises(SandboxError, match="no Docker-API engine reachable"):
        await no_engine.start(_host, {})


_OWNER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from rlm_core.environments.docker_env import DockerEnvironment

    async def host(function, args):
        return ""

    async def main():
        env = DockerEnvironment(image=sys.argv[1], pull=False, run_id=sys.argv[2])
        await env.start(host, {})
        print(env.transport.container_id, flush=True)
        while True:
            await asyncio.sleep(1)

    asyncio.run(main())
    """
)


@contextlib.contextmanager
def _owner(run_id: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A real host process holding a container of run ``run_id``; killed, and its containers removed,
    on the way out."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER_SCRIPT, TEST_IMAGE, run_id],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert owner.stdout is not None
        container_id = owner.stdout.readline().strip()
        assert container_id, "the owner process did not start its container"
        yield owner, container_id
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        for container in _containers(run_id):
            container.remove(force=True)


def _wait_gone(run_id: str) -> bool:
    for _ in range(100):
        if not _containers(run_id):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_remove_the_container(signum: int) -> None:
    run_id = f"sig-{signum}-{os.getpid()}"
    with _owner(run_id) as (owner, _):
        assert len(_containers(run_id)) == 1
        owner.send_signal(signum)
        owner.wait(timeout=60)
        assert _wait_gone(run_id)


def test_cleanup_removes_containers_of_killed_owners(capsys: pytest.CaptureFixture[str]) -> None:
    run_id = f"killed-{os.getpid()}"
    with _owner(run_id) as (owner, container_id):
        owner.kill()  # SIGKILL: no handler runs, the container stays behind
        owner.wait(timeout=60)
        assert len(_containers(run_id)) == 1
        assert cleanup_main(["--dry-run", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert container_id in [entry["id"] for entry in listed]
        assert len(_containers(run_id)) == 1
        assert cleanup_main([]) == 0
        assert f"removed {container_id[:12]}" in capsys.readouterr().out
        assert _containers(run_id) == []


def test_cleanup_reports_a_missing_engine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/rlm-test.sock")
    assert cleanup_main([]) == 1
    assert "no Docker-API engine reachable" in capsys.readouterr().err


SCOPE_LABEL = "rlm-core.test-scope"


class TestDockerLifecycle(SandboxLifecycleContract):
    """The lifecycle contract against the real engine. Each test's containers carry a label of its
    own, which is all its cleanup sees: ``include_live`` must not end other processes' containers."""

    environment_name = "docker"

    @pytest.fixture(autouse=True)
    def _scope(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.scope = uuid.uuid4().hex[:12]
        self.monkeypatch = monkeypatch

    def environment_kwargs(self) -> dict[str, Any]:
        return {"image": TEST_IMAGE, "pull": False, "timeout": 30, "kill_grace": 2, "labels": self.scoped()}

    def scoped(self) -> dict[str, str]:
        return {SCOPE_LABEL: self.scope}

    def held_sandboxes(self) -> list[str]:
        filters = {"label": [f"{SCOPE_LABEL}={self.scope}"]}
        return [container.id for container in _client().containers.list(all=True, filters=filters)]

    def sandbox_id(self, environment: Any) -> str:
        return str(environment.transport.container_id)

    def live_sandboxes(self) -> LiveSandboxes[Any]:
        from rlm_core.environments import docker_env

        return docker_env._live

    def recorded_owner(self, sandbox_id: str) -> Owner | None:
        from rlm_core.environments.docker_env import TAGS

        return TAGS.read(_client().containers.get(sandbox_id).labels)

    def leave_sandbox(self, owner: Owner) -> str:
        from rlm_core.environments.docker_env import TAGS

        container = _client().containers.run(
            TEST_IMAGE,
            command=["python3", "-c", "import time; time.sleep(600)"],
            detach=True,
            network_mode="none",
            labels={**TAGS.tags(owner), **self.scoped()},
        )
        return str(container.id)

    def cleanup(self, *, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
        from rlm_core.environments.docker_env import cleanup_containers

        return cleanup_containers(include_live=include_live, dry_run=dry_run, labels=self.scoped())

    def hold_creation(self, environment: Any, gate: Gate) -> bool:
        from docker.models.containers import ContainerCollection

        create = ContainerCollection.run

        def created_then_held(collection: Any, *args: Any, **kwargs: Any) -> Any:
            container = create(collection, *args, **kwargs)
            gate.stop_here_blocking()  # the engine has it; the transport has not heard yet
            return container

        self.monkeypatch.setattr(ContainerCollection, "run", created_then_held)
        return True

    def break_start_after_creation(self) -> str:
        from docker.api.client import APIClient

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("the engine refused the archive")

        self.monkeypatch.setattr(APIClient, "put_archive", refuse)
        return "could not copy .* the engine refused the archive"
