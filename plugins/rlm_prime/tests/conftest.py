"""Fixtures for rlm-prime's tests: a fake Prime cloud that runs the real runtime in local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prime_fakes import FakePrimeCloud


@pytest.fixture
def prime_cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePrimeCloud]:
    """The fake cloud, installed in place of the SDK's clients, with a key set on the host. Every
    test ends with every sandbox deleted, or fails: that is the plugin's promise on every path."""
    monkeypatch.setenv("PRIME_API_KEY", "pit_" + "k" * 24)
    cloud = FakePrimeCloud()
    cloud.install(monkeypatch)
    yield cloud
    leftovers = [sandbox.id for sandbox in cloud.live()]
    cloud.shutdown()
    assert not leftovers, f"sandboxes left running: {leftovers}"


@pytest.fixture
def workdir(tmp_path: Path) -> str:
    """The sandbox's working directory: the fake's sandboxes share this machine's filesystem."""
    return str(tmp_path / "rlm")
