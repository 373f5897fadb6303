"""What the e2b environment asks of E2B: options, files, variables, registration, lazy import, and
that every SDK call it makes is one the installed e2b accepts."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import subprocess
import sys

import e2b
import pytest
from e2b_fakes import (
    API_KEY,
    API_PARAMS,
    REAL_ASYNC_SANDBOX,
    REAL_COMMANDS,
    REAL_FILESYSTEM,
    REAL_SANDBOX,
    FakeE2BCloud,
)
from rlm_e2b.environment import e2b_environment
from rlm_e2b.transport import E2BTransport

from rlm_core.environments import SandboxEnvironment
from rlm_core.environments.lifecycle import OUTPUT_RELAY, Base64Lines
from rlm_core.errors import ConfigurationError, SandboxError, SandboxStartError
from rlm_core.plugins import PluginRegistry
from rlm_core.testing.environment_contract import RecordingHost, run_cells


def start(environment: SandboxEnvironment) -> None:
    asyncio.run(environment.start(RecordingHost(), {}))


def test_importing_the_plugin_leaves_the_sdk_unloaded() -> None:
    code = "import sys, rlm_e2b\nprint('e2b' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_registry_builds_an_e2b_environment() -> None:
    registry = PluginRegistry()
    built = registry.create("environments", "e2b", template="my-python", timeout=12)
    assert isinstance(built, SandboxEnvironment) and isinstance(built.transport, E2BTransport)
    assert (built.transport.template, built.timeout) == ("my-python", 12)
    assert registry.get("environments", "e2b").plugin == "e2b"


BAD_SETTINGS = {
    "templates": ("base", r"unknown environment_kwargs \['templates'\].*template"),
    "sandbox_timeout": (0, "positive number of seconds"),
    "workdir": ("rlm", "absolute path"),
    "env": ({"OPENAI_API_KEY": "sk-x"}, "looks like a secret.*secrets="),
    "request_timeout": (-1, "positive seconds"),
}


@pytest.mark.parametrize("setting", sorted(BAD_SETTINGS))
def test_a_bad_setting_says_what_is_wrong(setting: str) -> None:
    value, message = BAD_SETTINGS[setting]
    with pytest.raises(ConfigurationError, match=message):
        e2b_environment(**{setting: value})


def test_a_key_shaped_value_is_refused_in_env_too() -> None:
    with pytest.raises(ConfigurationError, match="'MODEL_CONFIG' looks like a secret"):
        e2b_environment(env={"MODEL_CONFIG": "sk-" + "a" * 30})


def test_without_a_key_it_says_how_to_get_one(
    cloud: FakeE2BCloud, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E2B_API_KEY")
    with pytest.raises(SandboxStartError, match="E2B_API_KEY"):
        start(e2b_environment(workdir=workdir))
    assert cloud.calls == []


def test_a_rejected_key_says_how_to_fix_it(cloud: FakeE2BCloud, workdir: str) -> None:
    cloud.fail("create", e2b.AuthenticationException("invalid API key"))
    with pytest.raises(SandboxStartError, match=r"rejected the API key .*E2B_API_KEY") as caught:
        start(e2b_environment(workdir=workdir))
    assert type(caught.value).__name__ == "SandboxStartError"
    assert cloud.sandboxes == {}


def test_options_reach_e2b(cloud: FakeE2BCloud, workdir: str) -> None:
    environment = e2b_environment(
        workdir=workdir,
        template="acme-python",
        sandbox_timeout=900,
        env={"MODE": "test"},
        secrets={"DB_PASSWORD": "chosen-by-the-user"},
        allow_internet_access=True,
        metadata={"team": "search"},
        domain="e2b.acme.internal",
        api_key="e2b_explicit",
        request_timeout=20,
    )
    out = run_cells(
        environment, "import os\nprint(os.environ['MODE'], os.environ['DB_PASSWORD'], os.getcwd())"
    )
    assert out == [f"test chosen-by-the-user {workdir}\n"]
    (create,) = cloud.calls_to("create")
    assert (create["template"], create["timeout"], create["allow_internet_access"]) == (
        "acme-python",
        900,
        True,
    )
    assert create["envs"] == {"MODE": "test", "DB_PASSWORD": "chosen-by-the-user"}
    assert (create["api_key"], create["domain"], create["request_timeout"]) == (
        "e2b_explicit",
        "e2b.acme.internal",
        20,
    )
    metadata = create["metadata"]
    transport = environment.transport
    assert isinstance(transport, E2BTransport)
    assert metadata["team"] == "search" and metadata["rlm-core"] == "1"
    assert metadata["rlm-core-run-id"] == transport.run_id
    assert metadata["rlm-core-owner-pid"].isdigit() and metadata["rlm-core-owner-host"]
    (kill,) = cloud.calls_to("kill")
    assert (kill["api_key"], kill["domain"]) == ("e2b_explicit", "e2b.acme.internal")
    runtime = next(call for call in cloud.calls_to("run") if call["background"])
    assert (runtime["stdin"], runtime["timeout"], runtime["cwd"], runtime["envs"]) == (True, 0, workdir, None)


def test_the_network_is_off_unless_asked_for(cloud: FakeE2BCloud, workdir: str) -> None:
    run_cells(e2b_environment(workdir=workdir), "1")
    assert cloud.calls_to("create")[0]["allow_internet_access"] is False
    assert cloud.calls_to("create")[0]["template"] is None  # E2B's default template


def test_keys_stay_on_the_host(cloud: FakeE2BCloud, workdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {"E2B_API_KEY": API_KEY, "OPENAI_API_KEY": "sk-" + "o" * 24}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    (dumped,) = run_cells(
        e2b_environment(workdir=workdir), "import os, json\nprint(json.dumps(dict(os.environ)))"
    )
    assert set(keys).isdisjoint(json.loads(dumped))
    sent = dumped + repr([arguments for _, arguments in cloud.calls])
    assert [value for value in keys.values() if value in sent] == []


def test_large_contexts_travel_as_files(cloud: FakeE2BCloud, workdir: str) -> None:
    report = "line of a long report\n" * 5000
    out = run_cells(
        e2b_environment(workdir=workdir, inline_context_chars=1000), "print(len(context))", contexts=[report]
    )
    assert out == [f"{len(report)}\n"]
    assert [call["path"] for call in cloud.calls_to("write")] == [
        f"{workdir}/rlm_runtime.py",
        f"{workdir}/context_0.txt",
    ]


def test_every_byte_survives_the_relay() -> None:
    """E2B decodes stdout as UTF-8 with replacement; the relay's base64 lines carry any bytes."""
    payload = bytes(range(256)) * 300
    relay = subprocess.run(
        [
            sys.executable,
            "-c",
            OUTPUT_RELAY,
            sys.executable,
            "-c",
            "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())",
        ],
        input=payload,
        capture_output=True,
        check=True,
    )
    text = relay.stdout.decode("utf-8")  # what the SDK hands on: the relay's output is plain ASCII
    lines = Base64Lines()
    received = b"".join(lines.feed(text[i : i + 777]) for i in range(0, len(text), 777))  # split anywhere
    assert received == payload
    assert payload.decode("utf-8", "replace").encode() != payload  # without it the frames would break


