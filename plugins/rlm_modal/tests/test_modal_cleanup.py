"""``rlm cleanup`` and Modal: what the lifecycle contract cannot know (credentials, an unreachable
API, the command's output). Orphans, live owners and dry runs are the contract's."""

from __future__ import annotations

import pytest
from modal_fakes import FakeModalCloud
from rlm_modal.cleanup import cleanup_sandboxes

from rlm_core.testing.cleanup_command import check_cleanup_command_removes
from rlm_core.testing.sandbox_lifecycle_contract import SandboxLifecycleContract


def test_without_credentials_there_is_nothing_to_ask(
    cloud: FakeModalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal.config

    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.setattr(modal.config.config, "get", lambda key, *a, **k: None)
    assert cleanup_sandboxes(include_live=True, dry_run=True) == []
    assert cloud.calls_to("list") == []


def test_an_unreachable_service_is_an_error_entry(cloud: FakeModalCloud) -> None:
    cloud.fail("list", ConnectionError("api.modal.com unreachable"))
    (entry,) = cleanup_sandboxes(include_live=False, dry_run=False)
    assert (entry["kind"], "id" in entry) == ("modal", False)
    assert "unreachable" in entry["error"] and "modal token new" in entry["error"]


def test_rlm_cleanup_prints_modal_sandboxes(
    cloud: FakeModalCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = SandboxLifecycleContract.dead_owner()
    orphan = cloud.leave(owner)
    check_cleanup_command_removes("modal", orphan, owner, monkeypatch, capsys)
    assert cloud.sandboxes[orphan].ended
