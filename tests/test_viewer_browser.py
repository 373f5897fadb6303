"""The viewer in real headless Chromium (Debian's chromium, driven by Playwright): what a person sees and does.

Logs come from real RLM runs with scripted models. Screenshots of the main views are kept under pytest's
base temp directory (``--basetemp``), in ``viewer-screenshots``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_core import RLM
from rlm_core.cli.app import main
from rlm_core.loggers.jsonl import RLMLogger
from rlm_core.testing import ScriptedClient
from rlm_core.viewer import ViewerServer
from rlm_core.viewer.headless import CHROMIUM, launch
from rlm_core.viewer.samples import (
    repl,
    write_budget_stop_run,
    write_large_run,
    write_rich_run,
    write_sample_logs,
)
from rlm_core.viewer.server import running


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[viewer-test]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set RLM_VIEWER_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the browser tests: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(10_000)
    yield page
    context.close()
    assert errors == [], f"the page raised: {errors}"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.getbasetemp() / "viewer-screenshots"
    directory.mkdir(exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_logs(tmp_path_factory.mktemp("browser-logs"))


@pytest.fixture
def server_for() -> Iterator[Callable[[Path], ViewerServer]]:
    with contextlib.ExitStack() as stack:
        yield lambda target: stack.enter_context(running(target))


def open_run(page: Any, question: str) -> None:
    page.locator("#run-rows tr", has_text=question).locator(".run-link").click()
    page.wait_for_selector("#timeline > li")
    page.wait_for_selector("#run[data-loaded='true']")  # every line read: counts below are final


def fact(page: Any, label: str) -> str:
    """The text of one fact in the run's header (the ``dd`` under the ``dt`` called ``label``)."""
    term = page.locator("dt", has_text=re.compile(f"^{re.escape(label)}$"))
    return str(page.locator(".run-summary .facts > div", has=term).locator("dd").inner_text())


# Fields each log schema added, newest last: an older log is a real one without them.
ADDED_IN_SCHEMA = {
    2: {"span_id", "parent_span_id", "calls", "batch_id", "batch_index", "started_at", "cost"},
    3: {"author", "actions", "answer_source", "final_source", "strategy", "system_prompt_author"},
}


def as_older_log(text: str, version: int) -> str:
    """A log of the current schema rewritten as schema ``version`` wrote it."""
    newer = set().union(*(fields for v, fields in ADDED_IN_SCHEMA.items() if v > version))

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in newer}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    lines = [strip(json.loads(line)) for line in text.splitlines()]
    for line in lines:
        if line["type"] in ("metadata", "child_run_start"):
            line["schema_version"] = version
    return "".join(json.dumps(line) + "\n" for line in lines)


def search(page: Any, query: str, matches: int) -> None:
    page.fill("#search", query)
    status = f"{matches} of 5 iterations match “{query.lower()}”"
    page.wait_for_function("s => document.querySelector('#search-status').textContent === s", arg=status)


def iteration(page: Any, number: int) -> Any:
    return page.locator("#timeline > li > details.iteration").nth(number - 1)


def test_run_list_shows_runs_sorts_and_filters(
    page: Any, log_dir: Path, server_for: Any, screenshots: Path
) -> None:
    page.goto(server_for(log_dir).url)
    rows = page.locator("#run-rows tr")
    rows.nth(2).wait_for()
    assert rows.count() == 3
    rich = page.locator("#run-rows tr", has_text="How many?")
    text = rich.inner_text()
    for expected in (
        "root-model",
        "child-model, leaf-model",
        "the answer is 42",
        "final",
        "$1.00",
        "1,000,000",
    ):
        assert expected in text, expected
    assert "max_iterations" in page.locator("#run-rows tr", has_text="Never ends?").inner_text()
    page.screenshot(path=str(screenshots / "run-list.png"), full_page=True)
    page.click("#sort-question")
    assert "How many?" in rows.first.inner_text()
    page.click("#sort-question")
    assert "Who counted?" in rows.first.inner_text()
    assert page.get_attribute("#sort-question >> xpath=..", "aria-sort") == "descending"
    page.fill("#run-filter", "max_iter")
    page.wait_for_function("document.querySelectorAll('#run-rows tr').length === 1")
    assert "Never ends?" in rows.first.inner_text() and page.inner_text("#run-count") == "1 of 3 runs"


