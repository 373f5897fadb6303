"""Modules that moved into subpackages stay importable from their old paths, as the same module."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from rlm_core._moved import MOVED


@pytest.mark.parametrize("old_name", sorted(MOVED))
def test_old_path_gives_the_moved_module_with_a_deprecation_warning(old_name: str) -> None:
    sys.modules.pop(old_name, None)
    with pytest.warns(DeprecationWarning, match=MOVED[old_name]):
        old = importlib.import_module(old_name)
    assert old is importlib.import_module(MOVED[old_name])


def test_from_package_import_of_a_moved_module_works() -> None:
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from rlm_core import prompts, repl_runtime\n"
        "import rlm_core.guidance.prompts as new\n"
        "assert prompts is new and repl_runtime.__name__ == 'rlm_core.environments.runtime'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugins_package_still_exports_the_registry_api() -> None:
    from rlm_core.plugins import PluginRegistry, get_registry
    from rlm_core.plugins.registry import PluginRegistry as Moved

    assert PluginRegistry is Moved and callable(get_registry)


def test_import_rlm_core_loads_neither_the_registry_nor_the_engine() -> None:
    code = (
        "import sys, rlm_core\n"
        "heavy = [m for m in ('rlm_core.plugins.registry', 'rlm_core.engine.run', 'openai', 'rich') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""
