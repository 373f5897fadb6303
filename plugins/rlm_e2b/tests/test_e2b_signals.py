"""The owner process ended by SIGTERM or SIGINT still kills its E2B sandbox: the lifecycle's signal
guard runs the SDK's blocking kill before the signal ends the process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from e2b_fakes import API_KEY

from rlm_core.testing.signalled_owner import check_signalled_owner_ends_its_sandbox


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_owner_kills_its_sandbox(signum: int, tmp_path: Path) -> None:
    # The owner runs on a fake cloud installed in its own process (e2b_fakes.signalled_owner).
    check_signalled_owner_ends_its_sandbox(
        signum,
        "e2b_fakes:signalled_owner",
        str(tmp_path / "rlm"),
        env={"E2B_API_KEY": API_KEY},
        path=[str(Path(__file__).parent)],
    )