def test_a_corrupt_line_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="corrupt"):
        Base64Lines().feed("rlm:not base64!\n")
    assert Base64Lines().feed("rlm:" + base64.b64encode(b"half").decode()) == b""  # waits for its newline


def test_what_a_login_shell_prints_is_set_aside(cloud: FakeE2BCloud, workdir: str) -> None:
    """E2B runs commands in a login shell; a template whose profile prints something still works, and
    what it printed is shown with stderr when a start fails."""
    cloud.login_greeting = "Welcome to the acme template"  # no newline: the relay ends the line first
    assert run_cells(e2b_environment(workdir=workdir), "print('fine')") == ["fine\n"]
    environment = e2b_environment(workdir=workdir, python="python-does-not-exist", start_timeout=30)
    with pytest.raises(SandboxError, match="stray output: Welcome to the acme template"):
        start(environment)
    asyncio.run(environment.close())


def test_the_runtime_ends_on_close_and_the_sandbox_is_killed(cloud: FakeE2BCloud, workdir: str) -> None:
    run_cells(e2b_environment(workdir=workdir), "x = 1", "x += 1")
    (sandbox,) = cloud.sandboxes.values()
    (relay,) = sandbox.background
    assert relay.returncode == 0  # the runtime left by itself after the core's shutdown: nothing was killed
    assert sandbox.ended and len(cloud.calls_to("create")) == 1


def test_the_fake_rejects_what_the_real_sdk_would(cloud: FakeE2BCloud) -> None:
    """The signature checks can fail: a keyword the real SDK lacks is a TypeError."""
    with pytest.raises(TypeError):
        asyncio.run(cloud.AsyncSandbox.create(templates="base"))
    with pytest.raises(TypeError):
        asyncio.run(cloud.AsyncSandbox.create(apikey="x"))  # **opts are checked against ApiParams
    sandbox = asyncio.run(cloud.AsyncSandbox.create())
    try:
        with pytest.raises(TypeError):
            asyncio.run(sandbox.commands.run("true", workdir="/"))
    finally:
        cloud.Sandbox.kill(sandbox.sandbox_id)


def test_every_sdk_call_matches_the_installed_e2b(cloud: FakeE2BCloud, workdir: str) -> None:
    """Each SDK method the transport used exists on the installed e2b's classes as a coroutine where
    it was awaited and accepts the arguments it was given (bound against ``inspect.signature``)."""
    run_cells(
        e2b_environment(workdir=workdir, inline_context_chars=10), "print(len(context))", contexts=["a file"]
    )
    real = {
        "create": REAL_ASYNC_SANDBOX.create,
        "kill": REAL_ASYNC_SANDBOX._cls_kill,
        "make_dir": REAL_FILESYSTEM.make_dir,
        "write": REAL_FILESYSTEM.write,
        "run": REAL_COMMANDS.run,
    }
    assert {name for name, _ in cloud.calls} == set(real)
    assert all(inspect.iscoroutinefunction(method) for method in real.values())
    for name, arguments in cloud.calls:
        parameters = set(inspect.signature(real[name]).parameters) | API_PARAMS
        assert set(arguments) <= parameters, (name, set(arguments) - parameters)
    # What the stream calls on the command handle, and the blocking kill used at exit.
    for method in ("send_stdin", "close_stdin", "kill", "wait"):
        assert inspect.iscoroutinefunction(getattr(e2b.AsyncCommandHandle, method)), method
    assert {"request_timeout"} <= set(inspect.signature(e2b.AsyncCommandHandle.send_stdin).parameters)
    assert "sandbox_id" in inspect.signature(REAL_SANDBOX._cls_kill).parameters
