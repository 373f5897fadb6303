"""The first turn small models get: pick a question's searchable words and write the REPL code that
searches the context for them."""

from __future__ import annotations

import re
from typing import Any

# Capitalised words that start questions or are too common to search for.
# fmt: off
_NOT_KEY_TERMS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "did", "do", "does", "for", "from",
    "give", "how", "i", "if", "in", "is", "it", "list", "many", "much", "name", "of", "on", "or", "please",
    "return", "show", "tell", "that", "the", "there", "this", "to", "was", "what", "when", "where", "which",
    "who", "whom", "whose", "why", "will", "with", "would", "find",
))
# fmt: on
_QUOTED = re.compile(r"""(?<!\w)(?:"([^"\n]{1,60})"|'([^'\n]{1,60})'|`([^`\n]{1,60})`)""")
_WORD = re.compile(r"[A-Za-z0-9][\w.-]*[A-Za-z0-9]|[A-Za-z0-9]")
MAX_KEY_TERMS = 3


def key_terms(query: str) -> list[str]:
    """The query's most searchable words: quoted strings, identifiers with digits or hyphens, ALL-CAPS
    words and runs of Capitalised words (names), in order of appearance, at most three."""
    if not query:
        return []
    found: list[tuple[int, str]] = []
    for match in _QUOTED.finditer(query):
        text = next(g for g in match.groups() if g is not None).strip()
        if text:
            found.append((match.start(), text))
    unquoted = _QUOTED.sub(lambda m: " " * len(m.group()), query)
    run: list[tuple[int, int, str]] = []  # (start, end, word) of consecutive capitalised words

    def close_run() -> None:
        # A lone capitalised word opening a sentence ("Summarise ...") is usually not a name.
        opens_sentence = not unquoted[: run[0][0]].strip() or unquoted[: run[0][0]].rstrip()[-1] in ".?!:"
        if len(run) > 1 or not opens_sentence:
            found.append((run[0][0], " ".join(word for _, _, word in run)))
        run.clear()

    for match in _WORD.finditer(unquoted):
        word = match.group()
        is_id = any(c.isdigit() for c in word) or ("-" in word and len(word) > 2)
        is_caps = word.isupper() and len(word) >= 2
        is_name = word[0].isupper() and word.lower() not in _NOT_KEY_TERMS and not (is_caps or is_id)
        if run and (not is_name or unquoted[run[-1][1] : match.start()] != " "):
            close_run()
        if is_name:
            run.append((match.start(), match.end(), word))
        elif is_id or is_caps:
            found.append((match.start(), word))
    if run:
        close_run()
    terms: list[str] = []
    for _, term in sorted(found):
        lowered = term.lower()
        if any(lowered in t.lower() for t in terms):
            continue
        terms = [t for t in terms if t.lower() not in lowered]
        terms.append(term)
    return terms[:MAX_KEY_TERMS]


_COUNTING = re.compile(r"(?i)\b(how many|how often|number of|count)\b")
MAX_RECORD_CHARS = 800  # blank-line-separated parts up to this size are searched as whole records


def asks_for_a_count(query: str) -> bool:
    return bool(_COUNTING.search(query or ""))


def _has_short_records(context: str) -> bool:
    """The text is made of blank-line-separated records (reports, entries) small enough to print."""
    parts = context.split("\n\n", 50)[:50]
    return len(parts) >= 3 and sorted(len(p) for p in parts)[len(parts) // 2] <= MAX_RECORD_CHARS


def search_code(terms: list[str], context: Any = "", counting: bool = False) -> str:
    """REPL code that prints the lines (or short records) holding all ``terms``.

    It has the shape of the small-model prompt's example on purpose: small models continue a pattern
    they recognise (search, read, search the linked name) far more reliably than one they do not.
    For counting questions it prints the number of matches last, where small models look for it."""
    records = isinstance(context, str) and _has_short_records(context)
    unit, source = ("record", 'context.split("\\n\\n")') if records else ("line", "context.splitlines()")
    condition = " and ".join(f"{term!r} in {unit}" for term in terms) or "True"
    if counting:
        return (
            f"hits = [{unit} for {unit} in {source} if {condition}]\n"
            f"for {unit} in hits[:10]:\n"
            f"    print({unit})\n"
            f"print('Number of matching {unit}s:', len(hits))\n"
        )
    return f"for {unit} in {source}:\n    if {condition}:\n        print({unit})\n"
