"""The next search of a look-up chain, run for a small model that stopped on a link.

Small models find the first link of a chain ("X reports to Y", "Y lives in Oslo") and then either
answer with it (FINAL(Oslo) to "what is the office code ...") or search for the same name again.
Both mean the model has the next name in front of it and does not take the step. The engine then
takes it: it searches the context for that name (the model's own answer, or the new name on the
printed line that fits the question best) and shows the lines that also carry the question's words.
Nothing here knows a task's vocabulary: names are runs of capitalised words or identifiers, and
"fits the question" means sharing its words.
"""

from __future__ import annotations

import re

import attrs

from rlm_core.guidance import first_search

MAX_LINES = 10
_NAME = re.compile(r"\b[A-Z][\w'-]*(?:[ ][A-Z][\w'-]*)*|\b[A-Za-z]+-?\d[\w-]*")
_LITERAL = re.compile(r"""(?:"([^"\n]{1,80})"|'([^'\n]{1,80})')""")
_WORDS = re.compile(r"[a-z]{3,}")
# Capitalised words that open sentences and log lines rather than name something.
_NOT_NAMES = frozenset(("The", "A", "An", "In", "On", "At", "For", "Of", "And", "But", "This", "That"))


@attrs.define(frozen=True)
class FollowUp:
    """A search the engine runs for the model: ``term`` is the name followed, ``code`` what runs,
    ``lines`` what it will print."""

    term: str
    code: str
    lines: tuple[str, ...] = ()


def searched_terms(codes: list[str]) -> set[str]:
    """The string literals of the code run so far: what the model (or the engine) searched for."""
    found: set[str] = set()
    for code in codes:
        for match in _LITERAL.finditer(code):
            found.add(next(g for g in match.groups() if g is not None))
    return found


def _stems(text: str) -> set[str]:
    # Five letters keep "lives"/"living"/"lived" together without a stemmer.
    return {word[:5] for word in _WORDS.findall(text.lower()) if word not in first_search.QUESTION_WORDS}


def linked_names(question: str, output: str, searched: set[str]) -> list[str]:
    """Names on the printed lines that fit the question best, which may be the chain's next link:
    lines score by the question's words they share, and a little for naming a name already
    searched (the chain's last link). Only the best lines count: when the best line is the answer
    itself, the people on lesser lines are no link. Words of the question and sentence openers are
    not names."""
    # Words of names already searched say nothing about which link the question wants.
    asked = _stems(question) - _stems(" ".join(searched))
    scores = [
        2 * len(asked & _stems(line)) + any(name in line for name in searched) for line in output.splitlines()
    ]
    top = max(scores, default=0)
    ranked: list[tuple[bool, int, int, str]] = []
    for index, line in enumerate(output.splitlines()):
        if top == 0 or scores[index] < top:
            continue
        for match in _NAME.finditer(line):
            name = match.group().strip()
            if not _in_question(name, question):
                # A name searched before goes after the new names of the same line.
                again = any(name.lower() in s.lower() for s in searched)
                ranked.append((again, index, match.start(), name))
    return list(dict.fromkeys(ranked_name[-1] for ranked_name in sorted(ranked)))


def _in_question(name: str, question: str) -> bool:
    """Not a new name: a sentence opener, or a word of the question (in any case)."""
    lowered = re.escape(name.lower())
    return name in _NOT_NAMES or bool(re.search(rf"(?<![\w-]){lowered}(?![\w-])", question.lower()))


def follow_up(term: str, question: str, context: object) -> FollowUp | None:
    """Code printing the lines of a text ``context`` that hold ``term`` and the most of the
    question's words (lines with the term alone when none has any). None: the term is not there."""
    if not isinstance(context, str) or not term.strip():
        return None
    found = re.search(rf"(?<![\w-]){re.escape(term.strip())}(?![\w-])", context, re.IGNORECASE)
    if found is None:
        return None
    term = found.group()  # as the text spells it: the model may have changed its case
    names = " ".join([term, *first_search.key_terms(question, context)])
    asked = _stems(question) - _stems(names)
    best: list[str] = []
    with_term = [line for line in context.splitlines() if term in line]
    for line in with_term:
        words = [w for w in dict.fromkeys(_WORDS.findall(line.lower())) if w[:5] in asked]
        if len(words) > len(best):
            best = words
    lines = [line for line in with_term if all(w in line.lower() for w in best)][:MAX_LINES]
    # The question's words as the best line spells them, so the condition is plain to read.
    condition = " and ".join([f"{term!r} in line", *(f"{w!r} in line.lower()" for w in best)])
    code = (
        f"hits = [line for line in context.splitlines() if {condition}]\n"
        f'print("\\n".join(hits[:{MAX_LINES}]))\n'
    )
    return FollowUp(term, code, tuple(lines))
