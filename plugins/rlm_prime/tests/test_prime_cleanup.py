"""``rlm cleanup`` and Prime, beyond the lifecycle contract: paging, a missing key, an unreachable API,
and what the command prints."""

from __future__ import annotations

import prime_sandboxes
import pytest
from prime_fakes import FakePrimeCloud
from rlm_prime import cleanup as prime_cleanup

from rlm_core.testing.cleanup_command import check_cleanup_command_removes
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


def test_every_page_is_read_before_anything_is_deleted(
    cloud: FakePrimeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prime_cleanup, "PAGE_SIZE", 2)
    orphans = {cloud.leave(SandboxLifecycleContract.dead_owner()) for _ in range(5)}
    rows = prime_cleanup.cleanup_sandboxes(include_live=False, dry_run=False)
    assert {row["id"] for row in rows if row["removed"]} == orphans
    names = [name for name, _ in cloud.calls if name in ("list", "delete")]
    assert names == ["list"] * 3 + ["delete"] * 5
    assert [call["page"] for call in cloud.calls_to("list")] == [1, 2, 3]


def test_no_key_means_nothing_to_ask(cloud: FakePrimeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRIME_API_KEY")
    monkeypatch.setattr(prime_sandboxes.Config, "api_key", property(lambda self: ""))
    assert prime_cleanup.cleanup_sandboxes(include_live=True, dry_run=True) == []
    assert cloud.calls == []


def test_an_unreachable_api_is_one_error_row(cloud: FakePrimeCloud) -> None:
    cloud.fail("list", prime_sandboxes.APIError("503 from the Prime API"))
    assert prime_cleanup.cleanup_sandboxes(include_live=False, dry_run=False) == [
        {
            "kind": "prime",
            "error": "could not list prime sandboxes (APIError: 503 from the Prime API); check the network "
            "and PRIME_API_KEY (or `prime login`)",
        }
    ]
    assert cloud.calls_to("aclose")  # the client was released all the same


def test_the_command_lists_then_deletes(
    cloud: FakePrimeCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = SandboxLifecycleContract.dead_owner()
    left = cloud.leave(gone)
    check_cleanup_command_removes("prime", left, gone, monkeypatch, capsys)
    assert cloud.sandboxes[left].ended
