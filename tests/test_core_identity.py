"""rlm_core.identity tells our rlm_core from the unrelated rlm-core 0.1.0 of the same import name."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

import rlm_core
from rlm_core.identity import foreign_core_problem

FIX = 'pip uninstall rlm-core && pip install "rlm-core>=0.2"'


def _install_fake_distribution(root: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real dist-info for `rlm-core` on a sys.path entry ahead of the venv, with its own rlm_core."""
    package = root / "rlm_core"
    package.mkdir(parents=True)
    init = package / "__init__.py"
    init.write_text('"""An unrelated single-module engine."""\n')
    dist_info = root / f"rlm_core-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: rlm-core\nVersion: {version}\n")
    (dist_info / "RECORD").write_text(
        f"rlm_core/__init__.py,,\n{dist_info.name}/METADATA,,\n{dist_info.name}/RECORD,,\n"
    )
    monkeypatch.syspath_prepend(str(root))
    return init


def _module_at(path: Path, *, ours: bool) -> types.ModuleType:
    module = types.ModuleType("rlm_core")
    module.__file__ = str(path)
    if ours:
        module.hookimpl = rlm_core.hookimpl  # type: ignore[attr-defined]
        module.hookspec = rlm_core.hookspec  # type: ignore[attr-defined]
        module.__version__ = "0.2.0"  # type: ignore[attr-defined]
    return module


def test_this_checkout_is_ours() -> None:
    assert foreign_core_problem() is None


def test_the_foreign_0_1_0_is_reported_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake_distribution(tmp_path, "0.1.0", monkeypatch)
    problem = foreign_core_problem()
    assert problem is not None
    assert "rlm-core 0.1.0 is older than 0.2" in problem
    assert "shadows it" in problem  # the imported module is not the file that 0.1.0 installed
    assert problem.endswith(FIX)


def test_a_module_without_our_markers_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init = _install_fake_distribution(tmp_path, "0.1.0", monkeypatch)
    monkeypatch.setitem(sys.modules, "rlm_core", _module_at(init, ours=False))
    problem = foreign_core_problem()
    assert problem is not None
    assert "lacks hookimpl, hookspec, __version__" in problem
    assert "older than 0.2" in problem and "shadows" not in problem
    assert FIX in problem


@pytest.mark.parametrize("version", ["0.2.0", "0.10.1", "1.0.0rc1"])
def test_a_release_of_ours_at_its_own_files_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    init = _install_fake_distribution(tmp_path, version, monkeypatch)
    monkeypatch.setitem(sys.modules, "rlm_core", _module_at(init, ours=True))
    assert foreign_core_problem() is None


def test_a_second_copy_shadowing_the_installed_one_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_distribution(tmp_path / "site", "0.2.0", monkeypatch)
    elsewhere = tmp_path / "checkout" / "rlm_core" / "__init__.py"
    monkeypatch.setitem(sys.modules, "rlm_core", _module_at(elsewhere, ours=True))
    problem = foreign_core_problem()
    assert problem is not None and "shadows it" in problem and "older" not in problem
