"""Docs that cannot drift: every ```python block of README.md, docs/*.md and the plugin READMEs runs
here, or says why it cannot.

A block that cannot run carries a marker on the line right before its fence,
``<!-- example: not run (the reason) -->``: a cloud account it needs, or "fragment" for an
illustration with ``...`` placeholders. Every other block runs, so a new block cannot slip in
untested. The blocks of a page run in order in one namespace (a later block may use an earlier
block's names), each in a fresh working directory. Blocks that name ``backend="openai"`` or
``"anthropic"`` reach a loopback server through the SDKs' own variables (``OPENAI_BASE_URL``,
``ANTHROPIC_BASE_URL`` and the API keys), whose scripted replies finish each run; a run that ends
without the model's final answer fails its block, since every example promises one.

What the prose assumes the reader has (a report file, a list of ``items``, the imports an excerpt
leaves out) comes from ``SETUPS``. Pages whose markers cannot be written into them yet are listed
in ``PENDING`` instead.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.metadata
import inspect
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import rlm_core
from rlm_core import RLM, EventKind, RLMChatCompletion
from rlm_core.plugins import get_registry, reset_registry
from rlm_core.testing import LoopbackLLMServer, ScriptedClient, repl

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "plugins").glob("*/README.md")),
    *sorted((ROOT / "examples" / "plugins").glob("*/README.md")),
]
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*example:(.*?)-->")
NOT_RUN = re.compile(r"\s*not run \((.*)\)\s*")
# Python blocks in a form FENCE does not read: indented, ~~~, or another language tag.
OTHER_PYTHON_FENCE = re.compile(r"^(?!```python$)\s*(```|~~~)\s*(python|py|python3|pycon|ipython)\b.*$")
API_KEY = "loopback-key"  # the server refuses any other key: a block that runs used the variables


@dataclass(frozen=True)
class Pending:
    """A marker that belongs in a page that cannot be edited at the moment; ``holds`` is a piece of
    the block's text, so a marker never silently moves to another block when the page changes."""

    page: str
    index: int
    reason: str
    holds: str


PENDING = (
    Pending("plugins/rlm_modal/README.md", 0, "needs a Modal account", 'environment="modal"'),
    Pending("plugins/rlm_prime/README.md", 0, "needs a Prime Intellect account", 'environment="prime"'),
)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    index: int  # among the page's python blocks, from 0
    line: int  # of the block's first line of code in the page
    code: str
    not_run: str | None = None  # why it cannot run, from its marker

    @property
    def id(self) -> str:
        return f"{self.page}-{self.index}"


