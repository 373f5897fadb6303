"""Test set-up for rlm-bwrap: runs from a plain checkout (not pip-installed) and gates on bubblewrap.

Outside CI a machine without ``bwrap`` skips the sandbox tests with the reason; with ``CI=true`` a
missing ``bwrap`` fails them, so CI can never pass without running them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_core.plugins import reset_registry

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("rlm_bwrap") is None:
    sys.path.insert(0, str(PLUGIN_ROOT))  # a checkout where the example is not installed


@pytest.fixture
def require_bwrap() -> None:
    if shutil.which("bwrap") is not None:
        return
    message = "bubblewrap (bwrap) is not installed; run: apt-get install -y bubblewrap"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


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


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Workdirs of this test's sandboxes (and what cleanup scans) in a directory of the test's own."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # forget the cached choice, so TMPDIR is read again
    return tmp_path