def test_one_run_timeline_batch_child_rlm_waterfall_and_usage(
    page: Any, log_dir: Path, server_for: Any, screenshots: Path
) -> None:
    page.goto(server_for(log_dir).url)
    open_run(page, "How many?")
    summary = page.inner_text(".run-summary")
    assert "the answer is 42" in summary and "5 of 8" in summary
    assert page.locator("#timeline > li").count() == 5
    usage = page.inner_text("#usage")
    assert "root tokens" in usage and "/ 1,000,000" in usage and "$1.00" in usage
    assert page.locator("#waterfall .bar-root").count() == 5
    assert (
        page.locator("#waterfall .bar-sub").count() == 8
    )  # 1 + 4 batched + the child's own 2 + its leaf call
    assert page.locator("#waterfall .bar-code").count() == 5
    # A code cell in the waterfall opens its iteration.
    page.locator("#waterfall .bar-code").nth(3).click()
    assert iteration(page, 4).get_attribute("open") is not None
    assert page.evaluate("document.activeElement.closest('li').innerText").startswith("Iteration 4")
    iteration(page, 4).locator("summary").first.click()
    # The batched call: four slots grouped under one batch.
    iteration(page, 2).locator("summary").first.click()
    batch = iteration(page, 2).locator("details.batch")
    assert "4 slots" in batch.locator("summary").inner_text()
    batch.locator("summary").click()
    slots = batch.locator("details.subcall > summary")
    slots.nth(3).wait_for()  # the batch's slots are built when it opens: wait for them
    assert slots.count() == 4 and "llm_query [3]" in slots.nth(3).inner_text()
    slots.nth(0).click()
    batch.locator("details.subcall").nth(0).get_by_text("SUMMARY OF CHUNK 0").first.wait_for()
    # The child RLM expands in place, with its own iterations and its own sub-call.
    iteration(page, 3).locator("summary").first.click()
    child_call = iteration(page, 3).locator("details.subcall.has-child")
    assert "child RLM · 2 iterations" in child_call.locator("summary").first.inner_text()
    child_call.locator("summary").first.click()
    child_run = child_call.locator(".child-run")
    assert "Answer: 4 letters" in child_run.inner_text()
    child_run.locator("details.iteration > summary").first.click()
    child_first = child_run.locator("details.iteration").first
    child_first.locator(".cell").first.wait_for()  # its body is built when it opens
    assert "x = llm_query(context)" in child_first.inner_text()
    child_first.locator("details.subcall > summary").click()
    assert "leaf-model" in child_first.inner_text() and "depth 2" in child_first.inner_text()
    # The failing cell is marked.
    assert "error" in iteration(page, 4).locator("summary").first.inner_text()
    iteration(page, 4).locator("summary").first.click()
    iteration(page, 4).get_by_text("ValueError: a deliberate bad cell").first.wait_for()
    page.screenshot(path=str(screenshots / "run.png"), full_page=True)
    readme_shot = os.environ.get("RLM_VIEWER_README_SCREENSHOT")  # how docs/images/viewer.png is made
    if readme_shot:
        iteration(page, 1).locator("summary").first.click()
        iteration(page, 4).locator("summary").first.click()
        page.set_viewport_size({"width": 1100, "height": 1400})
        page.locator("#usage").scroll_into_view_if_needed()
        page.screenshot(
            path=readme_shot, clip={"x": 0, "y": 0, "width": 1100, "height": 1400}, full_page=True
        )


def test_a_budget_stop_is_highlighted(page: Any, log_dir: Path, server_for: Any) -> None:
    page.goto(server_for(log_dir).url)
    open_run(page, "Never ends?")
    assert "ran out of iterations" in page.inner_text("#stop-banner")
    assert "read out of the model's last turn" in page.inner_text("#stop-banner")
    page.locator("#answer-source").wait_for()
    assert fact(page, "Stop reason") == "max_iterations · read out of the last turn"
    iteration(page, 2).locator("summary").click()
    # The engine's own plain note (it ran the repeated block, as it runs every block).
    assert "ran a block it had run before" in iteration(page, 2).locator(".notes").inner_text()


