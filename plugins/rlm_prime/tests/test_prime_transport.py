"""What the prime environment asks of Prime: options, files, environment, registration, lazy import."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import prime_sandboxes
import pytest
from prime_fakes import FakePrimeCloud
from rlm_prime.environment import prime_environment
from rlm_prime.transport import PrimeTransport

from rlm_core.environments import SandboxEnvironment
from rlm_core.errors import ConfigurationError, SandboxError
from rlm_core.plugins import PluginRegistry


async def _host(function: str, args: dict[str, Any]) -> Any:
    return f"{function}:{args.get('prompt')}"


def _run(environment: SandboxEnvironment, *cells: str) -> list[str]:
    async def scenario() -> list[str]:
        await environment.start(_host, {})
        try:
            outputs = []
            for cell in cells:
                result = await environment.execute(cell)
                assert result.error is None, result.error
                outputs.append(result.stdout)
            return outputs
        finally:
            await environment.close()

    return asyncio.run(scenario())


def _calls(cloud: FakePrimeCloud, name: str) -> list[dict[str, Any]]:
    return [arguments for called, arguments in cloud.calls if called == name]


def test_import_does_not_load_the_sdk() -> None:
    code = "import sys, rlm_prime\nprint('prime_sandboxes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registered_as_the_prime_environment() -> None:
    registry = PluginRegistry()
    environment = registry.create("environments", "prime", cpu_cores=2, timeout=12)
    assert isinstance(environment, SandboxEnvironment)
    assert isinstance(environment.transport, PrimeTransport)
    assert environment.transport.cpu_cores == 2 and environment.timeout == 12
    assert registry.get("environments", "prime").plugin == "prime"


def test_unknown_and_bad_options_are_clear() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown environment_kwargs \['cpus'\].*cpu_cores"):
        prime_environment(cpus=2)
    with pytest.raises(ConfigurationError, match="lists of strings"):
        prime_environment(pip="numpy")
    with pytest.raises(ConfigurationError, match="positive minutes"):
        prime_environment(timeout_minutes=0)
    with pytest.raises(ConfigurationError, match="absolute path"):
        prime_environment(workdir="rlm")
    assert PrimeTransport(python_version="3.12").image == "python:3.12-slim"


def test_options_reach_prime(prime_cloud: FakePrimeCloud, workdir: str) -> None:
    environment = prime_environment(
        workdir=workdir,
        image="ghcr.io/acme/python:3.11",
        cpu_cores=2,
        memory_gb=4,
        gpu_count=1,
        gpu_type="A100",
        timeout_minutes=30,
        idle_timeout_minutes=10,
        region="eu-west",
        env={"MODE": "test"},
        secrets={"DB_PASSWORD": "chosen-by-the-user"},
        labels=["team-search"],
        pip=["--no-index", "pip"],  # already satisfied: succeeds offline
    )
    out = _run(environment, "import os\nprint(os.environ['MODE'], os.environ['DB_PASSWORD'])")
    assert out == ["test chosen-by-the-user\n"]
    (create,) = _calls(prime_cloud, "create")
    request = create["request"]
    assert (request.docker_image, request.cpu_cores, request.memory_gb) == ("ghcr.io/acme/python:3.11", 2, 4)
    assert (request.gpu_count, request.gpu_type, request.region) == (1, "A100", "eu-west")
    assert (request.timeout_minutes, request.idle_timeout_minutes) == (30, 10)
    assert request.start_command is None  # nothing of ours listens: no web server, no tunnel
    transport = environment.transport
    assert isinstance(transport, PrimeTransport)
    assert request.name == f"rlm-{transport.run_id}"
    assert "team-search" in request.labels and "rlm-core" in request.labels
    assert f"rlm-core-run-{transport.run_id}" in request.labels
    assert any(label.startswith("rlm-core-pid-") for label in request.labels)
    commands = [call["command"] for call in _calls(prime_cloud, "execute_command")]
    assert commands[0] == f"mkdir -p {workdir}"
    assert commands[1] == "python3 -m pip install -q --no-index pip"
    (process,) = _calls(prime_cloud, "open_process")
    assert process["working_dir"] == workdir and process["env"] is None


def test_a_failed_install_says_what_failed(prime_cloud: FakePrimeCloud, workdir: str) -> None:
    environment = prime_environment(workdir=workdir, pip=["--no-such-option"])
    with pytest.raises(SandboxError, match=r"installing pip packages .* failed \(exit code"):
        asyncio.run(environment.start(_host, {}))
    assert [sandbox.deleted for sandbox in prime_cloud.sandboxes.values()] == [True]


def test_no_api_key_reaches_the_sandbox(
    prime_cloud: FakePrimeCloud, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_secrets = {"PRIME_API_KEY": "pit_" + "h" * 24, "OPENAI_API_KEY": "sk-" + "o" * 20}
    for name, value in host_secrets.items():
        monkeypatch.setenv(name, value)
    out = _run(prime_environment(workdir=workdir), "import os, json\nprint(json.dumps(dict(os.environ)))")
    inside = json.loads(out[0])
    assert not set(host_secrets) & set(inside)
    assert not any(value in json.dumps(inside) for value in host_secrets.values())
    sent = repr([arguments for name, arguments in prime_cloud.calls if name != "__init__"])
    assert not any(value in sent for value in host_secrets.values())


def test_without_a_key_it_says_how_to_get_one(
    prime_cloud: FakePrimeCloud, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    monkeypatch.setattr(prime_sandboxes.Config, "api_key", property(lambda self: ""))
    with pytest.raises(SandboxError, match="PRIME_API_KEY"):
        asyncio.run(prime_environment(workdir=workdir).start(_host, {}))
    assert prime_cloud.sandboxes == {}


def test_large_contexts_travel_as_files(prime_cloud: FakePrimeCloud, workdir: str) -> None:
    environment = prime_environment(workdir=workdir, inline_context_chars=1000)
    document = "line of a long report\n" * 5000

    async def scenario() -> str:
        await environment.start(_host, {})
        try:
            await environment.load_context(0, document)
            return (await environment.execute("print(len(context), context[:4])")).stdout
        finally:
            await environment.close()

    assert asyncio.run(scenario()) == f"{len(document)} line\n"
    uploads = [(call["file_path"], call["filename"]) for call in _calls(prime_cloud, "upload_bytes")]
    assert uploads == [
        (f"{workdir}/rlm_runtime.py", "rlm_runtime.py"),
        (f"{workdir}/context_0.txt", "context_0.txt"),
    ]


def test_the_runtime_ends_in_band_on_close(prime_cloud: FakePrimeCloud, workdir: str) -> None:
    """The live process has no stdin EOF: the core's `shutdown` message ends it, before any signal."""
    environment = prime_environment(workdir=workdir)
    _run(environment, "x = 1")
    (sandbox,) = prime_cloud.sandboxes.values()
    (runtime,) = sandbox.live_processes
    assert runtime.returncode == 0  # exited by itself; a kill would be -9


