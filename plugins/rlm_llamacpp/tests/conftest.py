"""Shared settings and clean-up for the rlm-llamacpp tests (real llama.cpp servers, real models)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rlm_llamacpp.server import shutdown_servers


@pytest.fixture(autouse=True, scope="session")
def _stop_servers() -> Iterator[None]:
    yield
    shutdown_servers()
