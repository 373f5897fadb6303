"""The ``small-model`` strategy: help for 1-3B root models, given through the core's strategy contract.

What it does, each step logged under its name:

- a short system prompt with two worked examples (a look-up by exact words; a judgement over many
  items with typed sub-calls);
- before the first turn it runs one cell that defines three helpers in the REPL (``find_text``,
  ``list_items``, ``ask_each``), shown to the model as code the engine ran, so the model chooses
  the words to search for and the question to ask each item, and the helpers do the loops small
  models get wrong. ``ask_each`` gives each sub-call the run's question as background (where the
  user says what the labels mean) and answers a repeated call from its first answers (small
  models often send the same cell twice; at temperature 0 the answers would be the same). With
  choices it asks for the sub-model's scores (``scores=True``) and picks each item's answer by
  batch calibration (Zhou et al., 2024): a 1.5B sub-model leans to one label for almost every
  item, yet ranks the items well, so dividing each choice's probability by its mean over the
  batch recovers most labels; between two choices it first cuts the items' log-odds where they
  fall apart into two groups (Otsu's method), which keeps the items' shares where batch
  calibration pulls them towards an even split; a client without scores gets the model's own
  picks. With choices it prints a tally of the answers;
- after the question, one typed choice (``Choose``) asks the model which kind of question it is
  (judge each item, look up, something else) and tells it the first step of the plan it picked;
- after each turn without an answer it restates the question;
- when the model sends a block it already ran and the output is the same, or replies in prose
  after its code ran, it asks for the final answer at once (the model's FINAL is still its own);
- when ``FINAL(...)`` raised (an unquoted answer, a name that does not exist) it says how to quote;
- when the model's code printed ``True`` or ``False`` last, it says a yes/no question wants the word;
- root turns, sub-calls and the output shown are capped (small models ramble; a CPU is slow).

It never refuses, rewrites or supplies an answer. Its scope and known misfires are in the README.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rlm_core.guidance import prompts
from rlm_core.guidance.strategy import (
    Action,
    AskForFinal,
    BaseStrategy,
    CapCall,
    CapOutput,
    Choose,
    RunCode,
    StartView,
    Tell,
    TurnView,
)

NAME = "small-model"

SYSTEM_PROMPT = """\
You answer a question about a long text. The text is stored in the Python variable `context`. You \
cannot read it directly: you run Python code, and you see only what your code prints.