def parse(text: str, page: str) -> tuple[list[Block], list[str]]:
    """The python blocks of a page with their markers, and what is wrong with the markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marked_lines: set[int] = set()
    for number, match in enumerate(FENCE.finditer(text)):
        fence_line = text.count("\n", 0, match.start())  # 0-based index of the ```python line
        before = lines[fence_line - 1] if fence_line > 0 else ""
        reason = None
        marker = MARKER.fullmatch(before.strip())
        if marker is not None:
            marked_lines.add(fence_line - 1)
            not_run = NOT_RUN.fullmatch(marker.group(1))
            if not_run is None or not not_run.group(1).strip():
                problems.append(
                    f"{page}:{fence_line}: a marker must read <!-- example: not run (why) -->, got {before!r}"
                )
            else:
                reason = not_run.group(1).strip()
        blocks.append(Block(page, number, fence_line + 2, match.group(1), reason))
    for number, line in enumerate(lines):
        if MARKER.search(line) and number not in marked_lines:
            problems.append(f"{page}:{number + 1}: a marker that is not right before a ```python fence")
        if OTHER_PYTHON_FENCE.match(line):
            problems.append(f"{page}:{number + 1}: write a python block as ```python at the start of a line")
    return blocks, problems


def collect() -> tuple[list[Block], list[str]]:
    blocks: list[Block] = []
    problems: list[str] = []
    pending = {(p.page, p.index): p for p in PENDING}
    for path in PAGES:
        page = path.relative_to(ROOT).as_posix()
        found, wrong = parse(path.read_text(), page)
        problems += wrong
        for block in found:
            entry = pending.get((page, block.index))
            if entry is not None and block.not_run is None and entry.holds in block.code:
                block = Block(block.page, block.index, block.line, block.code, entry.reason)
            blocks.append(block)
    return blocks, problems


BLOCKS, MARKER_PROBLEMS = collect()
BLOCKS_OF = {page: [b for b in BLOCKS if b.page == page] for page in dict.fromkeys(b.page for b in BLOCKS)}


def run_block(block: Block, namespace: dict[str, Any]) -> None:
    """Run a block in ``namespace``; tracebacks name the page and its line. A block with a top-level
    ``await`` (as in a notebook or ``python -m asyncio``) runs on an event loop of its own."""
    source = "\n" * (block.line - 1) + block.code
    page = ROOT / block.page
    filename = str(page) if page.exists() else block.page
    code = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


class RunWatch:
    """Every root run that ends while a block runs, so a run that ended without an answer fails it."""

    def __init__(self) -> None:
        self.results: list[RLMChatCompletion] = []
        self._lock = threading.Lock()

    @rlm_core.hookimpl
    def rlm_on_event(self, event: Any) -> None:
        if event.kind == EventKind.RUN_END and event.depth == 0:
            with self._lock:
                self.results.append(event.data["result"])

    def take(self) -> list[RLMChatCompletion]:
        with self._lock:
            results, self.results = self.results, []
        return results


def unanswered(results: list[RLMChatCompletion]) -> list[str]:
    return [f"stop_reason={r.stop_reason.value!r}, error={r.error!r}" for r in results if not r.ok]


# -- what each block needs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    replies: list[str] = field(default_factory=lambda: [repl("FINAL('an answer from the loopback model')")])
    files: dict[str, str] = field(default_factory=dict)  # written into the working directory
    before: str = ""  # what the prose gives the reader: names in the namespace
    excerpt_of: str | None = None  # the block leaves out this file's imports: they run first
    needs: str | None = None  # an executable on PATH


REPORT = "Inspection of the Tarragona site, 12 May.\n" + "All valves tested.\n" * 200
REPORT += "Signed off: Marta Vidal, site engineer.\n"
ITEMS = [
    {"id": "q1", "context": "The report was signed by Marta Vidal.", "question": "Who signed the report?"},
    {"id": "q2", "context": "Revenue in 2024 was 4.2 million.", "question": "What was the revenue?"},
]
ANSWER_FROM_CONTEXT = repl("FINAL(context.splitlines()[-1].removeprefix('Signed off: '))")

SETUPS: dict[tuple[str, int], Setup] = {
    ("README.md", 0): Setup(
        replies=[
            repl("powers = '\\n'.join(str(2**i) for i in range(100))\nprint(powers)\nFINAL_VAR('powers')")
        ]
    ),
    ("README.md", 1): Setup(replies=[ANSWER_FROM_CONTEXT], files={"big_report.txt": REPORT}),
    ("docs/batch.md", 0): Setup(
        files={"items.jsonl": "".join(json.dumps(item) + "\n" for item in ITEMS)}, before=f"items = {ITEMS!r}"
    ),
    ("docs/viewer.md", 0): Setup(before="context = 'Report A: 3 faults.\\nReport B: 1 fault.'"),
    # An excerpt of the runnable example, which its own test runs (it sets the global tracer provider).
    ("plugins/rlm_otel/README.md", 0): Setup(excerpt_of="plugins/rlm_otel/examples/print_span_tree.py"),
    ("docs/writing-a-routing-policy.md", 1): Setup(
        excerpt_of="examples/plugins/rlm_costroute/rlm_costroute/__init__.py"
    ),
    ("docs/writing-a-routing-policy.md", 2): Setup(
        excerpt_of="examples/plugins/rlm_costroute/tests/test_costroute_contract.py"
    ),
    ("docs/writing-a-sandbox-plugin.md", 1): Setup(
        excerpt_of="examples/plugins/rlm_bwrap/rlm_bwrap/transport.py"
    ),
    ("docs/writing-a-sandbox-plugin.md", 4): Setup(
        excerpt_of="examples/plugins/rlm_bwrap/rlm_bwrap/__init__.py"
    ),
    ("docs/writing-a-sandbox-plugin.md", 5): Setup(
        replies=[ANSWER_FROM_CONTEXT], files={"report.txt": REPORT}, needs="bwrap"
    ),
    ("docs/writing-a-sandbox-plugin.md", 6): Setup(
        excerpt_of="examples/plugins/rlm_bwrap/tests/test_bwrap_contract.py"
    ),
    ("docs/writing-a-sandbox-plugin.md", 7): Setup(
        excerpt_of="examples/plugins/rlm_bwrap/tests/test_bwrap_contract.py"
    ),
    ("docs/writing-a-sandbox-plugin.md", 8): Setup(excerpt_of="examples/plugins/rlm_bwrap/tests/conftest.py"),
    ("docs/writing-a-sandbox-plugin.md", 9): Setup(
        excerpt_of="examples/plugins/rlm_bwrap/rlm_bwrap/cleanup.py"
    ),
    ("examples/plugins/rlm_bwrap/README.md", 0): Setup(
        replies=[ANSWER_FROM_CONTEXT], files={"report.txt": REPORT}, needs="bwrap"
    ),
}

# Example plugins a page installs (pip install ./examples/plugins/...): here, put on sys.path and
# registered as their entry point would register them.
EXAMPLE_PLUGINS = {
    "docs/writing-a-routing-policy.md": ("rlm_costroute", "costroute"),
    "docs/writing-a-sandbox-plugin.md": ("rlm_bwrap", "bwrap"),
    "examples/plugins/rlm_bwrap/README.md": ("rlm_bwrap", "bwrap"),
    "examples/plugins/rlm_costroute/README.md": ("rlm_costroute", "costroute"),
}

# Variables that would send a block anywhere but the loopback server.
CLOUD_VARIABLES = (
    "ANTHROPIC_AUTH_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_BEDROCK_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "GEMINI_API_KEY",
    "LITELLM_API_KEY",
    "MODAL_TOKEN_ID",
    "MODAL_TOKEN_SECRET",
    "OPENROUTER_API_KEY",
    "PORTKEY_API_KEY",
    "PRIME_API_KEY",
    "VLLM_API_KEY",
)


def imports_of(path: str) -> str:
    """The top-level imports of a file of the repository, as source."""
    tree = ast.parse((ROOT / path).read_text())
    imports = [
        node
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
    ]
    return "\n".join(ast.unparse(node) for node in imports)


def install_example_plugin(page: str) -> None:
    if page not in EXAMPLE_PLUGINS:
        return
    module, entry_point = EXAMPLE_PLUGINS[page]
    try:
        importlib.metadata.distribution(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        get_registry().register_plugin(importlib.import_module(module), name=entry_point)


# -- running the pages ----------------------------------------------------------------------------------


@dataclass
class PageRun:
    """One page's namespace and how many of its blocks have been through it, in order."""

    page: str
    watch: RunWatch
    namespace: dict[str, Any] = field(default_factory=dict)
    done: int = 0


