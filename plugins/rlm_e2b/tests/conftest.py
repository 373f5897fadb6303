"""Fixtures for rlm-e2b's tests: a fake E2B cloud that runs the real runtime in local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b_fakes import API_KEY, FakeE2BCloud


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeE2BCloud]:
    """The fake cloud in place of e2b's sandbox classes, with a key set on the host. Every test ends
    with every sandbox killed, or fails: that is the plugin's promise on every path."""
    monkeypatch.setenv("E2B_API_KEY", API_KEY)
    with FakeE2BCloud().installed(monkeypatch) as cloud:
        yield cloud


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    """The sandbox's working directory: the fake's sandboxes share this machine's filesystem."""
    return str(tmp_path / "rlm")