def test_search_finds_replies_code_outputs_and_child_runs(page: Any, log_dir: Path, server_for: Any) -> None:
    page.goto(server_for(log_dir).url)
    open_run(page, "How many?")
    search(page, "deliberate", 1)
    visible = page.locator("#timeline > li:not([hidden])")
    assert visible.count() == 1 and "Iteration 4" in visible.inner_text()
    assert page.locator("#timeline mark").first.inner_text().lower() == "deliberate"
    # Output text, and text that only a child run wrote (its code), find their iterations too.
    search(page, "SUMMARY of chunk 2", 1)
    assert "Iteration 2" in visible.inner_text()
    search(page, "x = llm_query(context)", 1)
    assert "Iteration 3" in visible.inner_text()
    page.fill("#search", "")
    page.wait_for_function("document.querySelectorAll('#timeline > li:not([hidden])').length === 5")


def test_a_live_run_grows_on_the_page(page: Any, tmp_path: Path, server_for: Any, screenshots: Path) -> None:
    release = [threading.Event() for _ in range(4)]
    replies = iter(
        [repl("print('step 1')"), repl("print('step 2')"), repl("print('step 3')"), "FINAL(grown)"]
    )

    def slow_reply(request: Any) -> str:
        release[sum(1 for m in request.messages if m.role == "assistant")].wait(30)
        return next(replies)

    logger = RLMLogger(log_dir=tmp_path)
    rlm = RLM(backend=ScriptedClient(slow_reply, model_name="live-model"), logger=logger)
    outcome: list[Any] = []
    runner = threading.Thread(target=lambda: outcome.append(rlm.completion("ctx", root_prompt="Live?")))
    runner.start()
    try:
        server = server_for(tmp_path)
        release[0].set()
        page.goto(server.url)
        open_run(page, "Live?")
        assert page.is_visible("#live")
        for step in (1, 2, 3):
            page.wait_for_function(f"document.querySelectorAll('#timeline > li').length >= {step}")
            assert f"print('step {step}')" in page.locator("#timeline > li").nth(step - 1).inner_text()
            release[step].set()
        page.wait_for_selector("#live", state="hidden")
        assert "grown" in page.inner_text(".run-summary") and page.locator("#timeline > li").count() == 4
        page.screenshot(path=str(screenshots / "live.png"), full_page=True)
    finally:
        for event in release:
            event.set()
        runner.join(30)
        logger.close()
    assert outcome and outcome[0].response == "grown"


