"""Fixtures for rlm-prime's tests: a fake Prime cloud that runs the real runtime in local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prime_fakes import FakePrimeCloud

API_KEY = "pit_" + "k" * 24


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePrimeCloud]:
    """The fake cloud in place of the SDK's clients, with a key set on the host. Every test ends
    with every sandbox deleted, or fails: that is the plugin's promise on every path."""
    monkeypatch.setenv("PRIME_API_KEY", API_KEY)
    fake = FakePrimeCloud()
    with fake.installed(monkeypatch):
        yield fake


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    """Where the runtime and contexts go: the fake's sandboxes share this machine's filesystem."""
    return str(tmp_path / "rlm")
