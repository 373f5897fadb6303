"""``rlm cleanup`` asks every plugin through the ``rlm_cleanup_sandboxes`` hook and prints their answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core import hookimpl
from rlm_core.cli.cleanup import cleanup_main, collect_cleanup
from rlm_core.plugins import PluginRegistry, builtins, get_registry, reset_registry


class AcmeSandboxes:
    """A third-party sandbox plugin: it remembers how it was asked and reports two sandboxes."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, bool]] = []

    @hookimpl
    def rlm_cleanup_sandboxes(self, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
        self.calls.append((include_live, dry_run))
        return [
            {
                "kind": "acme",
                "id": f"acme-sandbox-{n}",
                "run_id": f"run{n}",
                "owner_pid": 4242 + n,
                "owner_host": "build-7",
                "removed": not dry_run,
            }
            for n in range(2)
        ]


class BrokenSandboxes:
    @hookimpl
    def rlm_cleanup_sandboxes(self, include_live: bool, dry_run: bool) -> list[dict[str, Any]]:
        raise RuntimeError("acme cloud said 503")


class NonsenseSandboxes:
    @hookimpl
    def rlm_cleanup_sandboxes(self, include_live: bool, dry_run: bool) -> Any:
        return "all clean"


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No engine configured, and no entry-point plugins: only the plugins a test registers answer."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(builtins, "_DEFAULT_DOCKER_SOCKET", str(tmp_path / "no-docker.sock"))
    monkeypatch.setenv("RLM_PLUGINS", "")


@pytest.fixture
def registry(no_docker: None) -> Iterator[PluginRegistry]:
    reset_registry()
    yield get_registry()
    reset_registry()


def test_a_third_party_plugin_is_asked_and_its_answer_printed(
    registry: PluginRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    acme = AcmeSandboxes()
    registry.register_plugin(acme, name="acme-plugin")

    assert cleanup_main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert acme.calls == [(False, True)]
    assert out.splitlines() == [
        "acme:",
        "  would remove acme-sandbox-0 (run run0, owner pid 4242 on build-7)",
        "  would remove acme-sandbox-1 (run run1, owner pid 4243 on build-7)",
    ]

    assert cleanup_main(["--all", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert acme.calls[-1] == (True, False)
    assert [(e["kind"], e["id"], e["plugin"], e["removed"]) for e in listed] == [
        ("acme", "acme-sandbox-0", "acme-plugin", True),
        ("acme", "acme-sandbox-1", "acme-plugin", True),
    ]


def test_a_failing_plugin_is_reported_and_the_others_still_answer(
    registry: PluginRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.register_plugin(BrokenSandboxes(), name="broken")
    registry.register_plugin(AcmeSandboxes(), name="acme-plugin")
    registry.register_plugin(NonsenseSandboxes(), name="nonsense")

    assert cleanup_main([]) == 1
    captured = capsys.readouterr()
    assert "rlm cleanup: broken: RuntimeError: acme cloud said 503" in captured.err
    assert "rlm cleanup: nonsense: rlm_cleanup_sandboxes returned a str, expected a list" in captured.err
    assert "  removed acme-sandbox-0 (run run0, owner pid 4242 on build-7)" in captured.out


def test_nothing_left_and_no_engine_configured(
    registry: PluginRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    assert collect_cleanup(include_live=True, dry_run=True) == []
    assert cleanup_main([]) == 0
    assert capsys.readouterr().out == "rlm cleanup: no leftover rlm-core sandboxes\n"


def test_an_unreachable_docker_engine_is_an_error_entry(
    registry: PluginRegistry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip(
        "docker", reason="docker-py is the 'docker' extra; without it there is no engine to ask"
    )
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/rlm-cleanup-test.sock")
    entries = collect_cleanup(include_live=False, dry_run=True)
    assert len(entries) == 1 and entries[0]["kind"] == "docker"
    assert "no Docker-API engine reachable" in entries[0]["error"]
    assert cleanup_main(["--json"]) == 1
    assert json.loads(capsys.readouterr().out) == []


def test_base_url_reaches_the_docker_plugin_and_is_restored(
    registry: PluginRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip(
        "docker", reason="docker-py is the 'docker' extra; without it there is no engine to ask"
    )
    assert cleanup_main(["--base-url", "unix:///nonexistent/rlm-base-url.sock"]) == 1
    assert "rlm-base-url.sock" in capsys.readouterr().err
    import os

    assert "DOCKER_HOST" not in os.environ


def test_the_hook_spec_documents_what_an_answer_holds() -> None:
    from rlm_core.plugins import hookspecs

    doc = hookspecs.rlm_cleanup_sandboxes.__doc__ or ""
    for needle in (":param include_live:", ":param dry_run:", '"kind"', '"removed"', '"error"'):
        assert needle in doc
    assert not PluginRegistry(load_entry_points=False).pm.hook.rlm_cleanup_sandboxes.spec.opts.get(
        "firstresult"
    )
