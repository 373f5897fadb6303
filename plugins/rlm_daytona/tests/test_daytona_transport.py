"""What the daytona environment asks of Daytona: options, files, variables, registration, lazy import,
the relay both ways, and that every SDK call it makes is one the installed daytona accepts."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import subprocess
import sys

import daytona
import pytest
from daytona_fakes import (
    API_KEY,
    REAL_BLOCKING_CLIENT,
    REAL_CLIENT,
    REAL_FS,
    REAL_PROCESS,
    REAL_SANDBOX,
    SECRET_PLACEHOLDER,
    FakeDaytonaCloud,
)
from rlm_daytona.environment import daytona_environment
from rlm_daytona.transport import DaytonaTransport

from rlm_core.environments import SandboxEnvironment
from rlm_core.environments.lifecycle import TWO_WAY_RELAY, Base64Lines, Owner, encode_input
from rlm_core.errors import ConfigurationError, SandboxStartError
from rlm_core.plugins import PluginRegistry
from rlm_core.testing.environment_contract import RecordingHost, run_cells


def start(environment: SandboxEnvironment) -> None:
    asyncio.run(environment.start(RecordingHost(), {}))


def test_importing_the_plugin_leaves_the_sdk_unloaded() -> None:
    code = "import sys, rlm_daytona\nprint('daytona' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_registry_builds_a_daytona_environment() -> None:
    registry = PluginRegistry()
    built = registry.create("environments", "daytona", snapshot="my-python", timeout=12)
    assert isinstance(built, SandboxEnvironment) and isinstance(built.transport, DaytonaTransport)
    assert (built.transport.snapshot, built.timeout) == ("my-python", 12)
    assert registry.get("environments", "daytona").plugin == "daytona"


BAD_SETTINGS = {
    "snapshots": ({"snapshots": "x"}, r"unknown environment_kwargs \['snapshots'\].*snapshot"),
    "both sources": ({"snapshot": "a", "image": "python:3.11"}, "not both"),
    "resources without an image": ({"cpu": 2}, "apply to a sandbox built from image="),
    "memory": ({"image": "python:3.11", "memory": 0.5}, "positive whole number"),
    "auto_stop_interval": ({"auto_stop_interval": 0}, "positive minutes"),
    "workdir": ({"workdir": "rlm"}, "absolute path"),
    "env": ({"env": {"GITHUB_TOKEN": "x"}}, r"\['GITHUB_TOKEN'\] look like secrets.*secrets="),
    "key-shaped value": ({"env": {"NOTE": "sk-" + "a" * 30}}, r"\['NOTE'\] look like secrets"),
    "secret values": ({"secrets": {"DB_PASSWORD": 1234}}, "organization Secret names"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_bad_setting_says_what_is_wrong(case: str) -> None:
    settings, message = BAD_SETTINGS[case]
    with pytest.raises(ConfigurationError, match=message):
        daytona_environment(**settings)


def test_without_a_key_it_says_how_to_get_one(
    cloud: FakeDaytonaCloud, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAYTONA_API_KEY")
    with pytest.raises(SandboxStartError, match="DAYTONA_API_KEY"):
        start(daytona_environment(workdir=workdir))
    assert cloud.calls == []


def test_a_rejected_key_says_how_to_fix_it(cloud: FakeDaytonaCloud, workdir: str) -> None:
    cloud.fail("create", daytona.DaytonaAuthenticationError("invalid API key"))
    with pytest.raises(SandboxStartError, match=r"rejected the API key .*DAYTONA_API_KEY"):
        start(daytona_environment(workdir=workdir))
    assert cloud.sandboxes == {}
    assert cloud.calls_to("close")  # the client was released all the same


def test_a_creation_that_timed_out_after_the_sandbox_existed_deletes_it(
    cloud: FakeDaytonaCloud, workdir: str
) -> None:
    orphan = cloud.leave(Owner.current())
    timed_out = daytona.DaytonaTimeoutError("Sandbox failed to become ready within the 180s timeout")
    timed_out._attach_sandbox_id(orphan)
    cloud.fail("create", timed_out)
    with pytest.raises(SandboxStartError, match="within the 180s timeout"):
        start(daytona_environment(workdir=workdir))
    assert cloud.sandboxes[orphan].ended
    assert [call["sandbox_id_or_name"] for call in cloud.calls_to("get")] == [orphan]


def test_options_reach_daytona_from_an_image(cloud: FakeDaytonaCloud, workdir: str) -> None:
    environment = daytona_environment(
        workdir=workdir,
        image="ghcr.io/acme/python:3.12",
        cpu=2,
        memory=4,
        disk=10,
        target="eu",
        auto_stop_interval=30,
        ttl_minutes=240,
        create_timeout=300,
        network_block_all=False,
        env={"MODE": "test"},
        secrets={"DB_PASSWORD": "team-db-password"},
        labels={"team": "search"},
        api_key="dtn_explicit",
        api_url="https://daytona.acme.internal/api",
    )
    out = run_cells(
        environment, "import os\nprint(os.environ['MODE'], os.environ['DB_PASSWORD'], os.getcwd())"
    )
    assert out == [f"test {SECRET_PLACEHOLDER}team-db-password {workdir}\n"]
    (create,) = cloud.calls_to("create")
    params = create["params"]
    assert isinstance(params, daytona.CreateSandboxFromImageParams) and create["timeout"] == 300
    assert (params.image, params.resources) == (
        "ghcr.io/acme/python:3.12",
        daytona.Resources(cpu=2, memory=4, disk=10),
    )
    assert (params.target, params.auto_stop_interval, params.ttl_minutes) == ("eu", 30, 240)
    assert (params.ephemeral, params.auto_delete_interval, params.network_block_all) == (True, 0, False)
    assert (params.env_vars, params.secrets, params.language) == (
        {"MODE": "test"},
        {"DB_PASSWORD": "team-db-password"},
        "python",
    )
    transport = environment.transport
    assert isinstance(transport, DaytonaTransport)
    labels = params.labels
    assert labels["team"] == "search" and labels["rlm-core"] == "1"
    assert labels["rlm-core-run-id"] == transport.run_id
    assert labels["rlm-core-owner-pid"].isdigit() and labels["rlm-core-owner-host"]
    (config,) = cloud.configs
    assert (config.api_key, config.api_url, config.target) == (
        "dtn_explicit",
        "https://daytona.acme.internal/api",
        "eu",
    )


def test_the_default_is_daytonas_snapshot_without_network(cloud: FakeDaytonaCloud, workdir: str) -> None:
    run_cells(daytona_environment(workdir=workdir), "1")
    params = cloud.calls_to("create")[0]["params"]
    assert isinstance(params, daytona.CreateSandboxFromSnapshotParams)
    assert (params.snapshot, params.network_block_all, params.ephemeral) == (None, True, True)


def test_the_runtime_runs_in_a_session_of_its_own_without_echo(cloud: FakeDaytonaCloud, workdir: str) -> None:
    run_cells(daytona_environment(workdir=workdir), "x = 1", "x += 1")
    (request,) = [call["req"] for call in cloud.calls_to("execute_session_command")]
    assert request.run_async and request.suppress_input_echo  # an echo would land in the runtime's stdout
    assert request.command.startswith(f"cd {workdir} && python3 -c ")
    (session,) = {call["session_id"] for call in cloud.calls_to("create_session")}
    assert [call["session_id"] for call in cloud.calls_to("delete_session")] == [session]
    assert all(call["data"].endswith("\n") for call in cloud.calls_to("send_session_command_input"))
    (sandbox,) = cloud.sandboxes.values()
    (relay,) = sandbox.commands
    assert relay.child.returncode == 0  # the core's in-band shutdown ended the runtime: nothing was killed
    assert sandbox.ended and len(cloud.calls_to("create")) == 1


def test_keys_stay_on_the_host(
    cloud: FakeDaytonaCloud, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {"DAYTONA_API_KEY": API_KEY, "OPENAI_API_KEY": "sk-" + "o" * 24}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    (dumped,) = run_cells(
        daytona_environment(workdir=workdir), "import os, json\nprint(json.dumps(dict(os.environ)))"
    )
    assert set(keys).isdisjoint(json.loads(dumped))
    sent = dumped + repr(
        [arguments for name, arguments in cloud.calls if name not in ("AsyncDaytona", "Daytona")]
    )
    assert [value for value in keys.values() if value in sent] == []


def test_large_contexts_are_uploaded(cloud: FakeDaytonaCloud, workdir: str) -> None:
    report = "line of a long report\n" * 5000
    out = run_cells(
        daytona_environment(workdir=workdir, inline_context_chars=1000),
        "print(len(context))",
        contexts=[report],
    )
    assert out == [f"{len(report)}\n"]
    assert [call["dst"] for call in cloud.calls_to("upload_file")] == [
        f"{workdir}/rlm_runtime.py",
        f"{workdir}/context_0.txt",
    ]


def test_every_byte_survives_the_relay_both_ways() -> None:
    """Daytona carries text both ways (and splits stdout on \\x01/\\x02 markers): base64 lines carry any bytes."""
    payload = bytes(range(256)) * 300
    echo = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"
    sent = "".join(encode_input(payload[i : i + 1000]) for i in range(0, len(payload), 1000))
    relay = subprocess.run(
        [sys.executable, "-c", TWO_WAY_RELAY, sys.executable, "-c", echo],
        input=sent.encode("utf-8"),
        capture_output=True,
        check=True,
    )
    text = relay.stdout.decode("utf-8")
    assert "\x01" not in text and "\x02" not in text
    lines = Base64Lines()
    assert b"".join(lines.feed(text[i : i + 777]) for i in range(0, len(text), 777)) == payload


def test_unmarked_lines_are_set_aside_and_corrupt_ones_refused() -> None:
    lines = Base64Lines()
    assert lines.feed("daemon says hi\r\nrlm:" + base64.b64encode(b"ok").decode() + "\r\n") == b"ok"
    assert lines.stray == ["daemon says hi"]
    with pytest.raises(ConnectionError, match="corrupt"):
        lines.feed("rlm:%%%\n")


def test_the_relay_exits_with_the_runtimes_status() -> None:
    relay = subprocess.run(
        [sys.executable, "-c", TWO_WAY_RELAY, sys.executable, "-c", "raise SystemExit(3)"], input=b""
    )
    assert relay.returncode == 3


def test_the_fake_rejects_what_the_real_sdk_would(cloud: FakeDaytonaCloud) -> None:
    """The signature checks can fail: a keyword the real SDK lacks is a TypeError."""
    client = cloud.AsyncDaytona()
    with pytest.raises(TypeError):
        asyncio.run(client.create(daytona.CreateSandboxFromSnapshotParams(), create_timeout=5))
    sandbox = asyncio.run(client.create())
    try:
        with pytest.raises(TypeError):
            asyncio.run(sandbox.process.send_session_command_input("s", "c", input="x"))
        with pytest.raises(TypeError):
            asyncio.run(sandbox.fs.upload_file(b"x", path="/tmp/x"))
    finally:
        asyncio.run(sandbox.delete())


def test_every_sdk_call_matches_the_installed_daytona(cloud: FakeDaytonaCloud, workdir: str) -> None:
    """Each SDK method the transport used exists on the installed daytona's classes as a coroutine and
    accepts the arguments it was given (bound against ``inspect.signature``)."""
    run_cells(
        daytona_environment(workdir=workdir, inline_context_chars=10),
        "print(len(context))",
        contexts=["a file"],
    )
    process_methods = (
        "exec",
        "create_session",
        "execute_session_command",
        "get_session_command_logs_async",
        "send_session_command_input",
        "get_session_command",
        "delete_session",
    )
    real = {
        "AsyncDaytona": REAL_CLIENT.__init__,
        "create": REAL_CLIENT.create,
        "close": REAL_CLIENT.close,
        "upload_file": REAL_FS.upload_file,
        "delete": REAL_SANDBOX.delete,
        **{name: getattr(REAL_PROCESS, name) for name in process_methods},
    }
    assert {name for name, _ in cloud.calls} == set(real)
    assert all(inspect.iscoroutinefunction(method) for name, method in real.items() if name != "AsyncDaytona")
    for name, arguments in cloud.calls:
        unknown = set(arguments) - set(inspect.signature(real[name]).parameters)
        assert not unknown, (name, unknown)
    # The blocking calls the exit registry makes.
    assert {"sandbox_id_or_name"} <= set(inspect.signature(REAL_BLOCKING_CLIENT.get).parameters)
    assert {"timeout"} <= set(inspect.signature(daytona.Sandbox.delete).parameters)
