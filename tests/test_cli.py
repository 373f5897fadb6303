"""The ``rlm`` command line: run, plugins, version, usage errors and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rlm_core
from rlm_core.cli import app as cli
from rlm_core.loggers.jsonl import read_trajectory
from rlm_core.plugins.registry import PluginRegistry, get_registry

REPO = Path(__file__).resolve().parents[1]

FINISHING_SCRIPT = [
    "Let me look at the context.\n```repl\nprint(len(context))\n```",
    "```repl\nFINAL('the context has ' + str(len(context)) + ' characters')\n```",
]


def python(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, input=stdin, timeout=120
    )


# -- version, help, parser --------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"rlm-core {rlm_core.__version__}"


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from rlm_core.cli.app import main; code = main(['--help']); "
        "heavy = [m for m in ('openai', 'anthropic', 'rich', 'cattrs', 'rlm_core.rlm') if m in sys.modules]; "
        "print(code, heavy)"
    )
    proc = python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("0 []")
    assert "run" in proc.stdout and "plugins" in proc.stdout


def test_python_dash_m_runs_the_cli() -> None:
    proc = python("-m", "rlm_core", "run", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--max-root-tokens" in proc.stdout and "--sub-model" in proc.stdout


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: rlm" in capsys.readouterr().err


def test_commands_are_registered_in_one_list() -> None:
    names = [name for name, _ in cli.COMMANDS]
    assert names[:2] == ["run", "plugins"]
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None and set(names) <= set(choices)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("0.5", 0.5),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("null", None),
        ('["a", 1]', ["a", 1]),
        ('{"x": {"y": 2}}', {"x": {"y": 2}}),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("[not json", "[not json"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("", ""),
    ],
)
def test_parse_value(text: str, value: Any) -> None:
    assert cli.parse_value(text) == value


# -- building RLM arguments ------------------------------------------------------------------


@pytest.fixture
def fake_defaults(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    """Stands in for rlm_core.defaults (written separately) and records what it was asked."""
    calls: list[tuple[Any, dict[str, Any]]] = []

    def resolve_backend(backend: str | None, backend_kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        calls.append((backend, dict(backend_kwargs)))
        return "resolved", {"model_name": "resolved-model", **backend_kwargs}

    module = types.ModuleType("rlm_core.defaults")
    module.resolve_backend = resolve_backend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlm_core.defaults", module)
    return calls


def run_args(*argv: str) -> Any:
    return cli.build_parser().parse_args(["run", "ctx.txt", "-q", "why?", *argv])


def test_without_backend_the_default_resolution_is_used(fake_defaults: list[Any]) -> None:
    kwargs = cli.build_rlm_kwargs(run_args("--backend-kwarg", "timeout=30"))
    assert fake_defaults == [(None, {"timeout": 30})]
    assert kwargs == {
        "backend": "resolved",
        "backend_kwargs": {"model_name": "resolved-model", "timeout": 30},
    }


def test_limits_are_passed_only_when_given(fake_defaults: list[Any]) -> None:
    kwargs = cli.build_rlm_kwargs(
        run_args(
            "--backend",
            "openai",
            "--model",
            "gpt-x",
            "--max-iterations",
            "7",
            "--max-root-tokens",
            "5000",
            "--timeout",
            "12.5",
            "--environment",
            "subprocess",
            "--env-kwarg",
            "memory_mb=512",
            "network=false",
        )
    )
    assert fake_defaults == []
    assert kwargs == {
        "backend": "openai",
        "backend_kwargs": {"model_name": "gpt-x"},
        "environment": "subprocess",
        "environment_kwargs": {"memory_mb": 512, "network": False},
        "max_iterations": 7,
        "max_root_tokens": 5000,
        "max_timeout": 12.5,
    }


def test_sub_model_reuses_the_root_backend_and_its_connection_settings() -> None:
    kwargs = cli.build_rlm_kwargs(
        run_args(
            "--backend",
            "vllm",
            "--model",
            "big",
            "--backend-kwarg",
            "base_url=http://127.0.0.1:9/v1",
            "--sub-model",
            "small",
        )
    )
    assert kwargs["other_backends"] == ["vllm"]
    assert kwargs["other_backend_kwargs"] == [{"base_url": "http://127.0.0.1:9/v1", "model_name": "small"}]
    other = cli.build_rlm_kwargs(
        run_args("--backend", "openai", "--sub-backend", "anthropic", "--sub-model", "c")
    )
    assert other["other_backends"] == ["anthropic"]
    assert other["other_backend_kwargs"] == [{"model_name": "c"}]
    assert "other_backends" not in cli.build_rlm_kwargs(run_args("--backend", "openai"))


def test_strategy_flag_names_one_or_none() -> None:
    assert "strategy" not in cli.build_rlm_kwargs(run_args("--backend", "openai"))  # the client's offer
    assert cli.build_rlm_kwargs(run_args("--backend", "openai", "--strategy", "none"))["strategy"] is None
    named = cli.build_rlm_kwargs(run_args("--backend", "openai", "--strategy", "small-model"))
    assert named["strategy"] == "small-model"


# -- usage errors ------------------------------------------------------------------------------


def assert_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    context = tmp_path / "ctx.txt"
    context.write_text("hello")
    assert_usage_error(capsys, ["run", str(context)], "the following arguments are required: -q/--question")
    assert_usage_error(
        capsys,
        ["run", str(context), "-q", "x", "--backend", "openai", "--backend-kwarg", "nokey"],
        "KEY=VALUE",
    )
    assert_usage_error(capsys, ["run", str(tmp_path / "missing.txt"), "-q", "x"], "cannot read context file")
    assert_usage_error(capsys, ["run", str(context), "-q", "x", "--max-iterations", "many"], "invalid int")
    assert_usage_error(capsys, ["run", str(context), "-q", "x", "--verbose", "--quiet"], "not allowed with")


def test_configuration_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    context = tmp_path / "ctx.txt"
    context.write_text("hello")
    assert_usage_error(
        capsys, ["run", str(context), "-q", "x", "--backend", "no-such-backend"], "no-such-backend"
    )
    assert_usage_error(
        capsys,
        ["run", str(context), "-q", "x", "--backend", "openai", "--model", "m", "--max-root-tokens", "10"],
        "max_root_tokens",
    )


def test_no_context_on_a_terminal_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(""))
    assert_usage_error(capsys, ["run", "-q", "x", "--backend", "openai"], "no context given")


# -- rlm plugins -------------------------------------------------------------------------------


class BrokenPlugin:
    @rlm_core.hookimpl
    def rlm_register_clients(self, register: Any) -> None:
        raise RuntimeError("the SDK is missing")


class GoodPlugin:
    @rlm_core.hookimpl
    def rlm_register_environments(self, register: Any) -> None:
        register("my-sandbox", lambda **kw: None)


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> PluginRegistry:
    registry = PluginRegistry(load_entry_points=False)
    monkeypatch.setattr("rlm_core.plugins.registry.get_registry", lambda: registry)
    return registry


def test_plugins_json_lists_the_builtins(
    capsys: pytest.CaptureFixture[str], own_registry: PluginRegistry
) -> None:
    own_registry.register_plugin(GoodPlugin(), name="good-plugin")
    assert cli.main(["plugins", "--json"]) == 0
    infos = {info["name"]: info for info in json.loads(capsys.readouterr().out)}
    builtins = infos["rlm_core.plugins.builtins"]
    assert builtins["distribution"] == "rlm-core"
    assert builtins["error"] is None
    assert {"openai", "anthropic"} <= set(builtins["registered"]["clients"])
    assert "local" in builtins["registered"]["environments"]
    assert {"jsonl", "console"} <= set(builtins["registered"]["loggers"])
    assert infos["good-plugin"]["registered"] == {"environments": ["my-sandbox"]}


def test_a_broken_plugin_shows_its_error(
    capsys: pytest.CaptureFixture[str], own_registry: PluginRegistry
) -> None:
    own_registry.register_plugin(BrokenPlugin(), name="broken-plugin")
    with pytest.warns(RuntimeWarning, match="broken-plugin"):
        assert cli.main(["plugins", "--json"]) == 0
    infos = {info["name"]: info for info in json.loads(capsys.readouterr().out)}
    assert "the SDK is missing" in infos["broken-plugin"]["error"]
    assert infos["rlm_core.plugins.builtins"]["error"] is None

    assert cli.main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "rlm_core.plugins.builtins (rlm-core" in text
    assert "  clients: openai, anthropic" in text
    assert (
        "broken-plugin (in-process)\n  error: rlm_register_clients raised RuntimeError('the SDK is missing')"
        in text
    )

    # On a terminal the same facts show as a table.
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    console.print(cli.plugins_table([info.to_dict() for info in own_registry.plugin_infos()]))
    table = console.file.getvalue()  # type: ignore[attr-defined]
    assert "broken-plugin" in table and "the SDK is missing" in table
    assert "rlm_core.plugins.builtins" in table and "openai" in table


def test_plugins_json_through_python_dash_m() -> None:
    proc = python("-m", "rlm_core", "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    names = [info["name"] for info in json.loads(proc.stdout)]
    assert "rlm_core.plugins.builtins" in names


# -- rlm run end to end ------------------------------------------------------------------------


class ScriptedPlugin:
    """Registers scripted backends: ``scripted`` finishes in two turns, ``scripted-loop`` never does."""

    @rlm_core.hookimpl
    def rlm_register_clients(self, register: Any) -> None:
        from rlm_core.testing import ScriptedClient

        def finishing(**kwargs: Any) -> Any:
            return ScriptedClient(replies=FINISHING_SCRIPT, model_name=kwargs.get("model_name", "scripted"))

        def looping(**kwargs: Any) -> Any:
            replies = [f"```repl\nprint({n} * 2)\n```" for n in range(50)]
            return ScriptedClient(replies=replies, model_name=kwargs.get("model_name", "scripted"))

        register("scripted", finishing)
        register("scripted-loop", looping)


@pytest.fixture
def scripted_backend() -> Iterator[None]:
    pytest.importorskip("rlm_core.rlm", reason="the engine (rlm_core.rlm) is not written yet")
    pytest.importorskip(
        "rlm_core.testing.scripted", reason="ScriptedClient (rlm_core.testing) is not written yet"
    )
    registry = get_registry()
    registry.register_plugin(ScriptedPlugin(), name="test-scripted")
    try:
        yield
    finally:
        registry.unregister_plugin("test-scripted")


@pytest.fixture
def context_file(tmp_path: Path) -> Path:
    path = tmp_path / "context.txt"
    path.write_text("The needle is in Lisbon.\n" * 4)
    return path


def test_run_prints_the_answer(
    scripted_backend: None, context_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["run", str(context_file), "-q", "How long is it?", "--backend", "scripted"]) == 0
    out, err = capsys.readouterr()
    assert out == "the context has 100 characters\n"
    assert err == ""


def test_run_json_with_log_and_verbose_on_stderr(
    scripted_backend: None, context_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "logs"
    argv = [
        "run",
        str(context_file),
        "-q",
        "How long?",
        "--backend",
        "scripted",
        "--model",
        "script-1",
        "--json",
        "--log-dir",
        str(log_dir),
        "--verbose",
        "--max-iterations",
        "5",
    ]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)  # stdout holds only the JSON, the verbose view went to stderr
    assert payload["response"] == "the context has 100 characters"
    assert payload["stop_reason"] == "final"
    assert payload["error"] is None
    assert payload["iterations"] == 2
    assert payload["execution_time"] > 0
    assert payload["usage"]["root"]["total_calls"] == 2
    assert "script-1" in payload["usage"]["tiers"]["root"]
    log_path = Path(payload["log_path"])
    assert log_path.parent == log_dir
    trajectory = read_trajectory(log_path)
    assert trajectory.complete
    assert trajectory.metadata is not None and trajectory.metadata.root_prompt == "How long?"
    assert [r.iteration for r in trajectory.iterations] == [1, 2]
    assert trajectory.iterations[0].code_blocks[0].stdout == "100\n"
    assert "Iteration 1" in err and "Final answer" in err and "the context has 100 characters" in err


def test_run_reads_stdin(
    scripted_backend: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("abc"))
    assert cli.main(["run", "-", "-q", "How long?", "--backend", "scripted"]) == 0
    assert capsys.readouterr().out == "the context has 3 characters\n"
    # Piped input without a file argument is read too.
    monkeypatch.setattr(sys, "stdin", io.StringIO("abcdef"))
    assert cli.main(["run", "-q", "How long?", "--backend", "scripted"]) == 0
    assert capsys.readouterr().out == "the context has 6 characters\n"


def test_run_without_a_final_answer_exits_1(
    scripted_backend: None, context_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "run",
        str(context_file),
        "-q",
        "x",
        "--backend",
        "scripted-loop",
        "--max-iterations",
        "2",
        "--json",
    ]
    assert cli.main(argv) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["stop_reason"] == "max_iterations"
    assert payload["iterations"] == 2

    assert cli.main(argv[:-1]) == 1
    assert "stopped without a final answer (max_iterations)" in capsys.readouterr().err


def test_run_with_a_sub_model(
    scripted_backend: None, context_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(context_file), "-q", "x", "--backend", "scripted", "--sub-model", "tiny", "--json"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["stop_reason"] == "final"


def test_run_without_backend_uses_the_default_resolution(
    scripted_backend: None,
    context_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("rlm_core.defaults")
    module.resolve_backend = lambda backend, kwargs: ("scripted", {"model_name": "auto", **kwargs})  # type: ignore[attr-defined]
    module.describe_resolution = lambda backend, kwargs: "backend: scripted (auto); chosen for the test"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlm_core.defaults", module)
    assert cli.main(["run", str(context_file), "-q", "x", "--json", "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert "auto" in json.loads(out)["usage"]["tiers"]["root"]
    assert "rlm run: backend: scripted (auto); chosen for the test" in err
