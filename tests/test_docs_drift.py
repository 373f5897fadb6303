"""Docs that cannot drift: every RLM() argument is in the README, docs/cli.md is exactly what the
commands' --help say, and docs/batch.md names exactly the settings an item may set. Each check is also shown to fail when something drifts."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import attrs
import pytest

from rlm_core import RLM
from rlm_core.cli import app, reference
from rlm_core.config import ITEM_SETTINGS, RLMConfig

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CLI_PAGE = ROOT / "docs" / "cli.md"
BATCH_PAGE = ROOT / "docs" / "batch.md"


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


def item_settings_paragraph(text: str) -> str:
    return text[text.index("Per-item settings") :].split("\n\n")[0]


def item_settings_missing_from(text: str) -> list[str]:
    """The per-item settings docs/batch.md does not name in its "Per-item settings" paragraph."""
    return sorted(name for name in ITEM_SETTINGS if f"`{name}`" not in item_settings_paragraph(text))


def test_the_batch_page_names_every_per_item_setting_and_no_other() -> None:
    named = set(re.findall(r"`([a-z_]+)`", item_settings_paragraph(BATCH_PAGE.read_text()))) - {"settings"}
    assert item_settings_missing_from(BATCH_PAGE.read_text()) == []
    assert named - ITEM_SETTINGS == set(), (
        f"docs/batch.md names settings items cannot set: {named - ITEM_SETTINGS}"
    )


def test_the_item_settings_check_fails_for_a_missing_one() -> None:
    text = BATCH_PAGE.read_text().replace("`max_depth`", "max depth")
    assert item_settings_missing_from(text) == ["max_depth"]


def test_every_limit_flag_sets_an_rlm_setting_and_shows_its_meaning() -> None:
    help_text = reference._subcommands(app.build_parser())["run"].format_help()
    for flag, setting, _kind, _metavar in app.LIMIT_FLAGS:
        assert setting in attrs.fields_dict(RLMConfig), (
            f"{flag} sets {setting}, which RLMConfig does not define"
        )
        meaning = attrs.fields_dict(RLMConfig)[setting].metadata["doc"]
        assert meaning.split()[0] in help_text and flag in help_text
