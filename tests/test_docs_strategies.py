"""docs/strategies.md: its examples run, and it documents every action of the contract."""

from __future__ import annotations

import re
from pathlib import Path

from rlm_core.guidance import strategy

PAGE = Path(__file__).resolve().parent.parent / "docs" / "strategies.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def test_the_examples_run_in_order() -> None:
    blocks = PYTHON_BLOCK.findall(PAGE.read_text())
    runnable = [b for b in blocks if "RLM(..." not in b]  # the first block only lists the choices
    assert len(runnable) >= 2
    namespace: dict[str, object] = {"__name__": "strategies_md"}
    for number, block in enumerate(runnable):
        exec(compile(block, f"docs/strategies.md (example {number + 1})", "exec"), namespace)


def test_every_action_is_documented() -> None:
    text = PAGE.read_text()
    for action in strategy.ACTION_KINDS:
        assert f"`{action.__name__}(" in text, f"docs/strategies.md does not document {action.__name__}"
