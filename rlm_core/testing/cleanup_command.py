"""A check for a sandbox plugin's ``rlm cleanup`` end to end: with only that plugin loaded, the
command lists a sandbox a dead owner left (``--dry-run --json``), then removes it and says so. Usage::

    from rlm_core.testing.cleanup_command import check_cleanup_command_removes

    def test_the_command_lists_then_removes(cloud, monkeypatch, capsys):
        gone = SandboxLifecycleContract.dead_owner()
        left = cloud.leave(gone)
        check_cleanup_command_removes("mysandbox", left, gone, monkeypatch, capsys)
        assert cloud.sandboxes[left].ended
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rlm_core.cli.cleanup import cleanup_main
from rlm_core.plugins import reset_registry

if TYPE_CHECKING:
    import pytest

    from rlm_core.environments.lifecycle.owners import Owner


def check_cleanup_command_removes(
    plugin: str,
    left: str,
    owner: Owner,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``rlm cleanup --dry-run --json`` lists exactly ``left`` (the sandbox ``owner`` left), as
    ``plugin``'s; then ``rlm cleanup`` prints that it removed it, naming its run and owner."""
    # Only this plugin answers: no docker engine named by the environment either.
    for name, value in (("RLM_PLUGINS", plugin), ("DOCKER_HOST", "")):
        monkeypatch.setenv(name, value)
    reset_registry()
    try:
        assert cleanup_main(["--dry-run", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        listed = [(row["plugin"], row["id"], row["run_id"], row["owner_pid"]) for row in rows]
        assert listed == [(plugin, left, owner.run_id, owner.pid)]
        assert cleanup_main([]) == 0
        printed = capsys.readouterr().out.splitlines()
    finally:
        reset_registry()
    assert printed[:2] == [
        f"{plugin}:",
        f"  removed {left} (run {owner.run_id}, owner pid {owner.pid} on {owner.host})",
    ]
