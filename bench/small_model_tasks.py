"""Small-model accuracy benchmark: generated long-context tasks with exactly known answers (needle
look-ups at several sizes, counting over log lines, two-hop look-ups), run through the embedded model.

Run: python bench/small_model_tasks.py [--kinds needle,count,twohop] [--limit N] [--log-dir DIR]
Every task is generated from a fixed seed, so two runs ask the same questions about the same texts.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

KINDS = ("needle", "count", "twohop")
NEEDLE_SIZES = (20_000, 100_000, 400_000)
TASKS_PER_KIND = 6

FIRST = [
    "Ana", "Jonas", "Lea", "Piotr", "Sofia", "Emil", "Ines", "Tomas", "Mira", "Karl", "Nora", "Luca",
    "Omar", "Hana", "Viktor", "Elsa", "Rafael", "Greta", "Milan", "Irene", "Pavel", "Clara", "Anton",
    "Dora", "Felix", "Alma", "Bruno", "Vera", "Oskar", "Lidia",
]  # fmt: skip
LAST = [
    "Berg", "Novak", "Costa", "Lind", "Weber", "Moreau", "Horvat", "Rossi", "Nagy", "Dahl", "Kovac",
    "Ortiz", "Varga", "Holm", "Ferreira", "Kowalski", "Brandt", "Marin", "Sorensen", "Quinn", "Petrov",
    "Laine", "Vidal", "Engel", "Fischer", "Strand", "Ilves", "Bauer",
]  # fmt: skip
CODENAMES = [
    "Heron", "Falcon", "Otter", "Lynx", "Badger", "Marten", "Osprey", "Ibis", "Kestrel", "Puffin",
    "Stoat", "Bison", "Walrus", "Gecko", "Marmot", "Plover", "Condor", "Ferret", "Tapir", "Egret",
]  # fmt: skip
FILLER_SUBJECTS = [
    "The quarterly review", "The steering group", "The night shift", "The supplier audit",
    "The safety drill", "The archive team", "The travel desk", "The facilities crew",
]  # fmt: skip
FILLER_VERBS = [
    "noted delays in", "signed off on", "asked for a summary of", "postponed the discussion of",
    "approved the plan for", "raised questions about", "finished the inventory of",
]  # fmt: skip
FILLER_OBJECTS = [
    "the loading dock repairs", "the new badge readers", "the cafeteria contract", "the spare parts list",
    "the winter schedule", "the printer fleet", "the parking allocation", "the training calendar",
]  # fmt: skip
SERVICES = ["payments", "search", "auth", "billing", "inventory", "gateway", "mailer", "scheduler"]
LOG_MESSAGES = {
    "INFO": ["request served in {n} ms", "cache warmed with {n} keys", "health check passed", "worker {n} started"],
    "WARN": ["slow response: {n} ms", "retrying call, attempt {n}", "queue depth at {n}", "pool nearly full"],
    "ERROR": ["connection reset by peer", "timeout after {n} ms", "disk quota exceeded", "upstream returned 503"],
}  # fmt: skip
TEAMS = ["Platform", "Research", "Sales", "Support", "Finance", "Logistics", "Design", "Legal"]


@attrs.define(frozen=True)
class Task:
    """One question about one generated context, with the exact answer parts a reply must contain."""

    kind: str
    task_id: str
    context: str
    question: str
    answer: str  # for display
    must_contain: tuple[str, ...]  # each must appear (case-insensitive, as a whole token)
    number: int | None = None  # counting tasks: the first integer in the reply must equal this


def _names(rng: random.Random, count: int) -> list[str]:
    pool = [f"{f} {last}" for f in FIRST for last in LAST]
    rng.shuffle(pool)
    return pool[:count]


def _filler_line(rng: random.Random) -> str:
    return (
        f"{rng.choice(FILLER_SUBJECTS)} {rng.choice(FILLER_VERBS)} {rng.choice(FILLER_OBJECTS)} "
        f"on day {rng.randint(1, 365)}."
    )


def needle_task(index: int) -> Task:
    """A launch code stated once, among distractor codes of other projects, in `size` characters."""
    size = NEEDLE_SIZES[index % len(NEEDLE_SIZES)]
    rng = random.Random(1000 + index)
    projects = [f"{name}-{rng.randint(100, 999)}" for name in rng.sample(CODENAMES, 12)]
    target = projects[0]
    code = rng.randint(10_000, 99_999)
    facts = [f"The launch code for project {target} is {code}."]
    for other in projects[1:]:
        facts.append(f"The launch code for project {other} is {rng.randint(10_000, 99_999)}.")
    lines: list[str] = []
    total = 0
    while total < size:
        line = _filler_line(rng)
        lines.append(line)
        total += len(line) + 1
    for fact in facts:
        lines.insert(rng.randrange(len(lines)), fact)
    context = "\n".join(lines)
    return Task(
        kind="needle",
        task_id=f"needle-{size // 1000}k-{index}",
        context=context,
        question=f"What is the launch code for project {target}?",
        answer=str(code),
        must_contain=(str(code),),
    )


def count_task(index: int) -> Task:
    """Log lines of several services and levels; count one service's ERROR lines."""
    rng = random.Random(2000 + index)
    service = SERVICES[index % len(SERVICES)]
    lines = []
    expected = 0
    for second in range(rng.randint(500, 700)):
        level = rng.choices(["INFO", "WARN", "ERROR"], weights=[70, 20, 10])[0]
        name = rng.choice(SERVICES)
        message = rng.choice(LOG_MESSAGES[level]).format(n=rng.randint(2, 999))
        stamp = f"2026-11-{1 + second // 3600:02d}T{(second // 60) % 24:02d}:{second % 60:02d}:00"
        lines.append(f"{stamp} {level} [{name}] {message}")
        expected += level == "ERROR" and name == service
    return Task(
        kind="count",
        task_id=f"count-{service}-{index}",
        context="\n".join(lines),
        question=f"How many ERROR lines are there for the service '{service}'?",
        answer=str(expected),
        must_contain=(str(expected),),
        number=expected,
    )