Reply with exactly one ```repl code block, and I run it and show you what it printed. When the \
printed output shows the answer, reply with only FINAL(the answer).

Helpers already defined in the REPL:
- find_text("word", "other word", ...): prints the passages of `context` that contain all the given \
words (in any case) and returns them as a list.
- list_items(): returns the items of `context` (its non-empty lines, or the elements of a list) and \
prints how many there are and the first three.
- ask_each(items, question, choices): asks a helper model the question about each item (with the \
whole task beside it, so it knows what the choices mean), prints how often each choice was answered, \
and returns the answers in order, each one of the choices.
- llm_query(prompt): asks a helper model about a short piece of text.

Example 1, a question about an exact fact, "What is the launch code of the Aurora project?":
You:
```repl
find_text("Aurora", "code")
```
Me:
```output
1 passage:
The launch code of the Aurora project is 7741-B, set in March.
```
You: FINAL(7741-B)

Example 2, a question about the kind of many items, "Each line is a support ticket, either 'bug' \
(something is broken) or 'request' (a wish for something new). How many tickets are bugs?":
You:
```repl
items = list_items()
answers = ask_each(items, "Is this ticket a 'bug' or a 'request'?", ["bug", "request"])
print(answers.count("bug"), "of", len(answers))
```
Me:
```output
3 items. The first three:
t1 | The export button does nothing.
t2 | Please add a dark mode.
t3 | Login fails with error 500.
ask_each: 3 answers. 'bug': 2, 'request': 1 (most often: 'bug'; least often: 'request')
2 of 3
```
You: FINAL(2)

Rules:
1. For exact facts (names, numbers, codes, dates), call find_text with the most specific words of \
the question. If it finds nothing, try fewer words or other spellings.
2. When the question is about the kind, label, meaning or tone of many items, words will not find \
the answer, since the labels are not written in the text: use list_items and ask_each with the \
possible labels as choices, then count or compare the answers with code.
3. Never change `context`. Never write the output yourself: wait for it.
4. Answer every part of the question, in a few words, in the form it asks for: a number, a name, \
a label, yes or no. Python's True and False are not yes and no.
{tools}"""

# Runs in the REPL (stdlib only: it must work in every sandbox). Names are plain so that a small
# model can call them; they are ordinary variables the model may rebind.
HELPERS = '''\
import json as _json
import math as _math
import re as _re


def _rlm_texts():
    if isinstance(context, str):
        return context.splitlines()
    if isinstance(context, dict):
        return [f"{key}: {_json.dumps(value, default=str)}" for key, value in context.items()]
    if isinstance(context, (list, tuple)):
        return [item if isinstance(item, str) else _json.dumps(item, default=str) for item in context]
    return str(context).splitlines()


def find_text(*words, limit=10, width=400):
    """Print the passages of context that contain all the words (any case); return them."""
    wanted = [str(w).lower() for w in words if str(w).strip()]
    passages = []
    for line in _rlm_texts():
        pieces = _re.split(r"(?<=[.!?])\\s+", line) if len(line) > width else [line]
        passages.extend(p for p in pieces if p.strip())
    found = [p for p in passages if all(w in p.lower() for w in wanted)]
    print(f"{len(found)} passage(s)" + (":" if found else " contain all of " + repr(words)))
    for passage in found[:limit]:
        print(passage[:width])
    if len(found) > limit:
        print(f"... and {len(found) - limit} more")
    return found


def list_items():
    """The non-empty lines (or elements) of context; prints how many and the first three."""
    items = [t for t in _rlm_texts() if t.strip()]
    print(f"{len(items)} items. The first three:")
    for item in items[:3]:
        print(item[:300])
    return items


final = FINAL  # small models write the finish in lower case; it means the same


_rlm_asked = {}
_RLM_CALIBRATE_MIN = 8  # batch calibration needs a batch: fewer items are answered as asked


def _rlm_log_odds(row):
    return _math.log(max(row[0], 1e-300)) - _math.log(max(row[1], 1e-300))


def _rlm_calibrated(scored, choices):
    """Each item's choice once the sub-model's lean towards one choice whatever the item is taken
    out; None for an item without scores. Between two choices, the cut where the items' log-odds
    fall apart into two groups (see _rlm_two_groups); otherwise, or without such a gap, batch
    calibration: each item's choice probabilities divided by their mean over the batch, and the
    likeliest after that (which assumes the batch is not mostly of one kind)."""
    rows = []
    for scores in scored:
        known = [v for v in scores.values() if v is not None] if isinstance(scores, dict) else []
        if not known:
            rows.append(None)
            continue
        floor = min(known)  # a choice not among the alternatives is at most as likely as the last
        weights = [_math.exp(scores[c] if scores.get(c) is not None else floor) for c in choices]
        rows.append([w / sum(weights) for w in weights])
    valid = [row for row in rows if row]
    if len(valid) < _RLM_CALIBRATE_MIN:
        return [choices[row.index(max(row))] if row else None for row in rows]
    if len(choices) == 2:
        cut = _rlm_two_groups([_rlm_log_odds(row) for row in valid])
        if cut is not None:
            return [(choices[0] if _rlm_log_odds(row) > cut else choices[1]) if row else None for row in rows]
    mean = [sum(row[k] for row in valid) / len(valid) for k in range(len(choices))]
    picked = []
    for row in rows:
        ratios = [row[k] / mean[k] for k in range(len(choices))] if row else None
        picked.append(choices[ratios.index(max(ratios))] if ratios else None)
    return picked


def _rlm_two_groups(values):
    """Where the values (each item's log-odds of the first of two choices) fall apart into two
    groups, by Otsu's method: the cut that maximises the variance between the groups. None unless
    that variance is more of the whole than the best cut of one normal distribution gives (2/pi):
    without two groups there is no gap to find, and batch calibration decides. Unlike batch
    calibration this keeps the shares the items have, so 8 of 40 stay 8 of 40."""
    v = sorted(values)
    n = len(v)
    total = sum(v)
    spread = sum((x - total / n) ** 2 for x in v) / n
    if not spread:
        return None
    best, cut, left = 0.0, None, 0.0
    for i in range(1, n):
        left += v[i - 1]
        if v[i] == v[i - 1]:
            continue
        between = (i / n) * ((n - i) / n) * (left / i - (total - left) / (n - i)) ** 2
        if between > best:
            best, cut = between, (v[i - 1] + v[i]) / 2
    return cut if best / spread > 2 / _math.pi else None


def _rlm_tally(answers, choices):
    """Print how often each choice was answered, most often first, and warn when no choice begins
    a word of the task (a plural still counts): the answers can only be counted in the task's own
    labels, and small models copy the labels of a worked example."""
    counts = {c: sum(1 for a in answers if a == c) for c in choices}
    ranked = sorted(choices, key=lambda c: -counts[c])
    line = ", ".join(f"{c!r}: {counts[c]}" for c in ranked)
    other = len(answers) - sum(counts.values())
    if other:
        line += f", not one of the choices: {other}"
    top, low = counts[ranked[0]], counts[ranked[-1]]
    if len(ranked) > 1 and top != low:
        most = [c for c in ranked if counts[c] == top]
        least = [c for c in ranked if counts[c] == low]
        line += f" (most often: {' and '.join(map(repr, most))}; least often: {' and '.join(map(repr, least))})"
    print(f"ask_each: {len(answers)} answers. {line}")
    task = _RLM_TASK.lower()
    if task and not any(_re.search(r"\\b" + _re.escape(c.lower()), task) for c in choices):
        print(f"(ask_each: none of the choices {choices!r} is a word of the task; if the task names "
              "its own answers or labels, ask again with those as the choices)")


def ask_each(items, question, choices=None):
    """Ask a helper model the question about each item, with the task as background; the answers,
    in order. With choices, each answer is the choice the helper model scores highest once its
    lean towards one choice over the whole batch is taken out (batch calibration), where the model
    gives scores; else its own pick. The same question about the same items is asked once (unless
    a slot failed): later calls reuse the answers."""
    background = f"The whole task, for background: {_RLM_TASK}\\n\\n" if _RLM_TASK else ""
    asked = [f"{background}Answer this about one item: {question}\\n\\nItem: {item}" for item in items]
    key = (tuple(asked), tuple(choices or ()))
    if key in _rlm_asked:
        print(_RLM_ASKED_BEFORE)
        if choices:
            _rlm_tally(_rlm_asked[key], [str(c) for c in choices])
        return list(_rlm_asked[key])
    if choices:
        choices = [str(c) for c in choices]
        try:
            # The first item alone: a model without scores says so once, not once per item.
            scored = llm_query_batched(asked[:1], choices=choices, scores=True)
            if isinstance(scored[0], dict) and len(asked) > 1:
                scored += llm_query_batched(asked[1:], choices=choices, scores=True)
            answers = _rlm_calibrated(scored + [None] * (len(asked) - len(scored)), choices)
        except Exception:  # choices the scores cannot tell apart, or a host without scored calls
            answers = [None] * len(asked)
        missing = [i for i, a in enumerate(answers) if a is None]
        if missing:  # no scores (a provider without them, a failed slot): the model's own pick
            picks = llm_query_batched([asked[i] for i in missing], choices=choices)
            for i, pick in zip(missing, picks):
                answers[i] = pick
        _rlm_tally(answers, choices)
    else:
        answers = llm_query_batched(asked)
    if not any(isinstance(a, str) and a.startswith("Error: ") for a in answers):
        _rlm_asked[key] = list(answers)  # a failed slot is asked again next time, not remembered
    return answers
'''


def helpers_code(question: str | None) -> str:
    """The helper cell, with the run's question bound as ``_RLM_TASK`` for ask_each's background."""
    return f"_RLM_TASK = {question or ''!r}\n_RLM_ASKED_BEFORE = {ASKED_BEFORE!r}\n" + HELPERS


# ask_each's note when it answers a repeated call from memory (the strategy reads it back).
ASKED_BEFORE = "(ask_each: the same question about the same items was asked before; these are its answers)"
_FINAL_RAISED = re.compile(r"\bFINAL(?:_VAR)?\(")
_PYTHON_ERROR = re.compile(r"\b(NameError|SyntaxError)\b")


class SmallModelStrategy(BaseStrategy):
    """Settings (``strategy_kwargs``): ``root_max_tokens`` (400), ``sub_max_tokens`` (200),
    ``max_output_chars`` (4,000), ``helpers`` (True: define the REPL helpers before the first turn),
    ``plan`` (True: with the helpers, ask the model which kind of question it is before its first
    turn, and tell it the first step of the plan it picked)."""

    name = NAME

    def __init__(
        self,
        *,
        root_max_tokens: int = 400,
        sub_max_tokens: int = 200,
        max_output_chars: int = 4_000,
        helpers: bool = True,
        plan: bool = True,
    ) -> None:
        self.root_max_tokens = root_max_tokens
        self.sub_max_tokens = sub_max_tokens
        self.max_output_chars = max_output_chars
        self.helpers = helpers
        self.plan = plan

    def system_prompt(self, view: StartView) -> str | None:
        if not self.helpers:
            return None  # the examples use the helpers: without them the core's prompt fits better
        return SYSTEM_PROMPT.format(tools=prompts.describe_tools(view.tools))

    def on_start(self, view: StartView) -> Sequence[Action]:
        actions: list[Action] = [
            CapCall(self.root_max_tokens, "root", why="one code block or a FINAL line per turn"),
            CapCall(self.sub_max_tokens, "sub", why="sub-calls answer one short question each"),
            CapOutput(self.max_output_chars, why="a small model's window holds a few thousand tokens"),
        ]
        if self.helpers:
            actions.append(
                RunCode(
                    helpers_code(view.root_prompt),
                    why="define find_text, list_items and ask_each",
                    shown="it defined the helpers find_text, list_items and ask_each described in "
                    "the instructions.",
                )
            )
        actions.append(Tell(_restated(view.root_prompt, first=True), why="the question, and what to do"))
        if self.helpers and self.plan:
            actions.append(
                Choose(
                    PLAN_QUESTION,
                    {
                        name: (Tell(text, why=f"the model chose the plan {name!r}"),)
                        for name, text in PLANS.items()
                    },
                    why="small models start on the wrong kind of code; a typed pick of the plan first",
                )
            )
        return actions

    def on_turn(self, view: TurnView) -> Sequence[Action]:
        actions: list[Action] = []
        mine = [cell for cell in view.cells if cell.author == "model"]
        if any(_final_raised(cell.code, cell.error) for cell in mine):
            actions.append(
                Tell(
                    "FINAL(...) failed before it could finish, so the run goes on. To answer with "
                    'text, quote it: FINAL("your answer"); to answer with a variable, define it first.',
                    why="FINAL(...) raised",
                )
            )
        if mine and _printed_truth_value(mine[-1]):
            actions.append(Tell(TRUTH_VALUE, why="the output ends with True or False"))
        repeated = bool(mine) and all(_ran_before(cell, view.history) for cell in mine)
        if mine and all(_found_nothing(cell) for cell in mine):
            if repeated and _times_run(mine[-1], view.history) >= 3:
                actions.append(AskForFinal("Your code found nothing three times."))
            else:
                # Asking for the answer now would only get a guess: say what else there is to try.
                actions.append(Tell(FOUND_NOTHING, why="the model's search found nothing"))
            return actions
        if repeated:
            actions.append(AskForFinal("You sent code you ran before, and it printed the same output again."))
            return actions
        ran_code = any(cell.author == "model" for cell in view.history)
        if not view.cells and not ran_code:
            # Prose before any code: small models answer from nothing; what they say is not known.
            actions.append(Tell(NO_CODE_YET, why="no code has run yet"))
            return actions
        if not view.cells and view.reply.strip() and not view.last_turn:
            actions.append(AskForFinal("Your reply had no code block."))
            return actions
        actions.append(Tell(_restated(view.root_prompt), why="restate the question"))
        return actions


PLAN_QUESTION = (
    "Before your first code block, say which kind of question this is. 'judge each item': the "
    "answer depends on what each of many items is (its label, kind, topic or tone; how many items "
    "are of some kind; which kind is most or least common), which is not written in the text. "
    "'look up': the answer is written in the text (a name, a number, a code, a date) and a search "
    "for the question's words finds it. 'something else': neither."
)
PLANS = {
    "judge each item": (
        "Then: items = list_items(), and answers = ask_each(items, a short question about one item, "
        "[each possible answer the task names]). ask_each prints how often each answer was given."
    ),
    "look up": "Then: call find_text with the most specific words of the question (a name, a number, a rare word).",
    "something else": "Then: write code that computes the answer and prints it.",
}

FOUND_NOTHING = (
    "That found nothing: the text does not hold those words together. For an exact fact, try fewer "
    "or other words. If the answer depends on what each item means (a label, a category, a count "
    "of some kind), words will not find it: items = list_items(), then answers = ask_each(items, "
    "a short question about one item, [its possible answers]), then count the answers with code."
)
NO_CODE_YET = (
    "You have not run any code yet, so nothing is known about the text, and a reply without "
    "FINAL(...) is not an answer. Reply with one ```repl block: for an exact fact, call find_text "
    "with the most specific words of the question; for many items, start with list_items()."
)


