"""The sample plugin of docs/writing-plugins.md, discovered through a real entry point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_core import RLM
from rlm_core.plugins.registry import get_registry, reset_registry
from rlm_core.testing import ScriptedClient

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "rlm_roundrobin"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What `pip install -e` leaves behind: the source on sys.path and a dist-info with the entry point."""
    info = tmp_path / "rlm_roundrobin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rlm-roundrobin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[rlm]\nroundrobin = rlm_roundrobin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(SAMPLE))
    reset_registry()
    yield
    reset_registry()


def test_sample_plugin_routes_round_robin_and_observes(installed: None) -> None:
    import rlm_roundrobin

    info = next(i for i in get_registry().plugin_infos() if i.name == "roundrobin")
    assert info.distribution == "rlm-roundrobin" and info.registered == {"routing_policies": ["round_robin"]}
    root = ScriptedClient(["```repl\nFINAL(','.join(llm_query_batched(['a'] * 6)))\n```"])
    first = ScriptedClient(["one"], model_name="first")
    second = ScriptedClient(["two"], model_name="second")
    result = RLM(backend=root, other_backends=[first, second], routing="round_robin").completion("ctx")
    assert sorted(result.response.split(",")) == ["one"] * 3 + ["two"] * 3
    assert rlm_roundrobin.EVENT_COUNTS["run_end"] >= 1
