"""Sandbox faults and hostile inputs, end to end through RLM: each run ends with a readable error
or a recovery, and leaves no process or container behind."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from rlm_core import RLM
from rlm_core.testing import ScriptedClient, repl
from rlm_core.types import StopReason

TEST_IMAGE = os.environ.get("RLM_TEST_IMAGE", "rlm-test-python:3.11")
_IN_CI = os.environ.get("CI", "").lower() == "true"
HAVE_DOCKER = bool(os.environ.get("DOCKER_HOST")) or _IN_CI
DOCKER_SKIP = "DOCKER_HOST is unset; run scripts/setup-podman.sh and export what it prints"


def environment_settings(name: str, timeout: float = 20) -> dict[str, Any]:
    if name == "docker":
        return {"image": TEST_IMAGE, "pull": False, "timeout": timeout, "kill_grace": 2}
    if name == "subprocess":
        return {"timeout": timeout, "kill_grace": 2}
    return {"timeout": timeout}


SANDBOXES = [
    "subprocess",
    pytest.param("docker", marks=pytest.mark.skipif(not HAVE_DOCKER, reason=DOCKER_SKIP)),
]


def run_cells(
    environment: str, cells: list[str], context: Any = "ctx", timeout: float = 20
) -> tuple[Any, ScriptedClient]:
    root = ScriptedClient([*(repl(c) for c in cells), "FINAL(survived)"])
    settings = environment_settings(environment, timeout)
    rlm = RLM(backend=root, environment=environment, environment_kwargs=settings)
    return rlm.completion(context), root


def fed_back(root: ScriptedClient, turn: int) -> str:
    return str(root.requests[turn].messages[-1].content)


def runtime_processes() -> list[str]:
    """Sandbox runtimes this test process started and did not reap (its children)."""
    out = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(os.getpid())], capture_output=True, text=True
    )
    return [line for line in out.stdout.splitlines() if "runtime" in line]


def own_containers() -> list[Any]:
    if not HAVE_DOCKER:
        return []
    from rlm_core.environments.docker_env import LABEL_OWNER_PID, make_client

    return make_client().containers.list(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})


@pytest.mark.parametrize("environment", SANDBOXES)
def test_a_cell_that_closes_the_runtimes_descriptors_is_a_reported_crash(environment: str) -> None:
    # In docker the engine holds the stream open while the deafened process lives: the cell's time
    # limit is what ends it there (so keep it short).
    result, root = run_cells(
        environment,
        [
            "import os\nfor fd in range(64):\n    try: os.close(fd)\n    except OSError: pass",
            "print('after', 1 + 1)",
        ],
        timeout=3,
    )
    assert result.response == "survived"
    assert "SandboxCrash" in fed_back(root, 1) or "restarted" in fed_back(root, 1), fed_back(root, 1)
    assert "after 2" in fed_back(root, 2)


@pytest.mark.parametrize("environment", SANDBOXES)
def test_os_exit_in_a_cell_is_a_reported_crash_and_the_context_comes_back(environment: str) -> None:
    result, root = run_cells(environment, ["import os\nos._exit(3)", "print(len(context))"], context="12345")
    assert result.response == "survived"
    assert "SandboxCrash" in fed_back(root, 1)
    assert "5" in fed_back(root, 2)


def test_a_file_size_limit_hit_inside_the_sandbox_is_survived() -> None:
    # RLIMIT_FSIZE stands in for a full disk on the subprocess sandbox: the oversized write kills
    # the runtime (SIGXFSZ), the crash is reported, and the next cell runs in a fresh one.
    cell = (
        "import resource, tempfile\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "with tempfile.TemporaryFile() as f:\n"
        "    f.write(b'x' * (4 << 20))\n"
        "    f.flush()"
    )
    result, root = run_cells("subprocess", [cell, "print('still here')"])
    assert result.response == "survived"
    assert "SandboxCrash" in fed_back(root, 1) or "File too large" in fed_back(root, 1)
    assert "still here" in fed_back(root, 2)


@pytest.mark.skipif(not HAVE_DOCKER, reason=DOCKER_SKIP)
def test_a_full_disk_inside_the_container_is_an_error_in_the_cell() -> None:
    # /dev/shm is a small tmpfs in the container: filling it gives a real ENOSPC.
    cell = (
        "with open('/dev/shm/fill', 'wb') as f:\n    for _ in range(512):\n        f.write(b'x' * (1 << 20))"
    )
    result, root = run_cells("docker", [cell, "print('still here')"])
    assert result.response == "survived"
    assert "No space left on device" in fed_back(root, 1)
    assert "still here" in fed_back(root, 2)


CONTEXTS: dict[str, Any] = {
    "str": "plain text",
    "empty str": "",
    "list": ["a", "b", 3],
    "empty list": [],
    "dict": {"k": [1, 2, {"n": None}]},
    "empty dict": {},
    "nested unicode": {"ключ": ["値", "🦊", "e\u0301"]},
    "lone surrogates": ["ok", "bad \ud800 here", {"k\udfff": "v"}],
    "large dict": {f"k{i}": "v" * 50 for i in range(20_000)},
}


@pytest.mark.parametrize("environment", ["local", "subprocess"])
@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_every_context_type_loads_exactly(environment: str, kind: str) -> None:
    context = CONTEXTS[kind]
    cell = "FINAL(str((type(context).__name__, len(context), ascii(context)[:60], ascii(context)[-60:])))"
    result, _ = run_cells(environment, [cell], context)
    expected = str((type(context).__name__, len(context), ascii(context)[:60], ascii(context)[-60:]))
    assert result.error is None and result.response == expected


def check_large_context_with_a_surrogate(environment: str) -> None:
    """A context too large to travel inline goes as a file: a lone surrogate in it arrives exactly
    (the file carries it escaped), never as a raw UnicodeEncodeError from inside the sandbox."""
    context = ["ok", "bad \ud800 here", "x" * 300_000 + "\udc80"]
    cell = "FINAL(str((len(context), ascii(context[1]), len(context[-1]), ascii(context[-1][-3:]))))"
    expected = str((len(context), ascii(context[1]), len(context[-1]), ascii(context[-1][-3:])))
    result, _ = run_cells(environment, [cell], context)
    assert result.error is None and result.response == expected


def test_a_large_context_with_a_surrogate_in_the_subprocess_sandbox() -> None:
    check_large_context_with_a_surrogate("subprocess")


@pytest.mark.skipif(not HAVE_DOCKER, reason=DOCKER_SKIP)
def test_a_large_context_with_a_surrogate_in_docker() -> None:
    check_large_context_with_a_surrogate("docker")


def test_a_context_that_cannot_travel_into_a_sandbox_gets_a_clear_error() -> None:
    root = ScriptedClient([repl("print(type(context))"), "FINAL(x)"])
    rlm = RLM(backend=root, environment="subprocess", environment_kwargs={"timeout": 20})
    with pytest.raises(Exception, match="cannot be sent into a sandbox"):
        rlm.completion({"when": object()})


@pytest.mark.parametrize("prompt", ["", " ", "\n\n"])
def test_empty_prompts_and_root_prompts_run(prompt: str) -> None:
    root = ScriptedClient([repl("print(repr(context))"), "FINAL(done)"])
    result = RLM(backend=root).completion(prompt, root_prompt=prompt or None)
    assert result.response == "done" and result.stop_reason is StopReason.FINAL


def test_a_surrogate_in_the_root_prompt_and_llm_query_reaches_the_provider_as_text() -> None:
    from rlm_core.testing import LoopbackLLMServer

    with LoopbackLLMServer([repl("print(llm_query('sub \\udfff q'))"), "FINAL(ok)"]) as server:
        kwargs = {"model_name": "m", "base_url": server.base_url, "api_key": "k", "max_retries": 0}
        result = RLM(backend="openai", backend_kwargs=kwargs).completion(
            "ctx \ud800", root_prompt="why \udfff"
        )
        sent = [m["content"] for r in server.requests for m in r["messages"]]
    assert result.response == "ok" and result.error is None
    assert any("why \ufffd" in text for text in sent) and any("sub \ufffd q" in text for text in sent)


def test_no_runtime_process_or_container_is_left_behind() -> None:
    # Runs last in this file (pytest keeps file order): every sandbox above was closed.
    assert runtime_processes() == []
    assert own_containers() == []
