"""``rlm cleanup`` and E2B, beyond the lifecycle contract: paging, a missing key, an unreachable API,
and what the command prints."""

from __future__ import annotations

import e2b
import pytest
from e2b_fakes import FakeE2BCloud
from rlm_e2b import cleanup as e2b_cleanup

from rlm_core.testing.cleanup_command import check_cleanup_command_removes
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


def test_every_page_is_read_before_anything_is_killed(
    cloud: FakeE2BCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(e2b_cleanup, "PAGE_SIZE", 2)
    orphans = {cloud.leave(SandboxLifecycleContract.dead_owner()) for _ in range(5)}
    rows = e2b_cleanup.cleanup_sandboxes(include_live=False, dry_run=False)
    assert {row["id"] for row in rows if row["removed"]} == orphans
    names = [name for name, _ in cloud.calls if name in ("list", "next_items", "kill")]
    assert names == ["list"] + ["next_items"] * 3 + ["kill"] * 5
    (listing,) = cloud.calls_to("list")
    assert listing["query"].metadata == {"rlm-core": "1"} and listing["limit"] == 2


def test_no_key_means_nothing_to_ask(cloud: FakeE2BCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_API_KEY")
    assert e2b_cleanup.cleanup_sandboxes(include_live=True, dry_run=True) == []
    assert cloud.calls == []


def test_an_unreachable_api_is_one_error_row(cloud: FakeE2BCloud) -> None:
    cloud.fail("next_items", e2b.SandboxException("503 from the E2B API"))
    assert e2b_cleanup.cleanup_sandboxes(include_live=False, dry_run=False) == [
        {
            "kind": "e2b",
            "error": "could not list e2b sandboxes (SandboxException: 503 from the E2B API); check the network "
            "and E2B_API_KEY",
        }
    ]


def test_the_command_lists_then_kills(
    cloud: FakeE2BCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = SandboxLifecycleContract.dead_owner()
    left = cloud.leave(gone)
    check_cleanup_command_removes("e2b", left, gone, monkeypatch, capsys)
    assert cloud.sandboxes[left].ended
