"""docs/hooks.md documents every hook spec: a new spec without an entry, an entry whose parameters drift
from its spec, or an example that stopped working fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest

from rlm_core.plugins import hookspecs, reset_registry

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"
HEADING = re.compile(r"^## `(?P<name>rlm_\w+)\((?P<params>[^)]*)\)`$", re.MULTILINE)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def spec_callers() -> dict[str, pluggy.HookCaller]:
    """The hooks the core specifies, read from rlm_core.hookspecs through pluggy (never a list of ours)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    callers = {
        name: caller for name, caller in vars(manager.hook).items() if isinstance(caller, pluggy.HookCaller)
    }
    return {name: caller for name, caller in callers.items() if caller.spec is not None}


def documented_sections() -> dict[str, tuple[list[str], str]]:
    """Each ``## `hook(params)``` section of docs/hooks.md: its parameters and its text."""
    text = REFERENCE.read_text()
    headings = list(HEADING.finditer(text))
    sections = {}
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        body = text[heading.end() : following.start() if following else len(text)]
        params = [p.strip() for p in heading["params"].split(",") if p.strip()]
        sections[heading["name"]] = (params, body)
    return sections


SPECS = spec_callers()
SECTIONS = documented_sections()


def test_the_specs_are_read_from_the_module() -> None:
    # Guards the reading itself: an empty or partial read would make every other test pass vacuously.
    assert {"rlm_register_clients", "rlm_on_event"} <= set(SPECS)
    assert set(SPECS) == {name for name in dir(hookspecs) if name.startswith("rlm_")}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_spec_has_a_reference_entry(name: str) -> None:
    assert name in SECTIONS, (
        f"hook spec {name} has no entry in docs/hooks.md; add a section headed '## `{name}(...)`' that says "
        "when it is called, its parameters and return value, with a runnable example"
    )


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_entry_matches_its_spec(name: str) -> None:
    assert name in SECTIONS, f"hook spec {name} has no entry in docs/hooks.md"
    params, body = SECTIONS[name]
    caller = SPECS[name]
    assert caller.spec is not None
    assert params == list(caller.spec.argnames), (
        f"docs/hooks.md documents {name}({', '.join(params)}), the spec is {name}({', '.join(caller.spec.argnames)})"
    )
    if caller.spec.opts.get("firstresult"):
        assert "firstresult" in body, f"{name} is a firstresult hook; its entry must say so"
    assert PYTHON_BLOCK.search(body), f"the entry for {name} has no runnable ```python example"


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Each example registers its plugin in the process-wide registry: start and end with a new one."""
    reset_registry()
    yield
    reset_registry()


@pytest.mark.usefixtures("fresh_registry")
@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_the_examples_run(name: str) -> None:
    _, body = SECTIONS[name]
    for number, block in enumerate(PYTHON_BLOCK.findall(body)):
        code = compile(block, f"docs/hooks.md ({name}, example {number + 1})", "exec")
        exec(code, {"__name__": f"hooks_md_{name}_{number}"})
