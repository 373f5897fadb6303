"""The README's example is the example file, and the example runs and prints the span tree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).parent.parent
EXAMPLE = PLUGIN / "examples" / "print_span_tree.py"


def test_the_readme_quotes_the_example_line_for_line_in_order() -> None:
    readme = (PLUGIN / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    lines = iter(EXAMPLE.read_text().splitlines())
    for quoted in block.splitlines():
        assert any(line == quoted for line in lines), f"not in the example (in this order): {quoted!r}"


def test_the_example_prints_the_tree_the_readme_shows() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    readme = (PLUGIN / "README.md").read_text()
    (shown,) = re.findall(r"```text\n\$ python examples/print_span_tree.py\n(.*?)```", readme, flags=re.S)
    assert done.stdout == shown