RUNS: dict[str, PageRun] = {}


def start_page(page: str) -> PageRun:
    """A fresh namespace and plugin registry for a page (its blocks register plugins of their own)."""
    reset_registry()
    watch = RunWatch()
    get_registry().register_plugin(watch, name="docs-examples-run-watch")
    install_example_plugin(page)
    name = re.sub(r"\W", "_", page.removesuffix(".md"))
    RUNS[page] = PageRun(page, watch, {"__name__": f"docs_examples_{name}"})
    return RUNS[page]


def run_in_page(block: Block, run: PageRun, server: LoopbackLLMServer) -> None:
    setup = SETUPS.get((block.page, block.index), Setup())
    for name, text in setup.files.items():
        Path(name).write_text(text)
    server.set_replies(setup.replies)
    if setup.excerpt_of:
        exec(imports_of(setup.excerpt_of), run.namespace)
    if setup.before:
        exec(setup.before, run.namespace)
    run.watch.take()
    run_block(block, run.namespace)
    problems = unanswered(run.watch.take())
    assert not problems, f"{block.id}: a run ended without the answer the example promises: {problems}"


def close_rlms(namespace: dict[str, Any]) -> None:
    for value in list(namespace.values()):
        if isinstance(value, RLM):
            value.close()


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackLLMServer]:
    with LoopbackLLMServer(api_key=API_KEY) as loopback:
        yield loopback
    for run in RUNS.values():
        close_rlms(run.namespace)
    RUNS.clear()
    reset_registry()


