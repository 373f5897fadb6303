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


SANDBOX_TUTORIAL = ROOT / "docs" / "writing-a-sandbox-plugin.md"
EXAMPLE_SOURCES = sorted((ROOT / "examples").rglob("*.py"))
TUTORIAL_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def excerpt_drift(block: str, sources: list[Path]) -> tuple[str, list[str]] | None:
    """For a tutorial block cut from an example file (most of its lines are in one file): that file
    and the block's lines that are not in it in the same order (an excerpt may leave lines out, never
    change one). None for a block that is not an excerpt (a usage example of its own)."""
    lines = [line for line in block.splitlines() if line.strip()]
    best: tuple[int, Path] | None = None
    for source in sources:
        text = source.read_text().splitlines()
        found = sum(1 for line in lines if line in text)
        if best is None or found > best[0]:
            best = (found, source)
    if best is None or best[0] * 2 < len(lines):
        return None
    source_lines, position, missing = best[1].read_text().splitlines(), 0, []
    for line in lines:
        try:
            position = source_lines.index(line, position) + 1
        except ValueError:
            missing.append(line)
    return str(best[1].relative_to(ROOT)), missing


def test_the_sandbox_tutorial_quotes_its_example_plugin_exactly() -> None:
    blocks = TUTORIAL_BLOCK.findall(SANDBOX_TUTORIAL.read_text())
    excerpts = [drift for drift in (excerpt_drift(b, EXAMPLE_SOURCES) for b in blocks) if drift is not None]
    assert len(excerpts) >= 6  # the tutorial is read, and most of it is cut from the example
    for source, missing in excerpts:
        assert not missing, (
            f"docs/writing-a-sandbox-plugin.md quotes {source} with lines it does not have: {missing}"
        )


def test_the_excerpt_check_fails_for_a_changed_line() -> None:
    block = next(
        b
        for b in TUTORIAL_BLOCK.findall(SANDBOX_TUTORIAL.read_text())
        if "    def " in b and excerpt_drift(b, EXAMPLE_SOURCES) is not None
    )
    changed = block.replace("    def ", "    def renamed_", 1)
    drift = excerpt_drift(changed, EXAMPLE_SOURCES)
    assert drift is not None and drift[1] and drift[1][0].lstrip().startswith("def renamed_")
