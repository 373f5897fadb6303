"""The ``rlm`` command line: ``rlm run``, ``rlm plugins``, ``rlm --version``.

Only argparse loads at import, so ``rlm --help`` stays fast; each command imports what it needs.
Commands are listed once in ``COMMANDS``; a later module adds one by adding a line there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

# The limit flags of `rlm run` and `rlm batch`: flag, the RLM setting it sets (its help text is the
# setting's own, from rlm_core.config), type, metavar.
LIMIT_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--max-iterations", "max_iterations", int, "N"),
    ("--max-depth", "max_depth", int, "N"),
    ("--max-root-tokens", "max_root_tokens", int, "N"),
    ("--max-sub-tokens", "max_sub_tokens", int, "N"),
    ("--max-llm-calls", "max_llm_calls", int, "N"),
    ("--max-cost", "max_cost", float, "USD"),
    ("--timeout", "max_timeout", float, "SECONDS"),
)

if TYPE_CHECKING:
    from rlm_core.loggers.base import RunLogger

EXIT_OK = 0
EXIT_NO_ANSWER = 1
EXIT_USAGE = 2

# (name, "module:function"): the function takes the subparsers action, adds its parser and sets
# ``handler`` (``handler(args) -> exit code``) with ``set_defaults``. Modules load lazily, when the
# parser is built, so keep them light at import.
COMMANDS: list[tuple[str, str]] = [
    ("run", "rlm_core.cli.app:add_run_parser"),
    ("plugins", "rlm_core.cli.app:add_plugins_parser"),
    ("cleanup", "rlm_core.cli.cleanup:add_cleanup_parser"),
    ("batch", "rlm_core.cli.batch:add_batch_parser"),
    ("view", "rlm_core.cli.view:add_view_parser"),
    ("serve", "rlm_core.cli.serve:add_serve_parser"),
]


class UsageError(Exception):
    """A command-line mistake: reported on stderr with exit code 2, no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the ``rlm`` script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse's own usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as exc:
        print(f"rlm {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rlm: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    from rlm_core import __version__

    parser = argparse.ArgumentParser(
        prog="rlm",
        description="Recursive Language Models: answer questions about contexts of any size.",
    )
    parser.add_argument("--version", action="version", version=f"rlm-core {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, target in COMMANDS:
        _resolve(target)(subparsers)
    return parser


def _resolve(target: str) -> Callable[[Any], Any]:
    import importlib

    module_name, _, attr = target.partition(":")
    function: Callable[[Any], Any] = getattr(importlib.import_module(module_name), attr)
    return function


# -- rlm run -----------------------------------------------------------------------------------


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="answer a question over a context file (or stdin)",
        description=(
            "Run one RLM completion: the context is loaded into a Python REPL and the root model explores "
            "it with code and sub-calls. Exit code 0 on a final answer, 1 when the run stopped without one "
            "(budget, iterations, timeout), 2 for usage or configuration errors."
        ),
    )
    parser.add_argument(
        "context_file",
        nargs="?",
        metavar="CONTEXT_FILE",
        help="file holding the context; '-' or omitted with piped input reads stdin",
    )
    parser.add_argument("-q", "--question", required=True, help="the question to answer about the context")
    model = parser.add_argument_group("models")
    model.add_argument("--backend", help="root client name (default: picked from API keys in the env)")
    model.add_argument("--model", help="root model name (backend_kwargs model_name)")
    model.add_argument("--sub-backend", help="client for sub-calls (default: the root backend)")
    model.add_argument("--sub-model", help="model for sub-calls (llm_query, child RLMs)")
    model.add_argument(
        "--backend-kwarg",
        action="extend",
        nargs="+",
        default=[],
        metavar="K=V",
        help="root client settings, e.g. base_url=http://127.0.0.1:8000/v1 timeout=60",
    )
    model.add_argument(
        "--strategy",
        metavar="NAME",
        help="help for the root model (a registered strategy, see 'rlm plugins'); 'none' for none; "
        "default: the one the root client offers, if any",
    )
    env = parser.add_argument_group("environment")
    env.add_argument("--environment", help="where code runs: local (default), subprocess, docker, ...")
    env.add_argument(
        "--env-kwarg",
        action="extend",
        nargs="+",
        default=[],
        metavar="K=V",
        help="environment settings, e.g. image=python:3.11-slim (give CONTEXT_FILE before these)",
    )
    from rlm_core.config import setting_doc

    limits = parser.add_argument_group("limits (omitted ones keep RLM's defaults)")
    for flag, setting, kind, metavar in LIMIT_FLAGS:
        limits.add_argument(flag, dest=setting, type=kind, metavar=metavar, help=setting_doc(setting))
    out = parser.add_argument_group("output")
    out.add_argument("--log-dir", metavar="DIR", help="write a JSONL trajectory log into DIR")
    out.add_argument("--json", action="store_true", help="print a JSON object instead of the plain answer")
    verbosity = out.add_mutually_exclusive_group()
    verbosity.add_argument(
        "--verbose",
        "-v",
        dest="verbose",
        action="store_true",
        help="show iterations, code and usage on stderr",
    )
    verbosity.add_argument("--quiet", dest="verbose", action="store_false", help="only the answer (default)")
    parser.set_defaults(handler=run_command, verbose=False)
    return parser


def parse_value(text: str) -> Any:
    """A ``k=v`` value: ints, floats, booleans, null and JSON where they look like it, else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.strip()[:1] in ("[", "{", '"'):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def parse_kwargs(items: Sequence[str], flag: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"{flag} expects KEY=VALUE items, got {item!r}; e.g. {flag} timeout=30 "
                "(a context file goes before these options)"
            )
        kwargs[key.strip()] = parse_value(value)
    return kwargs


def read_context(source: str | None) -> str:
    """The context text from a file, or from stdin for '-' or when stdin is piped and no file is given."""
    if source is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(
                "no context given: pass a CONTEXT_FILE, '-' to read stdin, or pipe it in "
                "(e.g. rlm run notes.txt -q 'What changed?')"
            )
        source = "-"
    if source == "-":
        return sys.stdin.read()
    from pathlib import Path

    try:
        return Path(source).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read context file {source!r}: {exc.strerror or exc}") from exc


def build_rlm_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RLM(...)`` arguments for ``rlm run``; limits not given are left out so RLM's defaults apply."""
    backend_kwargs = parse_kwargs(args.backend_kwarg, "--backend-kwarg")
    if args.model:
        backend_kwargs["model_name"] = args.model
    backend: str | None = args.backend
    if backend is None:
        backend, backend_kwargs = _defaults().resolve_backend(None, backend_kwargs)
        backend_kwargs = dict(backend_kwargs)
    kwargs: dict[str, Any] = {"backend": backend, "backend_kwargs": backend_kwargs}
    if args.environment:
        kwargs["environment"] = args.environment
    environment_kwargs = parse_kwargs(args.env_kwarg, "--env-kwarg")
    if environment_kwargs:
        kwargs["environment_kwargs"] = environment_kwargs
    if args.sub_backend or args.sub_model:
        sub_backend = args.sub_backend or backend
        # The same backend for sub-calls needs the same connection settings (base_url, api_key...).
        sub_kwargs = (
            {k: v for k, v in backend_kwargs.items() if k != "model_name"} if sub_backend == backend else {}
        )
        if args.sub_model:
            sub_kwargs["model_name"] = args.sub_model
        elif sub_backend == backend and "model_name" in backend_kwargs:
            sub_kwargs["model_name"] = backend_kwargs["model_name"]
        kwargs["other_backends"] = [sub_backend]
        kwargs["other_backend_kwargs"] = [sub_kwargs]
    for _flag, setting, _kind, _metavar in LIMIT_FLAGS:
        value = getattr(args, setting)
        if value is not None:
            kwargs[setting] = value
    if args.strategy:
        kwargs["strategy"] = None if args.strategy.lower() == "none" else args.strategy
    return kwargs


def _defaults() -> Any:
    # Looked up through sys.modules at call time, so tests can stand in for it.
    import importlib

    return importlib.import_module("rlm_core.defaults")


def describe_backend_choice(args: argparse.Namespace) -> str | None:
    """Why ``rlm run`` picked its backend when ``--backend`` was not given (None when it was)."""
    if args.backend is not None:
        return None
    describe = getattr(_defaults(), "describe_resolution", None)
    if describe is None:
        return None
    backend_kwargs = parse_kwargs(args.backend_kwarg, "--backend-kwarg")
    if args.model:
        backend_kwargs["model_name"] = args.model
    return str(describe(None, backend_kwargs))


def _build_loggers(args: argparse.Namespace) -> list[RunLogger]:
    """The loggers --log-dir and --verbose ask for; the RLM takes them all and closes them."""
    loggers: list[RunLogger] = []
    if args.log_dir:
        from rlm_core.loggers.jsonl import RLMLogger

        loggers.append(RLMLogger(args.log_dir))
    if args.verbose:
        from rich.console import Console

        from rlm_core.loggers.console import ConsoleLogger

        # stderr keeps stdout for the answer alone, so it can be piped (and --json stays parseable).
        loggers.append(ConsoleLogger(console=Console(stderr=True)))
    return loggers


def _close(loggers: list[RunLogger]) -> None:
    for logger in loggers:
        with contextlib.suppress(Exception):  # closing must not hide why the run could not start
            logger.close()


def run_command(args: argparse.Namespace) -> int:
    from rlm_core.errors import ConfigurationError, PluginError, RLMError

    context = read_context(args.context_file)
    loggers = _build_loggers(args)
    try:
        kwargs = build_rlm_kwargs(args)
        if args.verbose:
            choice = describe_backend_choice(args)
            if choice:
                print(f"rlm run: {choice}", file=sys.stderr)
        from rlm_core.rlm import RLM

        rlm = RLM(**kwargs, logger=loggers, verbose=False)
    except (ConfigurationError, PluginError, ValueError, TypeError) as exc:
        # TypeError: a client or environment factory rejected a --backend-kwarg/--env-kwarg name.
        _close(loggers)
        raise UsageError(str(exc)) from exc
    try:
        with rlm:  # closes the loggers too
            result = rlm.completion(context, root_prompt=args.question)
    except (ConfigurationError, PluginError) as exc:
        raise UsageError(str(exc)) from exc
    except RLMError as exc:
        print(f"rlm run: the run failed: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER

    finished = result.stop_reason.value == "final"
    last_paths = [getattr(logger, "last_path", None) for logger in loggers]
    log_path = result.log_path or next((str(path) for path in last_paths if path), None)
    if args.json:
        payload = {
            "response": result.response,
            "stop_reason": result.stop_reason.value,
            "answer_source": result.answer_source,
            "error": result.error,
            "iterations": result.iterations,
            "execution_time": result.execution_time,
            "usage": result.usage_summary.to_dict(),
            "log_path": log_path,
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(result.response)
        if not finished:
            reason = f"rlm run: stopped without a final answer ({result.stop_reason.value})"
            print(reason + (f": {result.error}" if result.error else ""), file=sys.stderr)
    return EXIT_OK if finished else EXIT_NO_ANSWER


# -- rlm plugins -------------------------------------------------------------------------------


def add_plugins_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plugins",
        help="list installed plugins and what they registered",
        description="List each rlm plugin: distribution, version, registered names, load errors.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(handler=plugins_command)
    return parser


def plugins_command(args: argparse.Namespace) -> int:
    from rlm_core.identity import foreign_core_problem
    from rlm_core.plugins.registry import get_registry

    problem = foreign_core_problem()
    if problem:  # on stderr, so --json output stays parseable
        print(f"warning: {problem}", file=sys.stderr)
    infos = [info.to_dict() for info in get_registry().plugin_infos()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return EXIT_OK
    from rich.console import Console

    console = Console()
    if console.is_terminal:
        console.print(plugins_table(infos))
    else:
        # Piped output: one plain block per plugin, nothing wrapped, easy to grep.
        print(plugins_text(infos), end="")
    return EXIT_OK


def plugins_text(infos: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for info in infos:
        origin = " ".join(part for part in (info["distribution"], info["version"]) if part) or "in-process"
        lines.append(f"{info['name']} ({origin})")
        lines.extend(f"  {kind}: {', '.join(names)}" for kind, names in info["registered"].items())
        if info["error"]:
            lines.append(f"  error: {info['error']}")
    return "".join(line + "\n" for line in lines)


def plugins_table(infos: list[dict[str, Any]]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="rlm plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "registered", "error"):
        table.add_column(column, overflow="fold")
    for info in infos:
        registered = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in info["registered"].items())
        table.add_row(
            info["name"],
            info["distribution"] or "-",
            info["version"] or "-",
            registered or "-",
            Text(info["error"], style="red") if info["error"] else "",
        )
    return table