def test_a_truncated_damaged_and_foreign_log_is_shown_as_such(
    page: Any, tmp_path: Path, server_for: Any
) -> None:
    real = write_rich_run(tmp_path / "src").read_text().splitlines()
    logs = tmp_path / "logs"
    logs.mkdir()
    damaged = [
        real[0],
        real[1],
        '{"type": "iteration", "run_id": ',
        '["not", "an", "object"]',
        real[2],
        json.dumps({"type": "span_v9", "x": 1}),
    ]
    (logs / "damaged.jsonl").write_text("\n".join(damaged) + "\n" + real[3][: len(real[3]) // 2])
    page.goto(server_for(logs / "damaged.jsonl").url)
    page.locator(".run-link").click()
    page.wait_for_selector("#problems:not([hidden])")
    problems = page.inner_text("#problems")
    assert "Line 3 (damaged)" in problems and "Line 4 (foreign)" in problems and "span_v9" in problems
    assert page.locator("#timeline > li").count() == 2  # the two good iterations still show
    assert "The last line is incomplete" in page.inner_text("#partial-line")
    page.goto(page.url.split("#")[0])
    assert "unfinished" in page.inner_text("#run-rows")


def test_a_last_line_without_its_newline_still_counts(page: Any, tmp_path: Path, server_for: Any) -> None:
    log = write_rich_run(tmp_path)
    log.write_text(log.read_text().rstrip("\n"))  # the writer stopped right before the final newline
    page.goto(server_for(log).url + "#/run/" + log.name)
    page.wait_for_selector("#run[data-loaded='true']")
    assert "the answer is 42" in page.inner_text(".run-summary")
    assert page.is_hidden("#live") and page.is_hidden("#partial-line") and page.is_hidden("#problems")


def test_newer_schema_and_foreign_files(page: Any, tmp_path: Path, server_for: Any) -> None:
    real = write_budget_stop_run(tmp_path / "src").read_text().splitlines()
    (tmp_path / "logs").mkdir()
    newer = json.loads(real[0]) | {"schema_version": 4, "new_field": {"a": 1}}
    (tmp_path / "logs" / "newer.jsonl").write_text("\n".join([json.dumps(newer), *real[1:]]) + "\n")
    (tmp_path / "logs" / "other.jsonl").write_text('{"event": "something else"}\n')
    page.goto(server_for(tmp_path / "logs").url)
    page.locator("#run-rows tr").nth(1).wait_for()
    assert "foreign" in page.inner_text("#run-rows") and "schema 4" in page.inner_text("#run-rows")
    page.locator("#run-rows tr", has_text="Never ends?").locator(".run-link").click()
    page.wait_for_selector("#problems:not([hidden])")
    assert "log schema 4" in page.inner_text("#problems") and page.locator("#timeline > li").count() == 2
    page.goto(page.url.split("#")[0] + "#/run/other.jsonl")
    page.wait_for_selector("#problems:not([hidden])")
    assert "Line 1 (foreign)" in page.inner_text("#problems")
    assert "Not an rlm-core log" in page.inner_text(".run-summary")


def test_a_version_1_log_still_shows(page: Any, tmp_path: Path, server_for: Any) -> None:
    # Version 1 logs had no span ids, no per-iteration model calls, no batch ids, no costs per call,
    # and no provenance (schema 3).
    text = write_rich_run(tmp_path / "src").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "v1.jsonl").write_text(as_older_log(text, 1))
    page.goto(server_for(tmp_path / "logs").url)
    open_run(page, "How many?")
    assert page.locator("#timeline > li").count() == 5 and page.is_hidden("#problems")
    result = next(line for line in lines if line["type"] == "result")
    root_tokens = sum(
        r["input_tokens"] + r["output_tokens"] for r in result["usage_summary"] if r["tier"] == "root"
    )
    assert f"{root_tokens:,} / 1,000,000" in page.inner_text("#usage")  # the result line's own count
    iteration(page, 2).locator("summary").first.click()
    # The iteration's body is built when it opens: wait for it before counting.
    iteration(page, 2).locator("details.subcall").nth(3).wait_for()
    assert iteration(page, 2).locator("details.subcall").count() == 4  # no batch ids: four plain calls
    iteration(page, 3).locator("summary").first.click()
    iteration(page, 3).locator("details.subcall.has-child > summary").click()
    iteration(page, 3).locator(".child-run").wait_for()  # built when the sub-call opens
    assert "Answer: 4 letters" in iteration(page, 3).inner_text()


def test_a_version_2_log_reads_as_the_models_own(page: Any, tmp_path: Path, server_for: Any) -> None:
    from playwright.sync_api import expect

    # Before schema 3 nothing said who wrote what: every cell is the model's, no strategy, no source.
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "v2.jsonl").write_text(as_older_log(write_rich_run(tmp_path / "src").read_text(), 2))
    page.goto(server_for(tmp_path / "logs").url)
    open_run(page, "How many?")
    assert page.is_hidden("#problems") and page.locator("#timeline > li").count() == 5
    assert fact(page, "Strategy") == "no strategy" and fact(page, "Stop reason") == "final"
    assert page.locator("#answer-source").count() == 0
    iteration(page, 1).locator("summary").first.click()
    cell = iteration(page, 1).locator("section.cell")
    expect(cell).to_have_count(1)
    expect(cell.locator(".author-label")).to_have_text("model")
    assert cell.locator(".cell-author").count() == 0 and iteration(page, 1).locator(".actions").count() == 0
    iteration(page, 1).locator("details.messages > summary").click()
    expect(iteration(page, 1).locator("details.messages .block > h4")).to_have_text(["user"])


