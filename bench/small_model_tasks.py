"""Small-model accuracy benchmark: varied generated long-context tasks with known answers, run through the
embedded model. Kinds: needle look-ups, counting with look-alikes, two- and three-hop chains with
distractors, and judgement over many items (scored with a tolerance).

Run: python bench/small_model_tasks.py [--kinds ...] [--seeds 0-4] [--strategy on|off] [--log-dir DIR] [--list]
A task is a function of (kind, seed): two runs with the same seeds ask the same questions about the
same texts. Develop on some seeds and report on others that were never looked at while tuning.
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

KINDS = ("needle", "count", "twohop", "threehop", "judgement")

FIRST = [
    "ana",
    "jonas",
    "lea",
    "piotr",
    "sofia",
    "emil",
    "ines",
    "tomas",
    "mira",
    "karl",
    "nora",
    "luca",
    "omar",
    "hana",
    "viktor",
    "elsa",
    "rafael",
    "greta",
    "milan",
    "irene",
    "pavel",
    "clara",
    "anton",
    "dora",
    "felix",
    "alma",
    "bruno",
    "vera",
    "oskar",
    "lidia",
]
LAST = [
    "berg",
    "novak",
    "costa",
    "lind",
    "weber",
    "moreau",
    "horvat",
    "rossi",
    "nagy",
    "dahl",
    "kovac",
    "ortiz",
    "varga",
    "holm",
    "ferreira",
    "brandt",
    "marin",
    "quinn",
    "petrov",
    "laine",
    "vidal",
    "engel",
    "fischer",
    "strand",
    "ilves",
    "bauer",
]
CITIES = [
    "lisbon",
    "oslo",
    "tallinn",
    "porto",
    "lyon",
    "graz",
    "krakow",
    "bergen",
    "ghent",
    "turku",
    "split",
    "malmo",
    "brno",
    "riga",
    "cork",
    "bilbao",
    "aarhus",
    "pecs",
    "varna",
    "bari",
]
CODENAMES = [
    "heron",
    "falcon",
    "otter",
    "lynx",
    "badger",
    "marten",
    "osprey",
    "ibis",
    "kestrel",
    "puffin",
    "stoat",
    "bison",
    "walrus",
    "gecko",
]
SERVICES = ["payments", "search", "auth", "billing", "inventory", "gateway", "mailer", "scheduler"]
FILLER = (
    "The quarterly review noted delays in the loading dock repairs.",
    "The steering group signed off on the new badge readers.",
    "The night shift asked for a summary of the cafeteria contract.",
    "The supplier audit postponed the discussion of the spare parts list.",
    "The archive team finished the inventory of the winter schedule.",
    "The travel desk raised questions about the parking allocation.",
    "The facilities crew approved the plan for the printer fleet.",
)


@attrs.define(frozen=True)
class Task:
    """One question about one generated context, and how a reply is scored."""

    kind: str
    task_id: str
    context: str
    question: str
    answer: str  # for display
    must_contain: tuple[str, ...] = ()  # each must appear as a whole token (case-insensitive)
    number: int | None = None  # the first integer of the reply must be this ...
    tolerance: int = 0  # ... give or take this much


def _phrase(rng: random.Random, templates: list[str], **values: str) -> str:
    """One of several phrasings, sometimes all lower-case, sometimes with names capitalised."""
    text = rng.choice(templates).format(**values)
    return text.lower() if rng.random() < 0.4 else text[0].upper() + text[1:]


def _name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"
        if name not in taken:
            taken.add(name)
            return name


def _pad(rng: random.Random, lines: list[str], size: int) -> list[str]:
    """Shuffle ``lines`` among filler until the text is about ``size`` characters."""
    out = list(lines)
    while sum(len(line) + 1 for line in out) < size:
        out.insert(rng.randrange(len(out) + 1), f"{rng.choice(FILLER)[:-1]} on day {rng.randint(1, 365)}.")
    return out


def needle(seed: int) -> Task:
    """A code stated once among look-alike projects, a retired code of the same project and filler."""
    rng = random.Random(f"needle-{seed}")
    name = rng.choice(CODENAMES)
    target = f"{name}-{rng.randint(10, 99)}"
    code = str(rng.randint(10_000, 99_999))
    old = str(rng.randint(10_000, 99_999))
    facts = [
        rng.choice(
            [f"The access code for project {target} is {code}.", f"Project {target}: access code {code}."]
        ),
        f"Project {target} no longer uses the access code {old}; that code was retired.",
        f"The access code for project {target}0 is {rng.randint(10_000, 99_999)}.",  # look-alike name
        f"The access code for project {name}-east is {rng.randint(10_000, 99_999)}.",
    ]
    for other in rng.sample([c for c in CODENAMES if c != name], 8):
        facts.append(
            f"The access code for project {other}-{rng.randint(10, 99)} is {rng.randint(10_000, 99_999)}."
        )
    size = rng.choice([20_000, 60_000, 120_000])
    question = _phrase(
        rng,
        [
            "What is the current access code for project {t}?",
            "which access code does project {t} use now?",
            "Give me the access code of project {t}.",
            "project {t} - what's its access code?",
        ],
        t=target,
    )
    return Task("needle", f"needle-{seed}", "\n".join(_pad(rng, facts, size)), question, code, (code,))


def count(seed: int) -> Task:
    """Log lines; count one service's ERROR lines beside a look-alike service and 'error' in text."""
    rng = random.Random(f"count-{seed}")
    service = rng.choice(SERVICES)
    names = [*SERVICES, f"{service}-worker", f"{service}-cron"]
    messages = {
        "INFO": ["request served in {n} ms", "error budget at {n}%", "no error in last {n} checks", "worker {n} up"],
        "WARN": ["slow response: {n} ms", "retrying after error, attempt {n}", "queue depth at {n}"],
        "ERROR": ["connection reset by peer", "timeout after {n} ms", "disk quota exceeded", "upstream returned 503"],
    }  # fmt: skip
    lines, expected = [], 0
    for second in range(rng.randint(300, 600)):
        level = rng.choices(["INFO", "WARN", "ERROR"], weights=[65, 20, 15])[0]
        name = rng.choice(names)
        text = rng.choice(messages[level]).format(n=rng.randint(2, 999))
        lines.append(
            f"2026-11-02T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d} {level} [{name}] {text}"
        )
        expected += level == "ERROR" and name == service
    question = _phrase(
        rng,
        [
            "How many ERROR lines are there for the service {s}?",
            "how many errors did {s} log? count ERROR lines of {s} only, not {s}-worker or {s}-cron",
            "Count the ERROR entries of the {s} service.",
            "what is the number of ERROR lines logged by {s}?",
        ],
        s=service,
    )
    answer = str(expected)
    return Task("count", f"count-{seed}", "\n".join(lines), question, answer, (answer,), number=expected)


