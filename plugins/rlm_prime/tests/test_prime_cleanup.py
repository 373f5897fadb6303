"""``rlm cleanup`` finds Prime sandboxes of killed owners by their labels and deletes them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import prime_sandboxes
import pytest
from prime_fakes import FakePrimeCloud
from rlm_prime import cleanup as prime_cleanup
from rlm_prime.cleanup import cleanup_sandboxes
from rlm_prime.owner import host_label

from rlm_core.cli.cleanup import cleanup_main
from rlm_core.plugins import reset_registry


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _sandbox(
    cloud: FakePrimeCloud, pid: int, host: str | None = None, run_id: str = "r1", mark: bool = True
) -> str:
    labels = [f"rlm-core-run-{run_id}", f"rlm-core-pid-{pid}", f"rlm-core-host-{host or host_label()}"]
    request = prime_sandboxes.CreateSandboxRequest(
        name=f"rlm-{run_id}", docker_image="python:3.11-slim", labels=(["rlm-core"] if mark else []) + labels
    )
    return asyncio.run(cloud.client.create(request)).id


def test_orphans_are_deleted_and_live_owners_spared(prime_cloud: FakePrimeCloud) -> None:
    orphan = _sandbox(prime_cloud, _dead_pid(), run_id="dead")
    live = _sandbox(prime_cloud, os.getpid(), run_id="live")
    elsewhere = _sandbox(prime_cloud, 1, host="another-machine", run_id="far")
    unmarked = _sandbox(prime_cloud, _dead_pid(), run_id="not-ours", mark=False)

    listed = cleanup_sandboxes(include_live=False, dry_run=True)
    assert [(e["id"], e["run_id"], e["removed"]) for e in listed] == [(orphan, "dead", False)]
    assert not prime_cloud.sandboxes[orphan].deleted

    removed = cleanup_sandboxes(include_live=False, dry_run=False)
    assert [(e["kind"], e["id"], e["removed"]) for e in removed] == [("prime", orphan, True)]
    assert prime_cloud.sandboxes[orphan].deleted and not prime_cloud.sandboxes[live].deleted

    everything = cleanup_sandboxes(include_live=True, dry_run=False)
    assert {e["id"] for e in everything} == {live, elsewhere}
    assert not prime_cloud.sandboxes[unmarked].deleted  # not ours: never touched
    asyncio.run(prime_cloud.client.delete(unmarked))


def test_every_page_is_read(prime_cloud: FakePrimeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prime_cleanup, "PAGE_SIZE", 2)
    orphans = {_sandbox(prime_cloud, _dead_pid(), run_id=f"r{n}") for n in range(5)}
    assert {e["id"] for e in cleanup_sandboxes(include_live=False, dry_run=False)} == orphans
    assert [call["page"] for name, call in prime_cloud.calls if name == "list"] == [1, 2, 3]


def test_without_a_key_there_is_nothing_to_ask(
    prime_cloud: FakePrimeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    monkeypatch.setattr(prime_sandboxes.Config, "api_key", property(lambda self: ""))
    assert cleanup_sandboxes(include_live=True, dry_run=True) == []
    assert not any(name == "list" for name, _ in prime_cloud.calls)


def test_an_unreachable_service_is_an_error_entry(prime_cloud: FakePrimeCloud) -> None:
    prime_cloud.fail("list", prime_sandboxes.APIError("503 from the Prime API"))
    (entry,) = cleanup_sandboxes(include_live=False, dry_run=False)
    assert entry["kind"] == "prime" and "503" in entry["error"] and "PRIME_API_KEY" in entry["error"]


def test_rlm_cleanup_prints_prime_sandboxes(
    prime_cloud: FakePrimeCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RLM_PLUGINS", "prime")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    orphan = _sandbox(prime_cloud, _dead_pid(), run_id="gone")
    reset_registry()
    try:
        assert cleanup_main(["--dry-run", "--json"]) == 0
        listed = [e for e in json.loads(capsys.readouterr().out) if e["kind"] == "prime"]
        assert [(e["id"], e["plugin"]) for e in listed] == [(orphan, "prime")]
        assert cleanup_main([]) == 0
        assert f"prime:\n  removed {orphan} (run gone" in capsys.readouterr().out
    finally:
        reset_registry()
    assert prime_cloud.sandboxes[orphan].deleted