def test_a_strategy_run_shows_who_did_what(
    page: Any, log_dir: Path, server_for: Any, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page.goto(server_for(log_dir).url)
    row = page.locator("#run-rows tr", has_text="Who counted?")
    expect(row).to_contain_text("strategy word-count")
    expect(row).to_contain_text("answer from strategy:word-count")
    # A person clicks the question, not the link in the first column: the whole row opens the run.
    row.locator("td[data-label='Question']").click()
    expect(page.locator("#run-title")).to_have_text("Who counted?")
    page.wait_for_selector("#run[data-loaded='true']")
    assert fact(page, "Stop reason") == "strategy · answer from strategy:word-count"
    assert fact(page, "Strategy") == "word-count" and fact(page, "System prompt by") == "the engine"
    assert "accepted by strategy:word-count" in page.inner_text("#strategy-banner")
    expect(page.locator("#waterfall .bar-code.bar-by-strategy")).to_have_count(1)

    first = iteration(page, 1)
    heading = first.locator("summary").first.inner_text()
    assert "1 cell run by a strategy" in heading and "4 strategy actions" in heading
    first.locator("summary").first.click()
    cells = first.locator("section.cell")
    expect(cells).to_have_count(2)  # the body is built when the iteration opens: wait for it
    strategy_cell, model_cell = cells.nth(0), cells.nth(1)
    expect(strategy_cell.locator(".cell-author")).to_have_text(
        "run by strategy:word-count — not the model's code"
    )
    assert "words = context.split()" in strategy_cell.inner_text()
    expect(model_cell.locator(".author-label")).to_have_text("model")
    assert model_cell.locator(".cell-author").count() == 0
    rule = "(el) => getComputedStyle(el).borderLeftWidth"  # the strategy's cell is set apart
    assert strategy_cell.evaluate(rule) == "4px" and model_cell.evaluate(rule) == "0px"

    actions = first.locator(".actions li.action")
    expect(actions).to_have_count(4)
    run_code, tell, cap, ask = actions.all_inner_texts()
    assert all(text.startswith("strategy:word-count") for text in (run_code, tell, cap, ask))
    assert "run_code" in run_code and "Why: count the words first" in run_code
    assert "tell" in tell and "Said: The count is printed above: check it, then answer." in tell
    assert "cap_output" in cap and "at most 2,000 characters of each cell's output" in cap
    assert "ask_for_final" in ask and "Why: The word count is known." in ask
    assert "Not sure yet: I have only seen three words." in ask  # the model's reply to the request
    assert first.locator(".notes").count() == 0  # the engine had nothing to note this turn
    first.locator("details.messages > summary").click()
    expect(first.locator("details.messages .block > h4")).to_have_text(
        ["user message · by the engine", "user message · by strategy:word-count"]
    )

    second = iteration(page, 2)
    assert "answer accepted by strategy:word-count" in second.locator("summary").first.inner_text()
    second.locator("summary").first.click()
    expect(second.locator(".actions")).to_contain_text("accept_answer")
    notes, acted = second.locator(".notes").inner_text(), second.locator(".actions").inner_text()
    assert "ran a block it had run before" in notes and "accept_answer" not in notes
    assert "Answer: 9 words" in acted and "ran a block" not in acted
    expect(second.locator(".block.final > h4")).to_have_text("Final answer · answer from strategy:word-count")
    page.screenshot(path=str(screenshots / "strategy-run.png"), full_page=True)
    # Search reads the strategy's actions too.
    page.fill("#search", "accept_answer")
    expect(page.locator("#search-status")).to_have_text("1 of 2 iterations match “accept_answer”")


def test_a_run_row_opens_from_anywhere_on_it_and_from_the_keyboard(
    page: Any, log_dir: Path, server_for: Any
) -> None:
    from playwright.sync_api import expect

    page.goto(server_for(log_dir).url)
    for column in ("Answer", "Stop reason", "Iterations"):
        page.locator("#run-rows tr", has_text="Never ends?").locator(f"td[data-label='{column}']").click()
        expect(page.locator("#run-title")).to_have_text("Never ends?")
        page.go_back()
    # Selecting a question to copy it is not a click on the row.
    question = page.locator("#run-rows tr", has_text="Who counted?").locator("td[data-label='Question']")
    start, end = question.evaluate(
        """(cell) => {
          const range = document.createRange();
          range.selectNodeContents(cell);
          const rects = [...range.getClientRects()], first = rects[0], last = rects[rects.length - 1];
          return [[first.left + 1, first.top + first.height / 2], [last.right - 1, last.top + last.height / 2]];
        }"""
    )
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=5)
    page.mouse.up()
    assert page.evaluate("String(window.getSelection())").strip()
    assert page.evaluate("location.hash") == "" and page.locator("#run-rows").count() == 1
    # The keyboard's way in is the row's one link, named by its question; the row shows the focus.
    link = page.get_by_role("link", name=re.compile(r"Who counted\?"))
    link.focus()
    row_background = "(el) => getComputedStyle(el.closest('tr')).backgroundColor"
    assert link.evaluate(row_background) not in ("rgba(0, 0, 0, 0)", "transparent")
    page.keyboard.press("Enter")
    expect(page.locator("#run-title")).to_have_text("Who counted?")


