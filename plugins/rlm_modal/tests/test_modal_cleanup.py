"""``rlm cleanup`` finds Modal sandboxes of killed owners by their tags and terminates them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from typing import Any

import pytest
from modal_fakes import FakeModalCloud
from rlm_modal.cleanup import cleanup_sandboxes

from rlm_core.cli.cleanup import cleanup_main
from rlm_core.plugins import reset_registry


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _sandbox(cloud: FakeModalCloud, pid: int, host: str | None = None, run_id: str = "r1") -> Any:
    tags = {
        "rlm-core": "1",
        "rlm-core-run-id": run_id,
        "rlm-core-owner-pid": str(pid),
        "rlm-core-owner-host": host or socket.gethostname(),
    }
    return asyncio.run(cloud.Sandbox.create.aio(app=None, tags=tags))


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")


@pytest.mark.usefixtures("credentials")
def test_orphans_are_terminated_and_live_owners_spared(modal_cloud: FakeModalCloud) -> None:
    orphan = _sandbox(modal_cloud, _dead_pid(), run_id="dead")
    live = _sandbox(modal_cloud, os.getpid(), run_id="live")
    elsewhere = _sandbox(modal_cloud, 1, host="another-machine", run_id="far")
    untagged = asyncio.run(modal_cloud.Sandbox.create.aio(app=None, tags={"team": "x"}))

    listed = cleanup_sandboxes(include_live=False, dry_run=True)
    assert [(e["id"], e["run_id"], e["removed"]) for e in listed] == [(orphan.object_id, "dead", False)]
    assert not modal_cloud.sandboxes[orphan.object_id].terminated

    removed = cleanup_sandboxes(include_live=False, dry_run=False)
    assert [(e["kind"], e["id"], e["removed"]) for e in removed] == [("modal", orphan.object_id, True)]
    assert modal_cloud.sandboxes[orphan.object_id].terminated
    assert not modal_cloud.sandboxes[live.object_id].terminated

    everything = cleanup_sandboxes(include_live=True, dry_run=False)
    assert {e["id"] for e in everything} == {live.object_id, elsewhere.object_id}
    assert not modal_cloud.sandboxes[untagged.object_id].terminated  # not ours: never touched
    untagged.terminate()


def test_without_credentials_there_is_nothing_to_ask(
    modal_cloud: FakeModalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal.config

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.setattr(modal.config.config, "get", lambda key, *a, **k: None)
    assert cleanup_sandboxes(include_live=True, dry_run=True) == []
    assert not any(name == "list" for name, _ in modal_cloud.calls)


@pytest.mark.usefixtures("credentials")
def test_an_unreachable_service_is_an_error_entry(modal_cloud: FakeModalCloud) -> None:
    modal_cloud.fail("list", ConnectionError("api.modal.com unreachable"))
    (entry,) = cleanup_sandboxes(include_live=False, dry_run=False)
    assert (
        entry["kind"] == "modal" and "unreachable" in entry["error"] and "modal token new" in entry["error"]
    )


@pytest.mark.usefixtures("credentials")
def test_rlm_cleanup_prints_modal_sandboxes(
    modal_cloud: FakeModalCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RLM_PLUGINS", "modal")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    orphan = _sandbox(modal_cloud, _dead_pid(), run_id="gone")
    reset_registry()
    try:
        assert cleanup_main(["--dry-run", "--json"]) == 0
        listed = [e for e in json.loads(capsys.readouterr().out) if e["kind"] == "modal"]
        assert [(e["id"], e["plugin"]) for e in listed] == [(orphan.object_id, "modal")]
        assert cleanup_main([]) == 0
        out = capsys.readouterr().out
        assert f"modal:\n  removed {orphan.object_id} (run gone" in out
    finally:
        reset_registry()
    assert modal_cloud.sandboxes[orphan.object_id].terminated
