"""Misspelt names and settings fail when the RLM is built, with a suggestion; nothing is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_core import RLM
from rlm_core.errors import ConfigurationError, UnknownNameError
from rlm_core.loggers.jsonl import RLMLogger
from rlm_core.testing import LoopbackLLMServer, ScriptedClient


def root() -> ScriptedClient:
    return ScriptedClient(["```repl\nFINAL('ok')\n```"])


@pytest.mark.parametrize(
    ("environment", "kwargs", "suggestion"),
    [
        ("local", {"timeuot": 5}, "'timeout'"),
        ("subprocess", {"memory_limt": "1g"}, "'memory_limit'"),
        ("docker", {"imgae": "python:3.11-slim"}, "'image'"),
    ],
)
def test_a_misspelt_environment_setting_fails_at_construction(
    environment: str, kwargs: dict[str, object], suggestion: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RLM(backend=root(), environment=environment, environment_kwargs=kwargs)
    assert f"did you mean {suggestion}?" in str(caught.value).lower()


@pytest.mark.parametrize(
    ("name", "suggestion"), [("lcoal", "local"), ("subproces", "subprocess"), ("dokcer", "docker")]
)
def test_a_misspelt_environment_name_gets_a_suggestion(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownNameError) as caught:
        RLM(backend=root(), environment=name)
    assert f"Did you mean {suggestion!r}?" in str(caught.value)


def test_a_misspelt_backend_name_gets_a_suggestion() -> None:
    with pytest.raises(UnknownNameError) as caught:
        RLM(backend="opneai", backend_kwargs={"model_name": "m"})
    assert "Did you mean 'openai'?" in str(caught.value)


def test_a_misspelt_client_setting_is_not_sent_to_the_provider() -> None:
    with LoopbackLLMServer() as server:
        with pytest.raises(ConfigurationError) as caught:
            RLM(
                backend="openai",
                backend_kwargs={"model_name": "m", "base_url": server.base_url, "temprature": 0.2},
            )
        assert server.requests == []
    assert "Did you mean 'temperature'?" in str(caught.value)


def test_a_provider_parameter_the_client_does_not_know_still_passes_through() -> None:
    with LoopbackLLMServer(["```repl\nFINAL('ok')\n```"]) as server:
        rlm = RLM(
            backend="openai",
            backend_kwargs={"model_name": "m", "base_url": server.base_url, "api_key": "k", "top_p": 0.5},
        )
        assert rlm.completion("ctx").response == "ok"
        assert server.requests[0]["top_p"] == 0.5


def test_a_misspelt_sub_backend_setting_fails_too() -> None:
    with pytest.raises(ConfigurationError, match="Did you mean 'max_tokens'"):
        RLM(
            backend=root(),
            other_backends=["anthropic"],
            other_backend_kwargs=[{"model_name": "m", "api_key": "k", "max_token": 5}],
        )


def test_a_string_logger_takes_its_setting_after_a_colon(tmp_path: Path) -> None:
    rlm = RLM(backend=root(), logger=f"jsonl:{tmp_path / 'logs'}")
    result = rlm.completion("ctx")
    assert isinstance(rlm.loggers[0], RLMLogger)
    assert result.log_path and Path(result.log_path).parent == tmp_path / "logs"


def test_a_string_logger_without_its_required_setting_says_how_to_give_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RLM(backend=root(), logger="jsonl")
    assert "log_dir" in str(caught.value) and "logger='jsonl:./logs'" in str(caught.value)


def test_a_misspelt_logger_name_gets_a_suggestion() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'jsonl'"):
        RLM(backend=root(), logger="jsnol:./logs")


def test_an_environment_plugin_that_only_forwards_kwargs_is_checked_by_building_it() -> None:
    from rlm_core import hookimpl
    from rlm_core.environments.local import LocalEnvironment
    from rlm_core.plugins.registry import get_registry

    built: list[dict[str, object]] = []

    def make(**kwargs: object) -> LocalEnvironment:  # a bare forwarder: its settings cannot be read
        built.append(kwargs)
        return LocalEnvironment(**kwargs)  # type: ignore[arg-type]

    class Plugin:
        @hookimpl
        def rlm_register_environments(self, register: object) -> None:
            register("forwarding", make)  # type: ignore[operator]

    registry = get_registry()
    registry.register_plugin(Plugin(), name="test-forwarding-env")
    try:
        with pytest.raises(ConfigurationError, match="unknown environment_kwargs"):
            RLM(backend=root(), environment="forwarding", environment_kwargs={"timeuot": 5})
        rlm = RLM(backend=root(), environment="forwarding", environment_kwargs={"timeout": 5})
        assert rlm.completion("ctx").response == "ok"
        assert len(built) == 3  # two checks at RLM(), one for the run
    finally:
        registry.unregister_plugin("test-forwarding-env")


def test_construction_starts_no_sandbox() -> None:
    # docker with an unreachable engine: RLM() must not touch it, only the first run would.
    rlm = RLM(
        backend=root(), environment="docker", environment_kwargs={"base_url": "unix:///nonexistent.sock"}
    )
    assert rlm.environment_kwargs["base_url"].endswith("nonexistent.sock")
