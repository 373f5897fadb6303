"""Plugin discovery through real entry points: lazy, per plugin, safe, and configurable by env vars."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core.errors import PluginError, UnknownNameError
from rlm_core.plugins import hookspecs
from rlm_core.plugins.registry import PluginRegistry


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path holding real (tiny) installed distributions with `rlm` entry points."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("rlmtest_")]:
        del sys.modules[name]


def install(site: Path, dist: str, module: str, source: str, entry: str | None = None) -> None:
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[rlm]\n{entry or module} = {module}\n")


GOOD = """
    import rlm_core

    @rlm_core.hookimpl
    def rlm_register_environments(register):
        register("{name}", lambda **kw: ("env", kw))
"""


def test_entry_point_plugin_registers_and_is_listed(site: Path) -> None:
    install(site, "rlm-good", "rlmtest_good", GOOD.format(name="goodenv"))
    registry = PluginRegistry()
    assert registry.create("environments", "goodenv", a=1) == ("env", {"a": 1})
    info = next(i for i in registry.plugin_infos() if i.name == "rlmtest_good")
    assert (info.distribution, info.version, info.error) == ("rlm-good", "1.2.3", None)
    assert info.registered == {"environments": ["goodenv"]}
    builtin = next(i for i in registry.plugin_infos() if i.name == "rlm_core.plugins.builtins")
    assert {"openai", "anthropic", "openrouter"} <= set(builtin.registered["clients"])


def test_discovery_is_lazy(site: Path) -> None:
    install(site, "rlm-good", "rlmtest_good", GOOD.format(name="goodenv"))
    registry = PluginRegistry()
    assert "rlmtest_good" not in sys.modules
    registry.names("environments")
    assert "rlmtest_good" in sys.modules


def test_broken_plugins_are_recorded_and_skipped(site: Path) -> None:
    install(site, "rlm-good", "rlmtest_good", GOOD.format(name="goodenv"))
    install(site, "rlm-broken-import", "rlmtest_badimport", "raise ImportError('missing sdk')\n")
    install(
        site,
        "rlm-broken-hook",
        "rlmtest_badhook",
        """
        import rlm_core

        @rlm_core.hookimpl
        def rlm_register_clients(register):
            raise RuntimeError("hook bug")
        """,
    )
    registry = PluginRegistry()
    with pytest.warns(RuntimeWarning, match="skipped"):
        assert "goodenv" in registry.names("environments")
    errors = {i.name: i.error for i in registry.plugin_infos()}
    assert "missing sdk" in (errors["rlmtest_badimport"] or "")
    assert "hook bug" in (errors["rlmtest_badhook"] or "")
    with pytest.raises(UnknownNameError, match=r"Plugins that failed to load: .*missing sdk"):
        registry.get("clients", "nope")


def test_strict_mode_makes_plugin_errors_fatal(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(site, "rlm-broken-import", "rlmtest_badimport", "raise ImportError('missing sdk')\n")
    monkeypatch.setenv("RLM_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="missing sdk"):
        PluginRegistry().names("clients")


def test_only_and_disable_lists(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(site, "rlm-a", "rlmtest_a", GOOD.format(name="env_a"))
    install(site, "rlm-b", "rlmtest_b", GOOD.format(name="env_b"))
    monkeypatch.setenv("RLM_PLUGINS", "rlmtest_a")
    assert {"env_a", "local"} <= set(PluginRegistry().names("environments"))
    assert "env_b" not in PluginRegistry().names("environments")
    monkeypatch.delenv("RLM_PLUGINS")
    monkeypatch.setenv("RLM_DISABLE_PLUGINS", "rlmtest_a")
    names = PluginRegistry().names("environments")
    assert "env_b" in names and "env_a" not in names


def test_duplicate_names_name_both_plugins_unless_replaced(site: Path) -> None:
    install(site, "rlm-dup", "rlmtest_dup", GOOD.format(name="local"))
    with pytest.warns(
        RuntimeWarning, match="both plugin 'rlm_core.plugins.builtins' and plugin 'rlmtest_dup'"
    ):
        registry = PluginRegistry()
        registry.names("environments")
    assert registry.get("environments", "local").plugin == "rlm_core.plugins.builtins"


def test_replace_true_overrides_a_builtin(site: Path) -> None:
    install(
        site,
        "rlm-override",
        "rlmtest_override",
        """
        import rlm_core

        @rlm_core.hookimpl
        def rlm_register_environments(register):
            register("local", lambda **kw: "mine", replace=True)
        """,
    )
    assert PluginRegistry().create("environments", "local") == "mine"


def test_every_hookspec_is_documented() -> None:
    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("rlm_")]
    assert len(specs) == 8
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        params = list(inspect.signature(spec).parameters)
        assert doc, f"{spec.__name__} has no docstring"
        for param in params:
            assert f":param {param}:" in doc, f"{spec.__name__} does not document {param}"


def test_import_rlm_core_stays_light() -> None:
    code = (
        "import sys, rlm_core\n"
        "heavy = ('openai', 'anthropic', 'rich', 'cattrs', 'httpx', 'rlm_core.rlm')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_trace_env_var_prints_hook_calls(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install(site, "rlm-good", "rlmtest_good", GOOD.format(name="goodenv"))
    monkeypatch.setenv("RLM_TRACE_PLUGINS", "1")
    registry = PluginRegistry()
    registry.names("environments")
    assert "rlm_register_environments -> rlmtest_good" in capsys.readouterr().err


def test_a_lazy_factory_imports_its_module_on_first_call_only(tmp_path: Path, monkeypatch: Any) -> None:
    from rlm_core.plugins.signatures import SIGNATURE_ATTRIBUTE, lazy_factory

    (tmp_path / "lazy_target_mod.py").write_text(
        "class Widget:\n    def __init__(self, size: int = 1) -> None:\n        self.size = size\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    factory = lazy_factory("lazy_target_mod:Widget")
    assert "lazy_target_mod" not in sys.modules
    assert getattr(factory, SIGNATURE_ATTRIBUTE) == "lazy_target_mod:Widget"
    assert factory(size=3).size == 3
    assert "lazy_target_mod" in sys.modules
    monkeypatch.delitem(sys.modules, "lazy_target_mod")