def test_an_empty_directory_says_how_to_make_logs(
    page: Any, tmp_path: Path, server_for: Any, screenshots: Path
) -> None:
    page.goto(server_for(tmp_path).url)
    page.wait_for_selector(".empty")
    text = page.inner_text(".empty")
    assert "No runs in this directory" in text and "RLMLogger(log_dir=" in text and "--log-dir" in text
    page.screenshot(path=str(screenshots / "empty.png"))
    # The list refreshes itself: a run written now shows up without a reload.
    write_budget_stop_run(tmp_path)
    page.locator("#run-rows tr", has_text="Never ends?").wait_for()


def test_keyboard_only(page: Any, log_dir: Path, server_for: Any) -> None:
    page.goto(server_for(log_dir).url)
    page.locator("#run-rows tr").nth(1).wait_for()
    focused = "document.activeElement"
    # Tab order: skip link, home link, the filter box, the sort buttons, then the first run.
    page.keyboard.press("Tab")
    assert page.evaluate(f"{focused}.className") == "skip-link"
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate(f"{focused}.classList.contains('run-link')"):
            break
    assert page.evaluate(f"{focused}.id") == "run-link-0"
    page.keyboard.press("ArrowDown")
    assert page.evaluate(f"{focused}.id") == "run-link-1"
    page.keyboard.press("ArrowUp")
    assert page.evaluate(f"{focused}.id") == "run-link-0"
    page.keyboard.press("End")
    page.keyboard.press("Home")
    question = page.evaluate(f"{focused}.closest('tr').querySelector('[data-label=Question]').innerText")
    page.keyboard.press("Enter")
    page.wait_for_selector("#timeline > li")
    assert question in page.inner_text("#run-title")
    # In the timeline: arrows move between iterations, Enter and Space open and close them.
    page.locator("#timeline > li > details > summary").first.focus()
    page.keyboard.press("ArrowDown")
    assert "Iteration 2" in page.evaluate(f"{focused}.innerText")
    page.keyboard.press("Enter")
    assert iteration(page, 2).get_attribute("open") is not None
    page.keyboard.press("Space")
    assert iteration(page, 2).get_attribute("open") is None
    outline = page.evaluate(f"getComputedStyle({focused}).outlineStyle")
    assert outline not in ("none", ""), "the focused element must show where the focus is"


def test_a_narrow_window_stacks_the_run_list(
    browser: Any, log_dir: Path, server_for: Any, screenshots: Path
) -> None:
    context = browser.new_context(viewport={"width": 380, "height": 800})
    page = context.new_page()
    try:
        page.goto(server_for(log_dir).url)
        page.locator("#run-rows tr").first.wait_for()
        assert page.evaluate("getComputedStyle(document.querySelector('#run-rows tr')).display") == "block"
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.screenshot(path=str(screenshots / "narrow-list.png"), full_page=True)
        open_run(page, "How many?")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.screenshot(path=str(screenshots / "narrow-run.png"))
    finally:
        context.close()