@pytest.fixture
def loopback_env(
    server: LoopbackLLMServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> LoopbackLLMServer:
    """The official SDKs' own variables point at the loopback server; nothing reaches a cloud."""
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    for plugin_dir in (ROOT / "examples" / "plugins").iterdir():
        monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.chdir(tmp_path)
    return server


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_the_example_runs(block: Block, loopback_env: LoopbackLLMServer) -> None:
    run = RUNS.get(block.page)
    if run is None or run.done != block.index:  # run alone, or after a failure: replay what it follows
        if run is not None:
            close_rlms(run.namespace)
        run = start_page(block.page)
        for earlier in BLOCKS_OF[block.page][: block.index]:
            if earlier.not_run is None and not missing_tool(earlier):
                try:
                    run_in_page(earlier, run, loopback_env)
                except Exception as exc:
                    pytest.fail(f"{earlier.id}, which {block.id} follows, fails: {exc!r}")
            run.done += 1
    if block.not_run is not None:
        run.done += 1
        pytest.skip(f"not run: {block.not_run}")
    tool = missing_tool(block)
    if tool:
        run.done += 1
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {tool} is not installed")
        pytest.skip(f"{tool} is not installed")
    run_in_page(block, run, loopback_env)
    run.done += 1


def missing_tool(block: Block) -> str | None:
    needs = SETUPS.get((block.page, block.index), Setup()).needs
    return needs if needs and shutil.which(needs) is None else None


# -- the checks themselves ------------------------------------------------------------------------------


def test_every_marker_gives_a_reason_and_stands_before_a_block() -> None:
    assert not MARKER_PROBLEMS, "\n".join(MARKER_PROBLEMS)


def test_every_pending_marker_still_names_its_block() -> None:
    for entry in PENDING:
        blocks = BLOCKS_OF.get(entry.page, [])
        assert entry.index < len(blocks), f"{entry.page} has no block {entry.index} any more"
        block = blocks[entry.index]
        assert entry.holds in block.code, f"{block.id} no longer holds {entry.holds!r}: update PENDING"
        assert block.not_run == entry.reason, f"{block.id} carries its own marker now: drop it from PENDING"


def test_an_unmarked_block_that_fails_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    page = "Intro.\n\n<!-- example: not run (needs a cloud account) -->\n```python\nconnect()\n```\n\n"
    page += "Then:\n\n```python\ntotal = 1\ntotal / 0\n```\n"
    blocks, problems = parse(page, "demo.md")
    assert not problems
    assert [b.not_run for b in blocks] == ["needs a cloud account", None]  # only a marker spares a block
    run = start_page("demo.md")
    try:
        with pytest.raises(ZeroDivisionError) as failure:
            run_in_page(blocks[1], run, LoopbackLLMServer())
    finally:
        del RUNS["demo.md"]
        reset_registry()
    assert (
        failure.traceback[-1].path == "demo.md" and failure.traceback[-1].lineno + 1 == 12
    )  # the page's line


def test_a_run_without_an_answer_fails_its_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = "from rlm_core import RLM\nRLM(backend=root, max_iterations=1).completion('some context')\n"
    block = Block("demo.md", 0, 1, code)
    run = start_page("demo.md")
    try:
        run.namespace["root"] = ScriptedClient([repl("print('still looking')")])
        with pytest.raises(AssertionError, match="without the answer the example promises"):
            run_in_page(block, run, LoopbackLLMServer())
    finally:
        del RUNS["demo.md"]
        reset_registry()


def test_markers_without_a_reason_or_a_block_and_unread_fences_are_reported() -> None:
    page = "<!-- example: not run () -->\n```python\nx = 1\n```\n\n<!-- example: not run (fragment) -->\n\ntext\n"
    page += "\n```py\nx = 2\n```\n"
    _, problems = parse(page, "demo.md")
    assert len(problems) == 3
    assert "must read" in problems[0] and "not right before" in problems[1] and "```python" in problems[2]
