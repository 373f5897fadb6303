"""Fixtures for rlm-modal's tests: a fake Modal cloud that runs the real runtime in local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from modal_fakes import FakeModalCloud


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModalCloud]:
    """The fake cloud in place of modal's classes, with a token set on the host; the test fails if
    it leaves a sandbox running."""
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    with FakeModalCloud().installed(monkeypatch) as cloud:
        yield cloud


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    """The sandbox's working directory: the fake's sandboxes share this machine's filesystem."""
    return str(tmp_path / "rlm")
