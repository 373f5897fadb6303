"""What the modal environment asks of Modal: options, files, environment, registration, lazy import."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import modal
import pytest
from modal_fakes import FakeModalCloud
from rlm_modal.environment import modal_environment
from rlm_modal.transport import ModalTransport

from rlm_core.environments import SandboxEnvironment
from rlm_core.errors import ConfigurationError, SandboxStartError
from rlm_core.plugins import PluginRegistry
from rlm_core.testing.environment_contract import RecordingHost, run_cells


def test_import_does_not_load_the_sdk() -> None:
    code = "import sys, rlm_modal\nprint('modal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registered_as_the_modal_environment() -> None:
    registry = PluginRegistry()
    environment = registry.create("environments", "modal", app_name="my-app", timeout=12)
    assert isinstance(environment, SandboxEnvironment)
    assert isinstance(environment.transport, ModalTransport)
    assert environment.transport.app_name == "my-app" and environment.timeout == 12
    assert registry.get("environments", "modal").plugin == "modal"


def test_unknown_and_bad_options_are_clear() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown environment_kwargs \['gpus'\].*gpu"):
        modal_environment(gpus=2)
    with pytest.raises(ConfigurationError, match="list of package names"):
        modal_environment(pip="numpy")
    with pytest.raises(ConfigurationError, match="not a size"):
        modal_environment(memory="lots")
    with pytest.raises(ConfigurationError, match="absolute path"):
        modal_environment(workdir="rlm")
    assert ModalTransport(memory="2g").memory == 2048


def test_rejected_credentials_say_how_to_fix_them(cloud: FakeModalCloud, workdir: str) -> None:
    cloud.fail("create", modal.exception.AuthError("Token missing"))
    with pytest.raises(SandboxStartError, match="modal token new") as caught:
        asyncio.run(modal_environment(workdir=workdir).start(RecordingHost(), {}))
    assert type(caught.value).__name__ == "SandboxStartError"  # the name a user reads
    assert cloud.sandboxes == {}


def test_options_reach_modal(cloud: FakeModalCloud, workdir: str) -> None:
    cloud.named_secrets["team-db"] = {"DB_URL": "postgres://db"}
    environment = modal_environment(
        workdir=workdir,
        python_version="3.12",
        pip=["numpy==2.1.0"],
        apt=["ripgrep"],
        app_name="research",
        sandbox_timeout=900,
        idle_timeout=120,
        cpu=2.0,
        memory="4g",
        gpu="A10G",
        region="us-east",
        secrets=["team-db", {"EXTRA": "1"}],
        env={"MODE": "test"},
        tags={"team": "search"},
    )
    out = run_cells(
        environment, "import os\nprint(os.environ['DB_URL'], os.environ['EXTRA'], os.environ['MODE'])"
    )
    assert out == ["postgres://db 1 test\n"]
    calls = dict(cloud.calls)
    assert calls["lookup"]["name"] == "research" and calls["lookup"]["create_if_missing"] is True
    assert calls["debian_slim"]["python_version"] == "3.12"
    assert calls["pip_install"]["packages"] == ("numpy==2.1.0",)
    assert calls["apt_install"]["packages"] == ("ripgrep",)
    create = calls["create"]
    assert (create["timeout"], create["idle_timeout"], create["cpu"], create["memory"]) == (
        900,
        120,
        2.0,
        4096,
    )
    assert (create["gpu"], create["region"], create["block_network"]) == ("A10G", "us-east", True)
    assert create["args"] == ()  # no entrypoint of ours: no web server, nothing listening
    tags = create["tags"]
    assert tags["team"] == "search" and tags["rlm-core"] == "1"
    assert tags["rlm-core-run-id"] == environment.transport.run_id  # type: ignore[attr-defined]
    assert tags["rlm-core-owner-pid"].isdigit() and tags["rlm-core-owner-host"]


def test_a_registry_image(cloud: FakeModalCloud, workdir: str) -> None:
    run_cells(modal_environment(workdir=workdir, image="python:3.12-slim", add_python=None), "1")
    assert dict(cloud.calls)["from_registry"]["tag"] == "python:3.12-slim"


def test_no_api_key_reaches_the_sandbox(
    cloud: FakeModalCloud, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_secrets = {
        "MODAL_TOKEN_ID": "ak-" + "h" * 16,
        "MODAL_TOKEN_SECRET": "as-" + "s" * 16,
        "OPENAI_API_KEY": "sk-" + "o" * 20,
    }
    for name, value in host_secrets.items():
        monkeypatch.setenv(name, value)
    (out,) = run_cells(
        modal_environment(workdir=workdir), "import os, json\nprint(json.dumps(dict(os.environ)))"
    )
    inside = json.loads(out)
    assert not set(host_secrets) & set(inside)
    assert not any(value in out or value in repr(cloud.calls) for value in host_secrets.values())


def test_large_contexts_travel_as_files(cloud: FakeModalCloud, workdir: str) -> None:
    document = "line of a long report\n" * 5000
    environment = modal_environment(workdir=workdir, inline_context_chars=1000)
    assert run_cells(environment, "print(len(context), context[:4])", contexts=[document]) == [
        f"{len(document)} line\n"
    ]
    written = [args["remote_path"] for args in cloud.calls_to("write_bytes")]
    assert written == [f"{workdir}/rlm_runtime.py", f"{workdir}/context_0.txt"]


def test_multi_turn_state_persists_across_cells(cloud: FakeModalCloud, workdir: str) -> None:
    out = run_cells(
        modal_environment(workdir=workdir), "notes = ['first']", "notes.append('second')\nprint(notes)"
    )
    assert out[1] == "['first', 'second']\n"
    assert len(cloud.sandboxes) == 1 and len(cloud.calls_to("create")) == 1


def test_the_fake_rejects_what_the_real_sdk_would(cloud: FakeModalCloud) -> None:
    """The signature checks can fail: a keyword the real Sandbox.exec lacks is a TypeError."""
    sandbox = asyncio.run(cloud.Sandbox.create.aio(app=None))
    try:
        with pytest.raises(TypeError):
            asyncio.run(sandbox.exec.aio("true", cwd="/"))
        with pytest.raises(TypeError):
            asyncio.run(cloud.Sandbox.create.aio(cpus=2))
    finally:
        sandbox.terminate()


def test_every_sdk_call_matches_the_installed_modal(cloud: FakeModalCloud, workdir: str) -> None:
    """Each SDK method the transport used exists in the installed modal, has an ``.aio`` form where it
    was awaited, and accepts the arguments it was given (bound against ``inspect.signature``)."""
    import inspect

    import modal.container_process
    import modal.io_streams
    import modal.sandbox.sandbox
    from modal_fakes import REAL_APP, REAL_IMAGE, REAL_SANDBOX, REAL_SECRET  # modal's own, not the fakes

    environment = modal_environment(
        workdir=workdir, pip=["numpy"], secrets=[{"A": "1"}], inline_context_chars=10
    )
    run_cells(environment, "print(len(context))", contexts=["a context sent as a file"])
    real = {
        "lookup": (REAL_APP.lookup, False),
        "debian_slim": (REAL_IMAGE.debian_slim, False),
        "pip_install": (REAL_IMAGE.pip_install, True),
        "from_dict": (REAL_SECRET.from_dict, False),
        "create": (REAL_SANDBOX.create, False),
        "make_directory": (modal.sandbox.sandbox.SandboxFilesystem.make_directory, True),
        "write_bytes": (modal.sandbox.sandbox.SandboxFilesystem.write_bytes, True),
        "exec": (REAL_SANDBOX.exec, True),
        "drain": (modal.io_streams.StreamWriter.drain, True),
        "wait": (modal.container_process.ContainerProcess.wait, True),
        "terminate": (REAL_SANDBOX.terminate, True),
    }
    used = {name for name, _ in cloud.calls}
    assert used == set(real)
    awaited = {"lookup", "create", "make_directory", "write_bytes", "exec", "drain", "wait", "terminate"}
    assert all(hasattr(real[name][0], "aio") for name in awaited)
    for name, arguments in cloud.calls:
        method, takes_self = real[name]
        parameters = inspect.signature(method).parameters
        assert set(arguments) <= set(parameters), (name, set(arguments) - set(parameters))
        assert takes_self == ("self" in parameters)