def _people_and_cities(rng: random.Random, count_: int) -> tuple[list[str], dict[str, str], dict[str, str]]:
    taken: set[str] = set()
    people = [_name(rng, taken) for _ in range(count_)]
    home = {p: rng.choice(CITIES).title() for p in people}
    codes = {c.title(): f"{c[:2].upper()}-{rng.randint(100, 999)}" for c in CITIES}
    return people, home, codes


def _residence_lines(rng: random.Random, people: list[str], home: dict[str, str]) -> list[str]:
    lines = []
    for person in people:
        lines.append(
            rng.choice([f"{person} lives in {home[person]}.", f"{person} is based in {home[person]}."])
        )
        visited = rng.choice([c.title() for c in CITIES if c.title() != home[person]])
        lines.append(
            rng.choice([f"{person} visited {visited} in spring.", f"{person} once worked in {visited}."])
        )
    return lines


def twohop(seed: int) -> Task:
    """Where a person lives (beside cities they visited), then that city's office code."""
    rng = random.Random(f"twohop-{seed}")
    people, home, codes = _people_and_cities(rng, 120)
    lines = _residence_lines(rng, people, home) + [f"Office code for {c}: {k}" for c, k in codes.items()]
    rng.shuffle(lines)
    person = rng.choice(people)
    code = codes[home[person]]
    question = _phrase(
        rng,
        [
            "What is the office code of the city where {p} lives?",
            "which office code belongs to {p}'s home city?",
            "{p} lives somewhere; give the office code for that city.",
        ],
        p=person,
    )
    return Task("twohop", f"twohop-{seed}", "\n".join(_pad(rng, lines, 30_000)), question, code, (code,))


