"""Test set-up for rlm-costroute: runs from a plain checkout, where the example is not pip-installed."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_core.plugins import reset_registry

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("rlm_costroute") is None:
    sys.path.insert(0, str(PLUGIN_ROOT))


@pytest.fixture
def discoverable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugin's entry points visible to the core's discovery, as ``pip install -e`` would leave them."""
    project = tomllib.loads((PLUGIN_ROOT / "pyproject.toml").read_text())["project"]
    try:
        importlib.metadata.distribution(project["name"])
    except importlib.metadata.PackageNotFoundError:
        info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
        )
        entry_points = "".join(f"{k} = {v}\n" for k, v in project["entry-points"]["rlm"].items())
        (info / "entry_points.txt").write_text("[rlm]\n" + entry_points)
        monkeypatch.syspath_prepend(str(tmp_path))
    reset_registry()
    yield
    reset_registry()
