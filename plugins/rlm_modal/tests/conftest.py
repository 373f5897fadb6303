"""Fixtures for rlm-modal's tests: a fake Modal cloud that runs the real runtime in local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from modal_fakes import FakeModalCloud


@pytest.fixture
def modal_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModalCloud]:
    """The fake cloud, installed in place of modal's classes. Every test ends with every sandbox
    terminated, or fails: that is the plugin's promise on every path."""
    cloud = FakeModalCloud()
    cloud.install(monkeypatch)
    yield cloud
    leftovers = [state.id for state in cloud.live()]
    cloud.shutdown()
    assert not leftovers, f"sandboxes left running: {leftovers}"


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    """The sandbox's working directory: the fake's sandboxes share this machine's filesystem."""
    return str(tmp_path / "rlm")