def threehop(seed: int) -> Task:
    """A person's manager, where the manager lives, and that city's office code."""
    rng = random.Random(f"threehop-{seed}")
    people, home, codes = _people_and_cities(rng, 140)
    managers, staff = people[:20], people[20:]
    manager_of = {p: rng.choice(managers) for p in staff}
    lines = [f"{p} reports to {manager_of[p]}." for p in staff]
    lines += _residence_lines(rng, people, home) + [f"Office code for {c}: {k}" for c, k in codes.items()]
    rng.shuffle(lines)
    person = rng.choice(staff)
    code = codes[home[manager_of[person]]]
    question = _phrase(
        rng,
        [
            "What is the office code of the city where {p}'s manager lives?",
            "{p} reports to someone. what office code does the city that person lives in have?",
            "find the manager of {p}, then the city the manager lives in: what is its office code?",
        ],
        p=person,
    )
    return Task("threehop", f"threehop-{seed}", "\n".join(lines), question, code, (code,))


ASKS_MONEY_BACK = [
    "the {x} broke after two days, I want my money back",
    "please return what I paid for the {x}",
    "can I be reimbursed for the {x}? it never worked",
    "I'd like a refund for the {x}, it arrived cracked",
    "charge me back for the {x}, it is not what was advertised",
    "send the money for the {x} back to my card please",
]
OTHER_MESSAGES = [
    "thanks, the refund policy page answered my question about the {x}",
    "no need for a refund, the replacement {x} works fine",
    "when will the {x} be back in stock?",
    "love the {x}, five stars",
    "how do I clean the {x}?",
    "my money is tight, is the {x} going on sale soon?",
    "the {x} came a day late but works great",
    "I paid for express delivery of the {x}, where is it?",
]
PRODUCTS = ["kettle", "lamp", "toaster", "chair", "blender", "heater", "fan", "radio", "mixer", "clock"]


