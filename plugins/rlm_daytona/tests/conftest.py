"""Fixtures for rlm-daytona's tests: a fake Daytona cloud that runs the real runtime in local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daytona_fakes import API_KEY, FakeDaytonaCloud


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaytonaCloud]:
    """The fake cloud in place of the SDK's clients, with a key set on the host. Every test ends with
    every sandbox deleted, or fails: that is the plugin's promise on every path."""
    monkeypatch.setenv("DAYTONA_API_KEY", API_KEY)
    monkeypatch.delenv("DAYTONA_JWT_TOKEN", raising=False)
    with FakeDaytonaCloud().installed(monkeypatch) as cloud:
        yield cloud


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    """The sandbox's working directory: the fake's sandboxes share this machine's filesystem."""
    return str(tmp_path / "rlm")