def test_multi_turn_state_persists_across_cells(prime_cloud: FakePrimeCloud, workdir: str) -> None:
    out = _run(
        prime_environment(workdir=workdir), "notes = ['first']", "notes.append('second')\nprint(notes)"
    )
    assert out[1] == "['first', 'second']\n"
    assert len(_calls(prime_cloud, "create")) == 1


def test_the_fake_rejects_what_the_real_sdk_would(prime_cloud: FakePrimeCloud) -> None:
    """The signature checks can fail: a keyword the real client lacks is a TypeError."""
    client = prime_sandboxes.AsyncSandboxClient(api_key="x")
    with pytest.raises(TypeError):
        asyncio.run(client.open_process("id", "true", cwd="/"))
    with pytest.raises(TypeError):
        prime_sandboxes.AsyncSandboxClient(key="x")


def test_every_sdk_call_matches_the_installed_prime_sandboxes(
    prime_cloud: FakePrimeCloud, workdir: str
) -> None:
    """Each client method the transport used exists on the installed AsyncSandboxClient as a coroutine
    function and accepts the arguments it was given (bound against ``inspect.signature``)."""
    import inspect

    from prime_fakes import REAL_CLIENT  # the SDK's own class, not the fake installed in its place

    environment = prime_environment(workdir=workdir, inline_context_chars=10)

    async def scenario() -> None:
        await environment.start(_host, {})
        try:
            await environment.load_context(0, "a context sent as a file")
            await environment.execute("print(len(context))")
        finally:
            await environment.close()

    asyncio.run(scenario())
    used = {name for name, _ in prime_cloud.calls}
    assert used == {
        "create",
        "wait_for_creation",
        "execute_command",
        "upload_bytes",
        "open_process",
        "delete",
        "aclose",
    }
    for name, arguments in prime_cloud.calls:
        method = getattr(REAL_CLIENT, name)
        assert inspect.iscoroutinefunction(method), name
        parameters = inspect.signature(method).parameters
        assert set(arguments) <= set(parameters), (name, set(arguments) - set(parameters))
    assert [call["request"].__class__ for call in _calls(prime_cloud, "create")] == [
        prime_sandboxes.CreateSandboxRequest
    ]