def judgement(seed: int) -> Task:
    """Customer messages, some asking for their money back in varied words; count those."""
    rng = random.Random(f"judgement-{seed}")
    total = rng.randint(30, 50)
    wanted = rng.randint(total // 6, total // 3)
    kinds = [True] * wanted + [False] * (total - wanted)
    rng.shuffle(kinds)
    lines = [
        f"msg {i + 1:03d} | {rng.choice(ASKS_MONEY_BACK if asks else OTHER_MESSAGES).format(x=rng.choice(PRODUCTS))}"
        for i, asks in enumerate(kinds)
    ]
    question = _phrase(
        rng,
        [
            "How many of these customer messages ask for their money back?",
            "how many messages are requests for a refund (in any wording)?",
            "count the messages in which the customer wants to be paid back",
        ],
    )
    return Task(
        "judgement", f"judgement-{seed}", "\n".join(lines), question, str(wanted),
        number=wanted, tolerance=max(2, wanted // 10),
    )  # fmt: skip


GENERATORS: dict[str, Callable[[int], Task]] = {
    "needle": needle,
    "count": count,
    "twohop": twohop,
    "threehop": threehop,
    "judgement": judgement,
}


def is_correct(task: Task, response: str | None) -> bool:
    if not response:
        return False
    text = response.lower()
    for part in task.must_contain:
        if not re.search(rf"(?<![\w-]){re.escape(part.lower())}(?![\w-])", text):
            return False
    if task.number is not None:
        first = re.search(r"(?<![\w.-])\d+(?![\w.])", response)
        return first is not None and abs(int(first.group()) - task.number) <= task.tolerance
    return True


@attrs.define
class Outcome:
    task: Task
    correct: bool
    seconds: float
    iterations: int
    subcalls: int
    response: str
    stop_reason: str


class SubcallCounter:
    """A logger counting the llm_query/rlm_query calls REPL code made (each batched slot counts)."""

    def __init__(self, inner: Any = None) -> None:
        self.subcalls = 0
        self.inner = inner

    def on_event(self, event: Any) -> None:
        if getattr(event.kind, "value", event.kind) == "subcall_end":
            self.subcalls += 1
        if self.inner is not None:
            self.inner.on_event(event)


def run_task(task: Task, args: argparse.Namespace) -> Outcome:
    from rlm_core import RLM, RLMLogger

    counter = SubcallCounter(RLMLogger(log_dir=args.log_dir) if args.log_dir else None)
    rlm = RLM(
        backend="llamacpp",
        backend_kwargs={"model_name": args.model},
        max_iterations=args.max_iterations,
        max_timeout=args.max_timeout,
        logger=counter,
        strategy=None if args.strategy == "off" else "small-model",
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
        counter.subcalls,
        response,
        str(getattr(result.stop_reason, "value", result.stop_reason)),
    )


def report(outcomes: list[Outcome]) -> None:
    print()
    print(f"{'kind':10s} {'right':>7s} {'share':>6s} {'median s':>9s} {'sub-calls':>10s}")
    for kind in [k for k in KINDS if any(o.task.kind == k for o in outcomes)]:
        mine = [o for o in outcomes if o.task.kind == kind]
        right = sum(o.correct for o in mine)
        median = statistics.median(o.seconds for o in mine)
        calls = sum(o.subcalls for o in mine)
        print(f"{kind:10s} {right:>3d}/{len(mine):<3d} {right / len(mine):>6.0%} {median:>9.1f} {calls:>10d}")
    right = sum(o.correct for o in outcomes)
    median = statistics.median(o.seconds for o in outcomes)
    calls = sum(o.subcalls for o in outcomes)
    print(
        f"{'overall':10s} {right:>3d}/{len(outcomes):<3d} {right / len(outcomes):>6.0%} {median:>9.1f} {calls:>10d}"
    )


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated subset of " + ",".join(KINDS)
    )
    parser.add_argument("--seeds", default="0-2", help="seeds per kind, e.g. 0-4 or 100-103,200")
    parser.add_argument("--log-dir", help="write one JSONL trajectory per task into this directory")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b", help="llamacpp model_name")
    parser.add_argument("--max-iterations", type=int, default=10)
    parser.add_argument("--max-timeout", type=float, default=180.0, help="seconds per task")
    parser.add_argument(
        "--strategy", choices=("on", "off"), default="on", help="the small-model strategy on (default) or off"
    )
    parser.add_argument("--list", action="store_true", help="print the tasks and their answers, run nothing")
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in GENERATORS]
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    tasks = [GENERATORS[k](seed) for seed in parse_seeds(args.seeds) for k in kinds]
    if args.list:
        for task in tasks:
            print(f"{task.task_id:14s} {len(task.context):>8,} chars  {task.question}  -> {task.answer}")
        return 0
    outcomes = []
    try:
        for task in tasks:
            outcome = run_task(task, args)
            outcomes.append(outcome)
            mark = "ok " if outcome.correct else "BAD"
            reply = " ".join(outcome.response.split())[:60]
            print(
                f"{mark} {task.task_id:14s} {outcome.seconds:6.1f}s {outcome.iterations:2d} it "
                f"{outcome.subcalls:3d} sub {outcome.stop_reason:14s} want {task.answer!r:10s} got {reply!r}",
                flush=True,
            )
    finally:
        from rlm_llamacpp.server import shutdown_servers

        shutdown_servers()
    if outcomes:
        report(outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
