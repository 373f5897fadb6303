"""The subprocess environment against real child processes: isolation, hard timeouts, limits, secrets."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from rlm_core.environments.sandbox import SandboxEnvironment
from rlm_core.environments.subprocess_env import (
    SubprocessEnvironment,
    SubprocessTransport,
    parse_size,
    scrubbed_environment,
)
from rlm_core.errors import ConfigurationError
from rlm_core.plugins.registry import PluginRegistry


async def _host(function: str, args: dict[str, Any]) -> Any:
    if function == "llm_query":
        return "echo:" + str(args["prompt"])
    raise RuntimeError(function)


async def started(**kwargs: Any) -> SandboxEnvironment:
    env = SubprocessEnvironment(**kwargs)
    await env.start(_host, {})
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_secrets_never_reach_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("INNOCENT_LOOKING", "sk-ant-abcdef")
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    monkeypatch.setenv("RLM_VISIBLE_SETTING", "visible")
    env = await started(env={"EXTRA": "given"})
    try:
        result = await env.execute(
            "import os\n"
            "print(sorted(k for k in os.environ if k in "
            "('OPENAI_API_KEY', 'INNOCENT_LOOKING', 'DB_PASSWORD', 'RLM_VISIBLE_SETTING', 'EXTRA')))"
        )
        assert result.stdout == "['EXTRA', 'RLM_VISIBLE_SETTING']\n"
    finally:
        await env.close()


def test_scrub_and_size_helpers() -> None:
    clean = scrubbed_environment(
        {
            "PATH": "/bin",
            "GITHUB_TOKEN": "x",
            "aws_secret_access_key": "y",
            "PYTHONPATH": "/p",
            "X": "ghp_abc",
        }
    )
    assert clean == {"PATH": "/bin"}
    assert parse_size("512m") == 512 << 20 and parse_size("2g") == 2 << 30 and parse_size(1024) == 1024
    assert parse_size(None) is None
    with pytest.raises(ConfigurationError, match="not a size"):
        parse_size("lots")


async def test_hard_timeout_kills_and_restarts_with_state_lost() -> None:
    env = await started(timeout=30, kill_grace=1)
    try:
        await env.load_context(0, "the context")
        await env.execute("import os\nkept = 1\nfirst_pid = os.getpid()")
        pid = int((await env.execute("first_pid")).stdout)
        # A blocking sleep cannot be interrupted inside the process: the host must kill it.
        result = await env.execute("import time\ntime.sleep(3600)", timeout=1)
        assert result.timed_out and result.state_lost
        assert "killed and restarted" in (result.error or "")
        assert not _alive(pid)
        after = await env.execute("print(context, 'kept' in globals())")
        assert after.stdout == "the context False\n"
        assert env.restarts == 1
    finally:
        await env.close()


async def test_a_crash_is_isolated_and_reported() -> None:
    env = await started(timeout=30)
    try:
        await env.execute("x = 1")
        crashed = await env.execute("import ctypes\nctypes.string_at(0)")  # segfault in the child
        assert crashed.state_lost and "SandboxCrash" in (crashed.error or "")
        assert "SIGSEGV" in (crashed.error or "")
        assert (await env.execute("'x' in globals()")).stdout == "False\n"
    finally:
        await env.close()


async def test_memory_limit_turns_into_a_memory_error() -> None:
    env = await started(timeout=60, memory_limit="1g")
    try:
        result = await env.execute("block = bytearray(3 * 1024**3)")
        assert result.error is not None and "MemoryError" in result.error
        assert not result.state_lost
        assert (await env.execute("'ok'")).stdout == "ok\n"
    finally:
        await env.close()


async def test_background_processes_die_with_the_sandbox() -> None:
    env = await started(timeout=30)
    try:
        result = await env.execute(
            "import subprocess\nchild = subprocess.Popen(['sleep', '600'])\nchild.pid", timeout=10
        )
        child_pid = int(result.stdout)
        assert _alive(child_pid)
    finally:
        await env.close()
    assert not _alive(child_pid)


def _world_executable_python() -> str | None:
    """A python3 on PATH that an unprivileged user may run (every parent directory traversable)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.realpath(os.path.join(directory, "python3"))
        if not os.path.isfile(candidate):
            continue
        parts = candidate.split(os.sep)
        parents = [os.sep.join(parts[:i]) or os.sep for i in range(1, len(parts))]
        if all(os.stat(p).st_mode & 0o001 for p in [*parents, candidate]):
            return candidate
    return None


@pytest.mark.skipif(
    os.geteuid() != 0, reason="dropping to another user (to make RLIMIT_NPROC bite) needs root"
)
@pytest.mark.skipif(_world_executable_python() is None, reason="no python3 on PATH that user nobody may run")
async def test_fork_bomb_is_contained_when_run_as_another_user() -> None:
    python = _world_executable_python()
    env = await started(timeout=20, kill_grace=2, user="nobody", max_processes=40, python=python)
    try:
        result = await env.execute("import os\nwhile True:\n    os.fork()")
        assert result.error is not None
        assert "BlockingIOError" in result.error or "TimeoutError" in result.error
        assert (await env.execute("'survived'")).stdout == "survived\n"
    finally:
        await env.close()


async def test_registered_as_a_builtin_plugin() -> None:
    registry = PluginRegistry(load_entry_points=False)
    assert {"local", "subprocess", "docker"} <= set(registry.names("environments"))
    env = registry.create("environments", "subprocess", timeout=5)
    assert isinstance(env, SandboxEnvironment) and isinstance(env.transport, SubprocessTransport)


async def test_runtime_dying_between_cells_is_noticed_at_the_next_cell() -> None:
    env = await started(timeout=30)
    try:
        await env.load_history(0, [{"role": "user", "content": "earlier turn"}])
        await env.execute("import os, threading\nthreading.Timer(0.2, os._exit, args=(7,)).start()")
        for _ in range(100):  # wait (bounded) until the host saw the process go
            if env._conn is None or not env._conn.alive:
                break
            await asyncio.sleep(0.05)
        result = await env.execute("print(history_0[0]['content'])")
        assert result.state_lost and result.error is None
        assert result.stdout == "earlier turn\n"
        assert "restarted before this cell" in result.stderr
    finally:
        await env.close()
