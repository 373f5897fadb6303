"""JSONL trajectory logs: a file per completion, child runs, redaction, kill-safety, concurrency."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rlm_core
from rlm_core.environments.base import ExecResult
from rlm_core.events import EventKind, RunEvent
from rlm_core.loggers.jsonl import RLMLogger, Trajectory, TrajectoryReadError, read_trajectory
from rlm_core.loggers.serialization import converter, prompt_preview
from rlm_core.records import SCHEMA_VERSION, CodeBlockRecord, IterationRecord, RunMetadata, SubCallRecord
from rlm_core.types import Message, ModelUsage, RLMChatCompletion, StopReason, TokenUsage, UsageSummary

REPO = Path(__file__).resolve().parents[1]
OPENAI_KEY = "sk-proj-" + "Ab3dE" * 8


# -- builders ------------------------------------------------------------------------------------


def metadata(run_id: str, depth: int = 0, parent: str | None = None, **extra: Any) -> RunMetadata:
    return RunMetadata(
        run_id=run_id,
        root_model="gpt-test",
        backend="openai",
        environment="local",
        started_at=1_700_000_000.0,
        depth=depth,
        parent_run_id=parent,
        max_iterations=5,
        max_root_tokens=1000,
        max_sub_tokens=2000,
        context_type="str",
        context_chars=42,
        root_prompt="what is it?",
        extra=dict(extra),
    )


def iteration(run_id: str, n: int, depth: int = 0, final: str | None = None) -> IterationRecord:
    child = SubCallRecord("c2", "rlm_query", depth + 2, model="small", usage=TokenUsage(1, 2))
    call = SubCallRecord(
        "c1", "llm_query", depth + 1, model="small", prompt="p", response="r", children=[child]
    )
    block = CodeBlockRecord("print(len(context))", stdout="42\n", duration=0.01, subcalls=[call])
    return IterationRecord(
        run_id=run_id,
        iteration=n,
        depth=depth,
        new_messages=[Message("user", f"turn {n}")],
        response=f"```repl\nprint(len(context))\n```\nturn {n}",
        code_blocks=[block],
        final_answer=final,
        root_usage=TokenUsage(10 * n, n),
        sub_usage=TokenUsage(3, 4),
        duration=0.5,
        timestamp=1_700_000_001.0 + n,
    )


def completion(run_id: str, response: str = "42", stop: StopReason = StopReason.FINAL) -> RLMChatCompletion:
    usage = UsageSummary()
    usage.record("root", "gpt-test", TokenUsage(100, 10), 0.25)
    usage.record("sub", "small", TokenUsage(5, 6), None)
    return RLMChatCompletion(
        root_model="gpt-test",
        prompt="the context",
        response=response,
        usage_summary=usage,
        execution_time=1.5,
        stop_reason=stop,
        iterations=2,
        run_id=run_id,
    )


def event(kind: EventKind, run_id: str, depth: int = 0, parent: str | None = None, **data: Any) -> RunEvent:
    return RunEvent(kind=kind, run_id=run_id, depth=depth, data=data, parent_run_id=parent)


def run_events(run_id: str, iterations: int = 2) -> list[RunEvent]:
    events = [event(EventKind.RUN_START, run_id, metadata=metadata(run_id))]
    for n in range(1, iterations + 1):
        events.append(event(EventKind.ITERATION_START, run_id, iteration=n))
        events.append(event(EventKind.ITERATION_END, run_id, record=iteration(run_id, n)))
    events.append(event(EventKind.RUN_END, run_id, result=completion(run_id)))
    return events


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- writing -------------------------------------------------------------------------------------


def test_public_import() -> None:
    assert rlm_core.RLMLogger is RLMLogger


def test_one_file_per_completion_with_metadata_iterations_and_result(tmp_path: Path) -> None:
    log_dir = tmp_path / "not" / "there" / "yet"
    logger = RLMLogger(log_dir)
    for e in run_events("abcdef0123456789"):
        logger.on_event(e)
    assert logger.last_path is not None
    assert logger.paths == [logger.last_path]
    assert logger.last_path.parent == log_dir
    assert logger.last_path.name == "rlm_20231114T221320Z_abcdef01.jsonl"

    lines = lines_of(logger.last_path)
    assert [line["type"] for line in lines] == ["metadata", "iteration", "iteration", "result"]
    assert lines[0]["schema_version"] == SCHEMA_VERSION == 3
    assert lines[0]["run_id"] == "abcdef0123456789"
    assert lines[1]["iteration"] == 1
    assert lines[1]["new_messages"] == [{"role": "user", "content": "turn 1", "author": ""}]
    result = lines[3]
    assert result["stop_reason"] == "final"
    assert result["error"] is None
    assert {(row["tier"], row["model"]) for row in result["usage_summary"]} == {
        ("root", "gpt-test"),
        ("sub", "small"),
    }
    assert logger.path_for("abcdef0123456789") is None  # finished runs are closed

    for e in run_events("second-run"):
        logger.on_event(e)
    assert len(logger.paths) == 2
    assert logger.last_path.name.endswith("_second-r.jsonl")
    logger.close()


def test_child_runs_go_to_their_root_file_and_read_back_as_a_tree(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    root, child, grandchild = "root0000", "child000", "grand000"
    logger.on_event(event(EventKind.RUN_START, root, metadata=metadata(root)))
    logger.on_event(event(EventKind.ITERATION_END, root, record=iteration(root, 1)))
    logger.on_event(event(EventKind.RUN_START, child, 1, root, metadata=metadata(child, 1, root)))
    assert logger.path_for(child) == logger.path_for(root) == logger.last_path
    logger.on_event(event(EventKind.ITERATION_END, child, 1, root, record=iteration(child, 1, 1)))
    logger.on_event(event(EventKind.RUN_START, grandchild, 2, child, metadata=metadata(grandchild, 2, child)))
    logger.on_event(
        event(EventKind.ITERATION_END, grandchild, 2, child, record=iteration(grandchild, 1, 2, "g"))
    )
    logger.on_event(event(EventKind.RUN_END, grandchild, 2, child, result=completion(grandchild, "g")))
    logger.on_event(event(EventKind.RUN_END, child, 1, root, result=completion(child, "c")))
    logger.on_event(event(EventKind.ITERATION_END, root, record=iteration(root, 2, final="42")))
    logger.on_event(event(EventKind.RUN_END, root, result=completion(root)))
    logger.close()

    assert len(logger.paths) == 1
    kinds = [line["type"] for line in lines_of(logger.paths[0])]
    assert kinds == [
        "metadata",
        "iteration",
        "child_run_start",
        "iteration",
        "child_run_start",
        "iteration",
        "child_result",
        "child_result",
        "iteration",
        "result",
    ]
    trajectory = read_trajectory(logger.paths[0])
    assert trajectory.complete and not trajectory.truncated and trajectory.problems == []
    assert trajectory.metadata == metadata(root)
    assert trajectory.iterations == [iteration(root, 1), iteration(root, 2, final="42")]
    assert trajectory.result == completion(root)
    (child_run,) = trajectory.children
    assert child_run.metadata == metadata(child, 1, root)
    assert child_run.iterations == [iteration(child, 1, 1)]
    assert child_run.result == completion(child, "c")
    (grand_run,) = child_run.children
    assert grand_run.run_id == grandchild
    assert grand_run.result is not None and grand_run.result.response == "g"


def test_secrets_never_reach_the_file(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    run_id = "secret00"
    md = metadata(run_id, backend_kwargs={"api_key": "plain-value", "max_tokens": 77})
    logger.on_event(event(EventKind.RUN_START, run_id, metadata=md))
    record = iteration(run_id, 1)
    record.response = f"I found OPENAI_API_KEY={OPENAI_KEY} in the context"
    record.code_blocks[0].stdout = f"Authorization: Bearer {OPENAI_KEY[3:]}"
    logger.on_event(event(EventKind.ITERATION_END, run_id, record=record))
    logger.on_event(event(EventKind.RUN_END, run_id, result=completion(run_id, f"key: {OPENAI_KEY}")))
    logger.close()

    text = logger.paths[0].read_text()
    assert OPENAI_KEY not in text
    assert OPENAI_KEY[3:] not in text
    assert "plain-value" not in text
    trajectory = read_trajectory(logger.paths[0])
    assert trajectory.metadata is not None
    assert trajectory.metadata.extra == {"backend_kwargs": {"api_key": "[REDACTED]", "max_tokens": 77}}
    assert trajectory.iterations[0].response == "I found OPENAI_API_KEY=[REDACTED] in the context"
    assert trajectory.result is not None and trajectory.result.response == "key: [REDACTED]"
    assert trajectory.metadata.max_root_tokens == 1000


def test_each_line_is_flushed_as_it_comes(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    logger.on_event(event(EventKind.RUN_START, "live0000", metadata=metadata("live0000")))
    logger.on_event(event(EventKind.ITERATION_END, "live0000", record=iteration("live0000", 1)))
    # The run is still going: a reader sees everything written so far.
    assert logger.last_path is not None
    partial = read_trajectory(logger.last_path)
    assert partial.iterations == [iteration("live0000", 1)]
    assert not partial.complete
    assert any("no result line" in problem for problem in partial.problems)
    logger.close()


def test_a_killed_process_leaves_a_readable_log(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_jsonl_logger import event, iteration, metadata
        from rlm_core.events import EventKind
        from rlm_core.loggers.jsonl import RLMLogger
        logger = RLMLogger({str(tmp_path)!r})
        logger.on_event(event(EventKind.RUN_START, "killed00", metadata=metadata("killed00")))
        for n in (1, 2):
            logger.on_event(event(EventKind.ITERATION_END, "killed00", record=iteration("killed00", n)))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    (path,) = tmp_path.glob("*.jsonl")
    trajectory = read_trajectory(path)
    assert [r.iteration for r in trajectory.iterations] == [1, 2]
    assert trajectory.result is None and not trajectory.truncated

    # A process killed in the middle of a line leaves a cut last line: read what is complete.
    cut = tmp_path / "cut.jsonl"
    full = path.read_text()
    cut.write_text(full + '{"type": "iteration", "run_id": "killed00", "iter')
    trajectory = read_trajectory(cut)
    assert trajectory.truncated
    assert [r.iteration for r in trajectory.iterations] == [1, 2]
    assert any("incomplete" in problem for problem in trajectory.problems)

    # Killed right before the newline: the last object is whole, so it counts.
    no_newline = tmp_path / "no-newline.jsonl"
    no_newline.write_text(full.rstrip("\n"))
    trajectory = read_trajectory(no_newline)
    assert not trajectory.truncated
    assert len(trajectory.iterations) == 2


def test_damage_before_the_last_line_is_an_error(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    for e in run_events("damaged0"):
        logger.on_event(e)
    lines = logger.paths[0].read_text().splitlines()
    lines[1] = lines[1][:20]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrajectoryReadError, match="line 2: not valid JSON"):
        read_trajectory(bad)

    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({"type": "metadata", "schema_version": 99}) + "\n")
    with pytest.raises(TrajectoryReadError, match="upgrade rlm-core"):
        read_trajectory(newer)

    with pytest.raises(TrajectoryReadError, match="cannot read"):
        read_trajectory(tmp_path / "missing.jsonl")


def test_file_name_prefix_and_exact_name(tmp_path: Path) -> None:
    prefixed = RLMLogger(tmp_path / "a", file_name="needle")
    for e in run_events("prefix00"):
        prefixed.on_event(e)
    assert prefixed.paths[0].name.startswith("needle_") and prefixed.paths[0].name.endswith("_prefix00.jsonl")

    exact = RLMLogger(tmp_path / "b", file_name="trajectory.jsonl")
    for run_id in ("exact000", "exact001"):
        for e in run_events(run_id):
            exact.on_event(e)
    assert exact.paths[0].name == "trajectory.jsonl"
    assert exact.paths[1].name.startswith("trajectory_") and exact.paths[1].name.endswith("_exact001.jsonl")
    assert read_trajectory(exact.paths[0]).run_id == "exact000"


def test_same_second_same_id_prefix_gets_a_new_name(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    for run_id in ("samesame-1", "samesame-2"):
        for e in run_events(run_id):
            logger.on_event(e)
    assert len(set(logger.paths)) == 2
    assert [read_trajectory(p).run_id for p in logger.paths] == ["samesame-1", "samesame-2"]


def test_concurrent_completions_get_separate_files(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def one_run(index: int) -> None:
        try:
            root, child = f"run{index}-root", f"run{index}-child"
            barrier.wait()
            logger.on_event(event(EventKind.RUN_START, root, metadata=metadata(root)))
            for n in range(1, 26):
                logger.on_event(event(EventKind.ITERATION_END, root, record=iteration(root, n)))
                if n == 10:
                    logger.on_event(
                        event(EventKind.RUN_START, child, 1, root, metadata=metadata(child, 1, root))
                    )
                    logger.on_event(
                        event(EventKind.ITERATION_END, child, 1, root, record=iteration(child, 1, 1))
                    )
                    logger.on_event(event(EventKind.RUN_END, child, 1, root, result=completion(child)))
            logger.on_event(event(EventKind.RUN_END, root, result=completion(root)))
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.close()
    assert errors == []
    assert len(logger.paths) == 4
    for path in logger.paths:
        trajectory = read_trajectory(path)
        root = trajectory.run_id
        assert root is not None
        assert [r.iteration for r in trajectory.iterations] == list(range(1, 26))
        assert {r.run_id for r in trajectory.iterations} == {root}
        (child,) = trajectory.children
        assert child.run_id == root.replace("root", "child")
        assert trajectory.complete and not trajectory.problems


def test_close_leaves_unfinished_runs_readable(tmp_path: Path) -> None:
    with RLMLogger(tmp_path) as logger:
        logger.on_event(event(EventKind.RUN_START, "open0000", metadata=metadata("open0000")))
        logger.on_event(event(EventKind.ITERATION_END, "open0000", record=iteration("open0000", 1)))
    # Events after close are ignored, not an error.
    logger.on_event(event(EventKind.ITERATION_END, "open0000", record=iteration("open0000", 2)))
    logger.close()
    trajectory = read_trajectory(logger.paths[0])
    assert len(trajectory.iterations) == 1 and not trajectory.complete


def test_registered_as_the_jsonl_logger(tmp_path: Path) -> None:
    from rlm_core.plugins.registry import PluginRegistry

    registry = PluginRegistry(load_entry_points=False)
    logger = registry.create("loggers", "jsonl", log_dir=tmp_path)
    assert isinstance(logger, RLMLogger)


# -- the converter -------------------------------------------------------------------------------


def roundtrip(value: Any) -> Any:
    return converter.structure(json.loads(json.dumps(converter.unstructure(value))), type(value))


def test_usage_summary_rows() -> None:
    usage = completion("x").usage_summary
    rows = converter.unstructure(usage)
    assert rows == [
        {
            "tier": "root",
            "model": "gpt-test",
            "calls": 1,
            "input_tokens": 100,
            "output_tokens": 10,
            "cost": 0.25,
            "estimated_calls": 0,
            "cached_calls": 0,
        },
        {
            "tier": "sub",
            "model": "small",
            "calls": 1,
            "input_tokens": 5,
            "output_tokens": 6,
            "cost": None,
            "estimated_calls": 0,
            "cached_calls": 0,
        },
    ]
    assert roundtrip(usage) == usage


def test_completion_keeps_a_prompt_preview_not_the_context() -> None:
    big = completion("x")
    big.prompt = "y" * 100_000
    data = converter.unstructure(big)
    assert len(data["prompt"]) < 1000
    assert data["prompt"].endswith("[99500 more chars]")
    assert prompt_preview(["a", "b"]) == "<list, 2 items> ['a', 'b']"
    assert prompt_preview(None) is None


def test_trajectory_is_an_attrs_record() -> None:
    assert Trajectory().iterations == [] and not Trajectory().complete


TEXT = st.text(max_size=40)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
INTS = st.integers(min_value=0, max_value=2**53)
USAGE = st.builds(TokenUsage, INTS, INTS)
MESSAGES = st.lists(st.builds(Message, st.sampled_from(["system", "user", "assistant"]), TEXT), max_size=3)
SUBCALLS = st.deferred(
    lambda: st.builds(
        SubCallRecord,
        call_id=TEXT,
        function=st.sampled_from(["llm_query", "rlm_query", "my_tool"]),
        depth=st.integers(0, 5),
        model=TEXT,
        prompt=TEXT,
        response=TEXT,
        error=st.none() | TEXT,
        usage=USAGE,
        duration=FLOATS,
        child_run_id=st.none() | TEXT,
        child_iterations=INTS,
        children=st.lists(SUBCALLS, max_size=2),
    )
)
CODE_BLOCKS = st.builds(
    CodeBlockRecord,
    code=TEXT,
    stdout=TEXT,
    stderr=TEXT,
    error=st.none() | TEXT,
    final_answer=st.none() | TEXT,
    duration=FLOATS,
    timed_out=st.booleans(),
    subcalls=st.lists(SUBCALLS, max_size=2),
)
ITERATIONS = st.builds(
    IterationRecord,
    run_id=TEXT,
    iteration=INTS,
    depth=st.integers(0, 5),
    new_messages=MESSAGES,
    response=TEXT,
    code_blocks=st.lists(CODE_BLOCKS, max_size=2),
    final_answer=st.none() | TEXT,
    notes=st.lists(TEXT, max_size=2),
    root_usage=USAGE,
    sub_usage=USAGE,
    duration=FLOATS,
    timestamp=FLOATS,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INTS | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
METADATA = st.builds(
    RunMetadata,
    run_id=TEXT,
    root_model=TEXT,
    backend=TEXT,
    environment=TEXT,
    started_at=FLOATS,
    depth=st.integers(0, 5),
    parent_run_id=st.none() | TEXT,
    other_backends=st.lists(TEXT, max_size=2),
    sub_models=st.lists(TEXT, max_size=2),
    max_iterations=INTS,
    max_depth=INTS,
    max_root_tokens=INTS,
    max_sub_tokens=INTS,
    max_timeout=st.none() | FLOATS,
    context_type=TEXT,
    context_chars=INTS,
    root_prompt=st.none() | TEXT,
    system_prompt=TEXT,
    rlm_core_version=TEXT,
    schema_version=st.just(1),
    extra=st.dictionaries(TEXT, JSON_VALUES, max_size=3),
)
MODEL_USAGE = st.builds(
    ModelUsage, calls=INTS, input_tokens=INTS, output_tokens=INTS, cost=st.none() | FLOATS
)
USAGE_SUMMARIES = st.builds(
    UsageSummary,
    st.dictionaries(st.tuples(st.sampled_from(["root", "sub"]), TEXT), MODEL_USAGE, max_size=4),
)
COMPLETIONS = st.builds(
    RLMChatCompletion,
    root_model=TEXT,
    prompt=st.none() | st.text(max_size=500),
    response=TEXT,
    usage_summary=USAGE_SUMMARIES,
    execution_time=FLOATS,
    stop_reason=st.sampled_from(list(StopReason)),
    error=st.none() | TEXT,
    iterations=INTS,
    run_id=TEXT,
    log_path=st.none() | TEXT,
)
EXEC_RESULTS = st.builds(
    ExecResult,
    stdout=TEXT,
    stderr=TEXT,
    error=st.none() | TEXT,
    final_answer=st.none() | TEXT,
    duration=FLOATS,
    timed_out=st.booleans(),
    state_lost=st.booleans(),
    restored=st.lists(TEXT, max_size=2),
    variables=st.lists(st.tuples(TEXT, TEXT), max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(
    value=st.one_of(
        ITERATIONS,
        METADATA,
        COMPLETIONS,
        CODE_BLOCKS,
        SUBCALLS,
        EXEC_RESULTS,
        USAGE_SUMMARIES,
        MODEL_USAGE,
        USAGE,
        MESSAGES.filter(bool).map(lambda m: m[0]),
    )
)
def test_property_records_round_trip_exactly(value: Any) -> None:
    assert roundtrip(value) == value


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(list(StopReason)))
def test_property_stop_reason_round_trips(kind: StopReason) -> None:
    assert converter.structure(json.loads(json.dumps(converter.unstructure(kind))), StopReason) is kind


# -- with the real engine ------------------------------------------------------------------------


async def test_concurrent_engine_completions_each_get_their_own_file(tmp_path: Path) -> None:
    rlm_module = pytest.importorskip("rlm_core.rlm", reason="the engine (rlm_core.rlm) is not written yet")
    scripted = pytest.importorskip("rlm_core.testing.scripted", reason="rlm_core.testing is not written yet")

    def reply(request: Any) -> str:
        if request.purpose != "root":
            return "hi from the sub-model"
        if not any(m.role == "assistant" for m in request.messages):
            return "```repl\nn = len(context)\nprint(n, llm_query('say hi'))\n```"
        return "```repl\nFINAL('length ' + str(n))\n```"

    logger = RLMLogger(tmp_path)
    client = scripted.ScriptedClient(reply, model_name="scripted")
    with rlm_module.RLM(backend=client, logger=logger, max_iterations=4) as rlm:
        results = await asyncio.gather(
            *(rlm.acompletion("x" * size, root_prompt="len?") for size in (3, 5, 7))
        )
    assert [r.response for r in results] == ["length 3", "length 5", "length 7"]
    assert len(logger.paths) == 3
    by_run = {read_trajectory(path).run_id: read_trajectory(path) for path in logger.paths}
    for result in results:
        trajectory = by_run[result.run_id]
        assert trajectory.complete and not trajectory.problems
        assert trajectory.result is not None and trajectory.result.response == result.response
        assert trajectory.metadata is not None and trajectory.metadata.context_chars == len(result.prompt)
        first = trajectory.iterations[0].code_blocks[0]
        assert first.stdout == f"{len(result.prompt)} hi from the sub-model\n"
        assert [call.function for call in first.subcalls] == ["llm_query"]
