"""``rlm cleanup`` and Daytona, beyond the lifecycle contract: a missing key, an unreachable API, and
what the command prints."""

from __future__ import annotations

import daytona
import pytest
from daytona_fakes import FakeDaytonaCloud
from rlm_daytona import cleanup as daytona_cleanup

from rlm_core.testing.cleanup_command import check_cleanup_command_removes
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


def test_the_listing_is_read_whole_before_anything_is_deleted(cloud: FakeDaytonaCloud) -> None:
    orphans = {cloud.leave(SandboxLifecycleContract.dead_owner()) for _ in range(3)}
    calls_before = len(cloud.calls)
    rows = daytona_cleanup.cleanup_sandboxes(include_live=False, dry_run=False)
    assert {row["id"] for row in rows if row["removed"]} == orphans
    names = [name for name, _ in cloud.calls[calls_before:]]
    assert names == ["AsyncDaytona", "list", "delete", "delete", "delete", "close"]
    (listing,) = cloud.calls_to("list")
    assert listing["query"].labels == {"rlm-core": "1"}


def test_no_key_means_nothing_to_ask(cloud: FakeDaytonaCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAYTONA_API_KEY")
    assert daytona_cleanup.cleanup_sandboxes(include_live=True, dry_run=True) == []
    assert cloud.calls == []


def test_an_unreachable_api_is_one_error_row(cloud: FakeDaytonaCloud) -> None:
    cloud.fail("list", daytona.DaytonaConnectionError("Failed to list sandboxes: connection refused"))
    assert daytona_cleanup.cleanup_sandboxes(include_live=False, dry_run=False) == [
        {
            "kind": "daytona",
            "error": "could not list daytona sandboxes (DaytonaConnectionError: Failed to list sandboxes: "
            "connection refused); check the network and DAYTONA_API_KEY (and DAYTONA_API_URL for a "
            "self-hosted Daytona)",
        }
    ]
    assert cloud.calls_to("close")  # the client was released all the same


def test_the_command_lists_then_deletes(
    cloud: FakeDaytonaCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = SandboxLifecycleContract.dead_owner()
    left = cloud.leave(gone)
    check_cleanup_command_removes("daytona", left, gone, monkeypatch, capsys)
    assert cloud.sandboxes[left].ended
