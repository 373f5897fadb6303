"""The rich console view: what verbose=True shows, rendered into a string."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import rlm_core
from rlm_core.events import EventKind, RunEvent
from rlm_core.loggers.console import ConsoleLogger
from rlm_core.records import CodeBlockRecord, IterationRecord, RunMetadata, SubCallRecord
from rlm_core.types import RLMChatCompletion, StopReason, TokenUsage, UsageSummary

REPO = Path(__file__).resolve().parents[1]
ROOT = "root1234abcd"
CHILD = "child567efgh"


def make_console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=100, force_terminal=terminal), buffer


def event(
    kind: EventKind, run_id: str = ROOT, depth: int = 0, parent: str | None = None, **data: Any
) -> RunEvent:
    return RunEvent(kind=kind, run_id=run_id, depth=depth, data=data, parent_run_id=parent)


def start(run_id: str = ROOT, depth: int = 0, parent: str | None = None) -> RunEvent:
    md = RunMetadata(
        run_id=run_id,
        root_model="gpt-big" if depth == 0 else "gpt-small",
        backend="openai",
        environment="local",
        started_at=0.0,
        depth=depth,
        parent_run_id=parent,
        context_type="str",
        context_chars=1_234_567,
        root_prompt="Which city is the needle in?",
        sub_models=["gpt-small"],
    )
    return event(EventKind.RUN_START, run_id, depth, parent, metadata=md)


def the_iteration() -> IterationRecord:
    nested = SubCallRecord("s2", "rlm_query", 2, model="gpt-small", error="budget exhausted", duration=0.25)
    call = SubCallRecord(
        "s1",
        "llm_query",
        1,
        model="gpt-small",
        usage=TokenUsage(1500, 40),
        duration=1.5,
        children=[nested],
    )
    block = CodeBlockRecord(
        code="chunks = [context[i:i+1000] for i in range(0, len(context), 1000)]\nprint(len(chunks))",
        stdout="1235\n",
        stderr="a warning\n",
        error="NameError: name 'x' is not defined",
        duration=0.02,
        subcalls=[call],
    )
    return IterationRecord(
        run_id=ROOT,
        iteration=1,
        response=(
            "I will split the context first.\n```repl\n"
            "chunks = [context[i:i+1000] for i in range(0, len(context), 1000)]\nprint(len(chunks))\n```"
        ),
        code_blocks=[block],
        notes=["Your code printed nothing new; look at the output above."],
        root_usage=TokenUsage(900, 80),
        sub_usage=TokenUsage(1500, 40),
        duration=2.5,
    )


def the_result(run_id: str = ROOT, stop: StopReason = StopReason.FINAL, error: str | None = None) -> Any:
    usage = UsageSummary()
    usage.record("root", "gpt-big", TokenUsage(900, 80), 0.0123)
    usage.record("sub", "gpt-small", TokenUsage(1500, 40), None)
    return RLMChatCompletion(
        root_model="gpt-big",
        prompt="ctx",
        response="The needle is in Lisbon.",
        usage_summary=usage,
        execution_time=3.25,
        stop_reason=stop,
        error=error,
        iterations=1,
        run_id=run_id,
    )


def test_public_import() -> None:
    assert rlm_core.ConsoleLogger is ConsoleLogger


def test_a_whole_run_renders_header_iteration_subcalls_answer_and_usage() -> None:
    console, buffer = make_console()
    logger = ConsoleLogger(console)
    logger.on_event(start())
    logger.on_event(event(EventKind.ITERATION_START, iteration=1))
    logger.on_event(event(EventKind.ITERATION_END, record=the_iteration()))
    logger.on_event(event(EventKind.RUN_END, result=the_result()))
    logger.close()
    out = buffer.getvalue()

    assert "RLM run root1234" in out
    assert "model gpt-big (openai)" in out
    assert "environment local" in out
    assert "context str, 1,234,567 chars" in out
    assert "question: Which city is the needle in?" in out
    assert "Iteration 1" in out
    assert "I will split the context first." in out
    # The code shows once, highlighted, not again inside the response text.
    assert out.count("print(len(chunks))") == 1
    assert "code cell 1" in out
    assert "1235" in out
    assert "stderr: a warning" in out
    assert "error: NameError: name 'x' is not defined" in out
    assert "engine note: Your code printed nothing new" in out
    assert "sub-calls (1)" in out
    assert "llm_query · gpt-small · 1,500 in / 40 out tok · 1.50s" in out
    assert "rlm_query · gpt-small" in out and "error: budget exhausted" in out
    assert "Final answer" in out and "The needle is in Lisbon." in out
    for cell in (
        "root",
        "gpt-big",
        "900",
        "80",
        "$0.0123",
        "sub",
        "gpt-small",
        "1,500",
        "n/a",
        "total",
        "2,400",
    ):
        assert cell in out
    assert "1 iterations · 3.2s" in out
    assert "\x1b[" not in out  # no control codes when the console is not a terminal


def test_long_text_is_truncated_to_max_chars() -> None:
    console, buffer = make_console()
    logger = ConsoleLogger(console, max_chars=100)
    record = IterationRecord(run_id=ROOT, iteration=3, response="A" * 90 + "B" * 5000)
    record.code_blocks.append(CodeBlockRecord(code="print('x')", stdout="C" * 90 + "D" * 3000))
    logger.on_event(start())
    logger.on_event(event(EventKind.ITERATION_END, record=record))
    logger.close()
    out = buffer.getvalue()
    flat = out.replace("\n", "").replace("│", "").replace(" ", "")  # undo the panel's wrapping
    assert "A" * 90 + "B" * 10 + "…" in flat
    assert "C" * 90 + "D" * 10 + "…" in flat
    assert "4,990 more chars not shown" in out
    assert "2,990 more chars not shown" in out


def test_child_runs_are_indented_and_prefixed_by_depth() -> None:
    console, buffer = make_console()
    logger = ConsoleLogger(console)
    logger.on_event(start())
    logger.on_event(start(CHILD, 1, ROOT))
    child_record = IterationRecord(
        run_id=CHILD, iteration=1, depth=1, response="child thinking", final_answer="7"
    )
    logger.on_event(event(EventKind.ITERATION_END, CHILD, 1, ROOT, record=child_record))
    logger.on_event(event(EventKind.RUN_END, CHILD, 1, ROOT, result=the_result(CHILD)))
    logger.on_event(event(EventKind.RUN_END, result=the_result()))
    logger.close()
    lines = buffer.getvalue().splitlines()

    header = next(line for line in lines if "child run child567" in line and "depth 1" in line)
    assert header.startswith("    ↳ child run child567 (depth 1)")
    assert "model gpt-small" in header
    panel_title = next(line for line in lines if "↳ depth 1 · Iteration 1" in line)
    assert panel_title.startswith("    ╭")
    answer = next(line for line in lines if "child thinking" in line)
    assert answer.startswith("    │")
    child_end = next(line for line in lines if "final after 1 iterations" in line)
    assert child_end.startswith("    ↳ child run child567")
    # Only the top-level run gets the final-answer panel and usage table.
    assert sum("Final answer" in line for line in lines) == 1


def test_a_stopped_run_says_why() -> None:
    console, buffer = make_console()
    logger = ConsoleLogger(console)
    logger.on_event(start())
    logger.on_event(
        event(EventKind.RUN_END, result=the_result(stop=StopReason.ROOT_BUDGET, error="out of tokens"))
    )
    out = buffer.getvalue()
    assert "Stopped without a final answer (root_budget)" in out
    assert "error: out of tokens" in out


def test_status_text_tracks_iteration_phase_and_tokens_per_tier() -> None:
    console, _ = make_console()
    logger = ConsoleLogger(console)
    logger.on_event(start())
    logger.on_event(start(CHILD, 1, ROOT))
    logger.on_event(event(EventKind.ITERATION_START, iteration=4))
    lm_end = EventKind.LM_CALL_END
    logger.on_event(event(lm_end, call_id="a", model="gpt-big", purpose="root", usage=TokenUsage(1000, 200)))
    logger.on_event(
        event(lm_end, call_id="b", model="gpt-small", purpose="llm_query", usage=TokenUsage(30, 3))
    )
    logger.on_event(
        event(lm_end, CHILD, 1, ROOT, call_id="c", model="gpt-small", purpose="root", usage=TokenUsage(50, 5))
    )
    logger.on_event(event(EventKind.CODE_START, code="print(1)"))
    text = logger.status_text()
    assert text.startswith("root1234 iteration 4 · ")
    assert "root 1,200 tok · sub 88 tok · running code" in text
    assert "child567" not in text  # children fold into their top-level run's line
    logger.on_event(event(EventKind.SUBCALL_START, call_id="d", function="llm_query", model="gpt-small"))
    assert logger.status_text().endswith("llm_query → gpt-small")


def test_no_live_status_when_the_console_is_not_a_terminal() -> None:
    console, buffer = make_console(terminal=False)
    logger = ConsoleLogger(console)
    logger.on_event(start())
    assert logger._live is None
    logger.on_event(event(EventKind.RUN_END, result=the_result()))
    assert "\x1b[" not in buffer.getvalue()


def test_live_status_on_a_terminal_stops_at_run_end() -> None:
    console, buffer = make_console(terminal=True)
    logger = ConsoleLogger(console)
    stdout_before = sys.stdout
    logger.on_event(start())
    live = logger._live
    assert live is not None and live.is_started
    assert sys.stdout is stdout_before  # the REPL's stdout routing must not be disturbed
    logger.on_event(event(EventKind.ITERATION_END, record=the_iteration()))
    logger.on_event(event(EventKind.RUN_END, result=the_result()))
    assert logger._live is None and not live.is_started
    assert "The needle is in Lisbon." in buffer.getvalue()
    logger.close()


def test_live_status_stops_on_close_mid_run() -> None:
    console, _ = make_console(terminal=True)
    logger = ConsoleLogger(console)
    logger.on_event(start())
    live = logger._live
    assert live is not None and live.is_started
    logger.close()
    assert not live.is_started
    logger.close()  # twice is fine


@pytest.mark.parametrize("module", ["rlm_core", "rlm_core.loggers.console"])
def test_importing_does_not_import_rich(module: str) -> None:
    code = f"import sys, {module}; print('rich' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_registered_as_the_console_logger() -> None:
    from rlm_core.plugins.registry import PluginRegistry

    registry = PluginRegistry(load_entry_points=False)
    console, _ = make_console()
    assert isinstance(registry.create("loggers", "console", console=console), ConsoleLogger)
