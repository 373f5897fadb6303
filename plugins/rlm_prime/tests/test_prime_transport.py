"""What the prime environment asks of Prime: options, files, environment, registration, lazy import."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys

import prime_sandboxes
import pytest
from prime_fakes import CLIENT_METHODS, REAL_CLIENT, FakePrimeCloud
from rlm_prime.environment import prime_environment
from rlm_prime.transport import PrimeTransport

from rlm_core.environments import SandboxEnvironment
from rlm_core.errors import ConfigurationError, SandboxError
from rlm_core.plugins import PluginRegistry
from rlm_core.testing.environment_contract import RecordingHost, run_cells


def start(environment: SandboxEnvironment) -> None:
    asyncio.run(environment.start(RecordingHost(), {}))


def test_importing_the_plugin_leaves_the_sdk_unloaded() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, rlm_prime\nprint('prime_sandboxes' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"


def test_the_registry_builds_a_prime_environment() -> None:
    registry = PluginRegistry()
    built = registry.create("environments", "prime", cpu_cores=2, timeout=12)
    assert isinstance(built, SandboxEnvironment) and isinstance(built.transport, PrimeTransport)
    assert (built.transport.cpu_cores, built.timeout, registry.get("environments", "prime").plugin) == (
        2,
        12,
        "prime",
    )


BAD_SETTINGS = {
    "cpus": (2, r"unknown environment_kwargs \['cpus'\].*cpu_cores"),  # with what it takes instead
    "pip": ("numpy", "lists of strings"),
    "timeout_minutes": (0, "positive minutes"),
    "workdir": ("rlm", "absolute path"),
}


@pytest.mark.parametrize("setting", sorted(BAD_SETTINGS))
def test_a_bad_setting_says_what_is_wrong(setting: str) -> None:
    value, message = BAD_SETTINGS[setting]
    with pytest.raises(ConfigurationError, match=message):
        prime_environment(**{setting: value})


def test_the_default_image_follows_the_python_version() -> None:
    assert PrimeTransport(python_version="3.12").image == "python:3.12-slim"


def test_a_rejected_key_says_how_to_fix_it(cloud: FakePrimeCloud, workdir: str) -> None:
    cloud.fail("create", prime_sandboxes.UnauthorizedError("invalid API key"))
    with pytest.raises(SandboxError, match=r"rejected the API key .* PRIME_API_KEY"):
        start(prime_environment(workdir=workdir))
    assert cloud.sandboxes == {}


def test_without_a_key_it_says_how_to_get_one(
    cloud: FakePrimeCloud, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    monkeypatch.setattr(prime_sandboxes.Config, "api_key", property(lambda self: ""))
    with pytest.raises(SandboxError, match="PRIME_API_KEY"):
        start(prime_environment(workdir=workdir))
    assert cloud.sandboxes == {}


def test_options_reach_prime(cloud: FakePrimeCloud, workdir: str) -> None:
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
    assert run_cells(environment, "import os\nprint(os.environ['MODE'], os.environ['DB_PASSWORD'])") == [
        "test chosen-by-the-user\n"
    ]
    (create,) = cloud.calls_to("create")
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
    commands = [call["command"] for call in cloud.calls_to("execute_command")]
    assert commands[:2] == [f"mkdir -p {workdir}", "python3 -m pip install -q --no-index pip"]
    (process,) = cloud.calls_to("open_process")
    assert process["working_dir"] == workdir and process["env"] is None


def test_a_failed_install_says_what_failed(cloud: FakePrimeCloud, workdir: str) -> None:
    with pytest.raises(SandboxError, match=r"installing pip packages .* failed \(exit code"):
        start(prime_environment(workdir=workdir, pip=["--no-such-option"]))
    assert [sandbox.ended for sandbox in cloud.sandboxes.values()] == [True]


def test_keys_stay_on_the_host(cloud: FakePrimeCloud, workdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {"PRIME_API_KEY": "pit_" + "h" * 24, "OPENAI_API_KEY": "sk-" + "o" * 20}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    (dumped,) = run_cells(
        prime_environment(workdir=workdir), "import os, json\nprint(json.dumps(dict(os.environ)))"
    )
    assert set(keys).isdisjoint(json.loads(dumped))
    sent = dumped + repr([arguments for name, arguments in cloud.calls if name != "__init__"])
    assert [value for value in keys.values() if value in sent] == []


def test_large_contexts_are_uploaded(cloud: FakePrimeCloud, workdir: str) -> None:
    report = "line of a long report\n" * 5000
    out = run_cells(
        prime_environment(workdir=workdir, inline_context_chars=1000),
        "print(len(context))",
        contexts=[report],
    )
    assert out == [f"{len(report)}\n"]
    assert [(call["file_path"], call["filename"]) for call in cloud.calls_to("upload_bytes")] == [
        (f"{workdir}/rlm_runtime.py", "rlm_runtime.py"),
        (f"{workdir}/context_0.txt", "context_0.txt"),
    ]


def test_the_runtime_ends_in_band_on_close(cloud: FakePrimeCloud, workdir: str) -> None:
    """The live process has no stdin EOF: the core's `shutdown` message ends it, before any signal."""
    run_cells(prime_environment(workdir=workdir), "x = 1", "x += 1")
    (sandbox,) = cloud.sandboxes.values()
    (runtime,) = sandbox.live_processes
    assert runtime.returncode == 0  # exited by itself; a kill would be -9
    assert len(cloud.calls_to("create")) == 1  # one sandbox for both cells


def test_the_fake_rejects_what_the_real_sdk_would(cloud: FakePrimeCloud) -> None:
    """The signature checks can fail: a keyword the real client lacks is a TypeError."""
    client = prime_sandboxes.AsyncSandboxClient(api_key="x")
    with pytest.raises(TypeError):
        asyncio.run(client.open_process("id", "true", cwd="/"))
    with pytest.raises(TypeError):
        prime_sandboxes.AsyncSandboxClient(key="x")


def test_every_sdk_call_matches_the_installed_prime_sandboxes(cloud: FakePrimeCloud, workdir: str) -> None:
    """Each client method the transport used exists on the installed AsyncSandboxClient as a coroutine
    function and accepts the arguments it was given (bound against ``inspect.signature``)."""
    run_cells(
        prime_environment(workdir=workdir, inline_context_chars=10),
        "print(len(context))",
        contexts=["a file"],
    )
    assert {name for name, _ in cloud.calls} == {*CLIENT_METHODS, "aclose"} - {"list"}
    for name, arguments in cloud.calls:
        method = getattr(REAL_CLIENT, name)  # the SDK's own class, not the fake installed in its place
        assert inspect.iscoroutinefunction(method), name
        unknown = set(arguments) - set(inspect.signature(method).parameters)
        assert not unknown, (name, unknown)
    assert [type(call["request"]) for call in cloud.calls_to("create")] == [
        prime_sandboxes.CreateSandboxRequest
    ]