def test_the_export_opens_standalone(page: Any, log_dir: Path, tmp_path: Path) -> None:
    log = next(p for p in log_dir.iterdir() if "How many?" in p.read_text())
    out = tmp_path / "report" / "run.html"
    out.parent.mkdir()
    assert main(["view", str(log), "--export", str(out)]) == 0
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())
    page.wait_for_selector("#timeline > li")
    assert "the answer is 42" in page.inner_text(".run-summary")
    assert page.locator("#timeline > li").count() == 5
    iteration(page, 3).locator("summary").first.click()
    iteration(page, 3).locator("details.subcall.has-child > summary").click()
    iteration(page, 3).locator(".child-run").wait_for()  # built when the sub-call opens
    assert "Answer: 4 letters" in iteration(page, 3).inner_text()
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []


def test_long_texts_are_shortened_in_memory_and_read_again_on_request(
    page: Any, tmp_path: Path, server_for: Any
) -> None:
    write_large_run(tmp_path, subcalls=4, iterations=2, response_chars=9_000)
    page.goto(server_for(tmp_path).url)
    open_run(page, "A big run")
    iteration(page, 1).locator("summary").first.click()
    iteration(page, 1).locator("details.batch > summary").click()
    slot = iteration(page, 1).locator("details.subcall").first
    slot.locator("summary").click()
    slot.locator(".shortened").first.wait_for()  # the slot's texts are built when it opens
    assert "Shortened: 5,000 more characters" in slot.inner_text()
    shown = len(slot.locator("pre").nth(1).inner_text())
    iteration(page, 1).get_by_role("button", name="Show the full texts").click()
    page.wait_for_function("!document.querySelector('#timeline details.iteration .shortened')")
    iteration(page, 1).locator("details.batch > summary").click()
    slot = iteration(page, 1).locator("details.subcall").first
    slot.locator("summary").click()
    assert len(slot.locator("pre").nth(1).inner_text()) > shown >= 4_000


def test_a_served_run_shows_the_key_and_profile_it_came_from(
    page: Any, tmp_path: Path, server_for: Any
) -> None:
    """A real rlm serve run (a keyed request to profile 'p'), opened in the viewer from its logs."""
    pytest.importorskip("starlette")
    import httpx

    from rlm_core.serve.config import parse_config
    from rlm_core.serve.harness import ServerThread
    from rlm_core.serve.keys import ApiKey, KeyRing, hash_key
    from rlm_core.serve.limits import KeyLimits
    from rlm_core.testing import LoopbackLLMServer, repl

    logs = tmp_path / "served-logs"
    with LoopbackLLMServer(lambda request: repl("FINAL('served answer')")) as llm:
        connection = {"base_url": llm.base_url, "api_key": "k", "max_retries": 0}
        config = parse_config(
            {
                "server": {"limits_db": str(tmp_path / "limits.sqlite3")},
                "profiles": {
                    "p": {
                        "backend": "openai",
                        "backend_kwargs": {"model_name": "root", **connection},
                        "logger": f"jsonl:{logs}",
                    }
                },
            }
        )
        keys = KeyRing([ApiKey("team-a", hash_key("key-a"), KeyLimits())])
        with ServerThread(config, keys) as server:
            body = {
                "model": "p",
                "messages": [{"role": "user", "content": "Who asked?"}],
                "context": "some text",
            }
            reply = httpx.post(
                f"{server.base_url}/chat/completions",
                json=body,
                headers={"Authorization": "Bearer key-a"},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
    page.goto(server_for(logs).url)
    row = page.locator("#run-rows tr", has_text="Who asked?")
    assert (
        row.locator(".served").inner_text() == "served: profile p, key team-a"
    )  # the key's name, never the key
    open_run(page, "Who asked?")
    assert fact(page, "Served") == "served: profile p, key team-a"
