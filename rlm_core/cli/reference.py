"""The CLI reference page (docs/cli.md), written from the parsers' own ``--help`` text.

``python -m rlm_core.cli.reference docs/cli.md`` rewrites the page; a test fails when the page and
the parsers differ, so a flag cannot be added, renamed or reworded without the page following.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WIDTH = 100  # the help text is wrapped at this width, whatever the terminal
HEADER = """\
# `rlm` command-line reference

Generated from the commands' own `--help` by `python -m rlm_core.cli.reference docs/cli.md`; a test
fails when this page and the commands differ. Each command's guide: `rlm run` in the
[README](../README.md), `rlm batch` in [batch.md](batch.md), `rlm view` in [viewer.md](viewer.md).
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subparsers here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    from rlm_core.cli.app import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        parser = build_parser()
        sections = [HEADER, "## `rlm`\n\n```text\n" + parser.format_help().rstrip() + "\n```\n"]
        for name, sub in _subcommands(parser).items():
            sections.append(f"## `rlm {name}`\n\n```text\n{sub.format_help().rstrip()}\n```\n")
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m rlm_core.cli.reference PATH (e.g. docs/cli.md)", file=sys.stderr)
        return 2
    Path(args[0]).write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