TRUTH_VALUE = (
    "Your code printed a Python truth value. True and False are not words of an answer: if the "
    "question asks yes or no, answer FINAL(yes) for True or FINAL(no) for False."
)


def _printed_truth_value(cell: Any) -> bool:
    """The cell ran and the last line it printed is ``True`` or ``False``."""
    lines = [line.strip() for line in cell.stdout.splitlines() if line.strip()]
    return not cell.error and bool(lines) and lines[-1] in ("True", "False")


def _restated(question: str | None, first: bool = False) -> str:
    asked = f"The question is: {question}\n" if question else ""
    if first:
        return f"{asked}Reply with one ```repl block."
    return (
        f"{asked}If the output above answers every part of the question, reply with only "
        "FINAL(the answer). Otherwise reply with one ```repl block that finds what is missing."
    )


def _final_raised(code: str, error: str | None) -> bool:
    return bool(error and _PYTHON_ERROR.search(error) and _FINAL_RAISED.search(code))


_NOTHING = re.compile(r"\A\s*(0 passage\(s\)[^\n]*\n?\s*(\[\])?|\[\]|None|0)?\s*\Z")


def _found_nothing(cell: Any) -> bool:
    """The cell ran without error and printed nothing, an empty list, or find_text's "0 passage(s)"."""
    return not cell.error and bool(_NOTHING.match(cell.stdout))


def _times_run(cell: Any, history: Sequence[Any]) -> int:
    key = cell.code.strip()
    return sum(1 for other in history if other.author == "model" and other.code.strip() == key)


def _ran_before(cell: Any, history: Sequence[Any]) -> bool:
    """The same code ran earlier in the run (before this turn) and printed the same thing."""
    key = cell.code.strip()
    output = _output_of(cell)
    return any(
        other is not cell
        and other.code.strip() == key
        and _output_of(other) == output
        and other.started_at < cell.started_at
        for other in history
    )


def _output_of(cell: Any) -> str:
    """What a cell printed, without ask_each's note that it answered a repeated call from memory:
    a block sent again prints that note the second time only, and is still the same block."""
    stdout = "".join(line for line in cell.stdout.splitlines(keepends=True) if line.strip() != ASKED_BEFORE)
    return stdout + (cell.error or "")
