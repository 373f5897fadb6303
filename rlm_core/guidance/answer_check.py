"""Checks a small model's final answer against its question before the run ends: the answer's shape
(a number for "how many", a code for "what code", an answer rather than "not found") and the output
the model last saw (lines that meet the question's words only loosely)."""

from __future__ import annotations

import re

from rlm_core.guidance import first_search

_NUMBER_WORDS = (
    r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|hundred|none|no"
)
_HAS_NUMBER = re.compile(rf"(?i)\d|\b({_NUMBER_WORDS})\b")
_HAS_DIGIT = re.compile(r"\d")
# Questions whose answer is an identifier or quantity, written with digits.
_ASKS_FOR_CODE = re.compile(
    r"(?i)\b(what|which|give|tell)\b[^?.]*?\b(code|id|number|room|extension|pin|port|version|zip|"
    r"postcode|ticket|serial|phone|amount|price|year)\b"
)
_NOTHING_FOUND = re.compile(
    r"(?i)\b(not found|no [\w -]{0,30}found|not (be )?(mentioned|given|stated|available|listed|present)|"
    r"unknown|cannot (be )?(determined|found)|could not (be )?(determined|found)|no information|"
    r"n/a|does not (say|mention|exist)|is not in the)\b"
)
_TOKEN = re.compile(r"[\w-]+")
MAX_EXAMPLES = 2


def shape_problem(question: str | None, answer: str) -> str | None:
    """What is plainly wrong with the answer's form for this question, or None."""
    if not question:
        return None
    if _NOTHING_FOUND.search(answer):
        return (
            f"FINAL({answer}) says the answer was not found, but the question expects one. Search "
            "again with other words from the question (a shorter part of a name, lower-case, or the "
            "name found in an earlier step)."
        )
    if first_search.asks_for_a_count(question) and not _HAS_NUMBER.search(answer):
        return f"The question asks how many, but FINAL({answer}) has no number. Reply FINAL(the number)."
    code = _ASKS_FOR_CODE.search(question)
    if code and not first_search.asks_for_a_count(question) and not _HAS_DIGIT.search(answer):
        kind = code.group(2)
        return (
            f"The question asks for a {kind}, but FINAL({answer}) has no digits, so it is probably "
            f"a name found on the way. Search for the {kind} of that name, then reply FINAL({kind})."
        )
    return None


def loose_matches(question: str | None, context: object, output: str) -> tuple[list[str], list[str]]:
    """Lines of ``output`` that contain a key word of the question only loosely: inside a longer
    word ("billing" in "billing-worker") or in another case ("error" where the text's label is
    "ERROR"). Returns those lines (at most two) and the words involved."""
    if not question or not output:
        return [], []
    terms = first_search.condition_words(question, context)
    found: list[str] = []
    words: list[str] = []
    for line in output.splitlines():
        tokens = _TOKEN.findall(line)
        for term in terms:
            if _loosely_in(term, tokens):
                if len(found) < MAX_EXAMPLES and line not in found:
                    found.append(line.strip()[:200])
                if term not in words:
                    words.append(term)
    return found, words


def _loosely_in(term: str, tokens: list[str]) -> bool:
    """``term`` is on the line only loosely: inside a longer word, or a label (all capitals) written
    in another case. A plain word that merely opens a sentence ("Project" for "project") is exact."""
    if term in tokens:
        return False
    lowered = term.lower()
    for token in tokens:
        if token.lower() == lowered:
            if term.isupper():
                return True
        elif lowered in token.lower():
            return True
    return False


def loose_match_problem(question: str | None, context: object, output: str, answer: str) -> str | None:
    """The output the model just saw holds lines that break the question's conditions, and the
    answer rests on them (a count over them, or a value found only on such a line)."""
    lines, words = loose_matches(question, context, output)
    if not lines:
        return None
    counting = first_search.asks_for_a_count(question or "")
    if not counting and not any(answer.lower() in line.lower() for line in lines):
        return None
    shown = "\n".join(lines)
    pattern = f're.search(r"(?<![\\w-]){re.escape(words[0])}(?![\\w-])", line)'
    condition = " and ".join(repr(w) for w in words)
    return (
        f"Some lines you printed do not meet the question's conditions: they contain {condition} only "
        f"inside a longer word or in another case:\n{shown}\nThe question is: {question}\n"
        f"Keep only lines where each of {condition} appears as a whole word, exactly as written, "
        f"for example with {pattern}, then reply with FINAL(...)."
    )