def twohop_task(index: int) -> Task:
    """A staff directory and an office list: find a person's manager, then the manager's room."""
    rng = random.Random(3000 + index)
    people = _names(rng, 260)
    managers, staff = people[:30], people[30:]
    rooms = {p: f"{rng.choice('ABCDEFG')}-{rng.randint(100, 499)}" for p in people}
    directory = []
    manager_of: dict[str, str] = {}
    for person in staff:
        manager_of[person] = rng.choice(managers)
        directory.append(f"Employee: {person}; team: {rng.choice(TEAMS)}; manager: {manager_of[person]}")
    for person in managers:
        directory.append(f"Employee: {person}; team: {rng.choice(TEAMS)}; manager: none")
    rng.shuffle(directory)
    offices = [f"{person} works in room {rooms[person]}." for person in people]
    rng.shuffle(offices)
    context = "STAFF DIRECTORY\n" + "\n".join(directory) + "\n\nOFFICE ASSIGNMENTS\n" + "\n".join(offices)
    person = staff[index * 7 % len(staff)]
    room = rooms[manager_of[person]]
    return Task(
        kind="twohop",
        task_id=f"twohop-{index}",
        context=context,
        question=f"In which room does the manager of {person} work?",
        answer=room,
        must_contain=(room,),
    )


GENERATORS: dict[str, Callable[[int], Task]] = {
    "needle": needle_task,
    "count": count_task,
    "twohop": twohop_task,
}


def build_tasks(kinds: tuple[str, ...] = KINDS, limit: int = TASKS_PER_KIND) -> list[Task]:
    return [GENERATORS[kind](index) for kind in kinds for index in range(limit)]


def is_correct(task: Task, response: str | None) -> bool:
    if not response:
        return False
    text = response.lower()
    for part in task.must_contain:
        if not re.search(rf"(?<![\w-]){re.escape(part.lower())}(?![\w-])", text):
            return False
    if task.number is not None:
        first = re.search(r"(?<![\w.-])\d+(?![\w.])", response)
        return first is not None and int(first.group()) == task.number
    return True


@attrs.define
class Outcome:
    task: Task
    correct: bool
    seconds: float
    iterations: int
    response: str
    stop_reason: str


def run_task(task: Task, args: argparse.Namespace) -> Outcome:
    from rlm_core import RLM, RLMLogger

    logger: Any = RLMLogger(log_dir=args.log_dir) if args.log_dir else None
    rlm = RLM(
        backend="llamacpp",
        backend_kwargs={"model_name": args.model},
        max_iterations=args.max_iterations,
        max_timeout=args.max_timeout,
        logger=logger,
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
        is_correct(task, response),
        seconds,
        result.iterations,
        response,
        str(getattr(result.stop_reason, "value", result.stop_reason)),
    )


def report(outcomes: list[Outcome]) -> None:
    print()
    kinds = sorted({o.task.kind for o in outcomes}, key=lambda k: KINDS.index(k) if k in KINDS else 99)
    for kind in kinds:
        mine = [o for o in outcomes if o.task.kind == kind]
        right = sum(o.correct for o in mine)
        print(f"{kind:8s} {right}/{len(mine)} = {right / len(mine):.0%}")
    right = sum(o.correct for o in outcomes)
    print(f"overall  {right}/{len(outcomes)} = {right / len(outcomes):.0%}")
    print(f"median seconds per task: {statistics.median(o.seconds for o in outcomes):.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS)
    )
    parser.add_argument("--limit", type=int, default=TASKS_PER_KIND, help="tasks per kind")
    parser.add_argument("--offset", type=int, default=0, help="skip this many tasks per kind")
    parser.add_argument("--log-dir", help="write one JSONL trajectory per task into this directory")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="llamacpp model_name")
    parser.add_argument("--max-iterations", type=int, default=10)
    parser.add_argument("--max-timeout", type=float, default=240.0, help="seconds per task")
    parser.add_argument("--list", action="store_true", help="print the tasks and their answers, run nothing")
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in GENERATORS]
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    tasks = [GENERATORS[k](i) for k in kinds for i in range(args.offset, args.offset + args.limit)]
    if args.list:
        for task in tasks:
            print(f"{task.task_id:18s} {len(task.context):>8,} chars  {task.question}  -> {task.answer}")
        return 0
    outcomes = []
    for task in tasks:
        outcome = run_task(task, args)
        outcomes.append(outcome)
        mark = "ok " if outcome.correct else "BAD"
        reply = " ".join(outcome.response.split())[:70]
        print(
            f"{mark} {task.task_id:18s} {outcome.seconds:6.1f}s {outcome.iterations:2d} it "
            f"{outcome.stop_reason:14s} want {task.answer!r:10s} got {reply!r}",
            flush=True,
        )
    report(outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
