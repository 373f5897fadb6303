"""Docs that cannot drift: every RLM() argument is in the README, and docs/cli.md is exactly what
the commands' --help say. Each check is also shown to fail when something drifts."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from rlm_core import RLM
from rlm_core.cli import app, reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_PAGE = ROOT / "docs" / "cli.md"


def rlm_arguments() -> list[str]:
    return [name for name in inspect.signature(RLM.__init__).parameters if name != "self"]


def undocumented(names: list[str], text: str) -> list[str]:
    """The names the text never writes as code (`name`, `name=...`)."""
    return [n for n in names if not re.search(rf"`{re.escape(n)}\b", text) and f"{n}=" not in text]


def test_every_rlm_argument_is_in_the_readme() -> None:
    names = rlm_arguments()
    assert len(names) > 20  # the signature was read, not an empty list
    missing = undocumented(names, README.read_text())
    assert not missing, f"RLM() arguments not documented in README.md: {missing}"


def test_the_argument_check_fails_for_a_new_argument() -> None:
    assert undocumented([*rlm_arguments(), "max_wobble"], README.read_text()) == ["max_wobble"]


def test_the_cli_page_is_what_the_commands_say() -> None:
    assert CLI_PAGE.read_text() == reference.render(), (
        "docs/cli.md differs from the commands' --help; regenerate it: "
        "python -m rlm_core.cli.reference docs/cli.md"
    )


def test_the_cli_page_check_fails_for_a_new_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    original = app.add_run_parser

    def with_a_new_flag(subparsers: Any) -> Any:
        parser = original(subparsers)
        parser.add_argument("--wobble", help="a flag nobody documented")
        return parser

    monkeypatch.setattr(app, "add_run_parser", with_a_new_flag)  # build_parser looks it up by name
    rendered = reference.render()
    assert "--wobble" in rendered and rendered != CLI_PAGE.read_text()


def test_every_flag_of_every_command_is_on_the_page() -> None:
    page = CLI_PAGE.read_text()
    parser = app.build_parser()
    for name, sub in reference._subcommands(parser).items():
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in page, f"rlm {name} {flag} is not on docs/cli.md"
