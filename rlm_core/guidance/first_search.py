"""The first turn small models get: pick a question's searchable words and write the REPL code that
searches the context for them."""

from __future__ import annotations

import itertools
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


def key_terms(query: str, context: Any = None) -> list[str]:
    """The query's most searchable words: quoted strings, identifiers with digits or hyphens, ALL-CAPS
    words and runs of Capitalised words (names), in order of appearance, at most three. A query with
    none of these (all lower-case) gets its uncommon words that occur in a text ``context`` instead."""
    if not query:
        return []
    query = without_negated(query)
    if not isinstance(context, str):
        return _marked_terms(query)
    marked = _marked_terms(_recase(query, context))
    if marked and not all(term.isupper() for term in marked):
        return marked  # names and identifiers are specific enough on their own
    # Labels alone ("ERROR") match too much: add the plain words that say whose ("billing").
    taken = {term.lower() for term in marked}
    plain = [word for word in _plain_terms(query, context) if word.lower() not in taken]
    return (marked + plain)[:MAX_KEY_TERMS]


_LOWER_WORD = re.compile(r"(?<![\w'-])[a-z][a-z]+(?![\w-])")


def _recase(query: str, context: str) -> str:
    """The query with lower-case words spelled as the text spells its names and labels: pairs the
    text writes as Capitalised Names ("tomas brandt" -> "Tomas Brandt"), words it capitalises in
    mid-sentence (places), and words it uses as an ALL-CAPS label ("error" -> "ERROR")."""
    words = list(_LOWER_WORD.finditer(query))
    spelled: dict[int, str] = {}
    for first, second in itertools.pairwise(words):
        if query[first.end() : second.start()] != " " or first.group() in _NOT_KEY_TERMS:
            continue
        pair = f"{first.group().title()} {second.group().title()}"
        if re.search(rf"(?<![\w-]){re.escape(pair)}(?![\w-])", context):
            spelled[first.start()], spelled[second.start()] = pair.split()
    for word in words:
        text = word.group()
        if word.start() in spelled or text in _QUESTION_WORDS:
            continue
        if len(re.findall(rf"(?<![\w-]){text.upper()}(?![\w-])", context)) >= MIN_LABEL_COUNT:
            spelled[word.start()] = text.upper()
        elif re.search(rf"(?<=[a-z,;] ){text.title()}(?![\w-])", context):
            spelled[word.start()] = text.title()
    out = query
    for start in sorted(spelled, reverse=True):
        out = out[:start] + spelled[start] + out[start + len(spelled[start]) :]
    return out


# A clause that names what the answer must leave out ("..., not billing-worker").
_NEGATED = re.compile(r"(?i)\b(not|except|excluding|other than|without|apart from|but not)\b[^.?!;,]*")


def without_negated(query: str) -> str:
    """The query with its negated clauses blanked: their words are what a search must not require."""
    return _NEGATED.sub(lambda m: " " * len(m.group()), query)


def condition_words(query: str, context: Any) -> list[str]:
    """Every one-word condition of the query found in a text context: its marked terms and its
    plain words, spelled as the text spells them (for checking printed lines against the query)."""
    query = without_negated(query)
    words = [t for t in _marked_terms(query) if re.fullmatch(r"[\w-]+", t)]
    plain = _plain_terms(query, context) if isinstance(context, str) else []
    return list(dict.fromkeys(words + [w for w in plain if w.lower() not in {x.lower() for x in words}]))


def _marked_terms(query: str) -> list[str]:
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


_PLAIN_WORD = re.compile(r"[a-z][a-z0-9_-]{2,}")
# Plain words that describe the question rather than what to find in the text.
# fmt: off
_QUESTION_WORDS = _NOT_KEY_TERMS | frozenset((
    "about", "all", "any", "appear", "appears", "context", "document", "entries", "entry", "every",
    "exactly", "have", "has", "had", "line", "lines", "logged", "log", "logs", "mention", "mentioned",
    "mentions", "not", "number", "only", "text", "than", "these", "those", "times", "total", "were",
    "does", "doing", "been", "being", "into", "over", "under", "their", "them", "they", "its", "his",
    "her", "him", "she", "you", "your", "our", "out", "get", "got", "also", "some", "other", "record",
    "records", "contain", "contains", "containing",
))
# fmt: on
QUESTION_WORDS = _QUESTION_WORDS  # for other guidance modules: words that describe, not name
MAX_COMMON_SHARE = 0.5  # a word on more than half the lines does not narrow a search
MIN_LABEL_COUNT = 3


def _plain_terms(query: str, context: str) -> list[str]:
    """Lower-case query words that occur in the text as whole words, spelled as the text's label
    ("error" -> "ERROR" in a log) or else as the text spells them most often, skipping words too
    common to narrow a search."""
    lines = max(1, context.count("\n") + 1)
    terms: list[str] = []
    for word in dict.fromkeys(_PLAIN_WORD.findall(query)):
        if word in _QUESTION_WORDS:
            continue
        spellings = re.findall(rf"(?i)(?<![\w-]){re.escape(word)}(?![\w-])", context)
        if not spellings:
            continue
        # A word written in capitals again and again is a label ("ERROR" in a log): the question
        # means the label, not the word in running text.
        label = word.upper()
        spelling = (
            label if spellings.count(label) >= MIN_LABEL_COUNT else max(set(spellings), key=spellings.count)
        )
        if spellings.count(spelling) > lines * MAX_COMMON_SHARE:
            continue
        terms.append(spelling)
        if len(terms) == MAX_KEY_TERMS:
            break
    return terms


# Questions about the meaning of many items (intent, tone, category), where words alone mislead.
_JUDGEMENT = re.compile(
    r"(?i)\b(sentiment|tone|intent\w*|mood|meaning|positive|negative|happy|unhappy|satisf\w*|"
    r"dissatisf\w*|angry|upset|complain\w*|asks? (for|to)|asking (for|to)|request\w*|want\w*|"
    r"categor\w*|kind of|sort of|sarcas\w*|polite|rude|urgent\w*|prais\w*|recommend\w*|frustrat\w*|"
    r"classif\w*|express\w*|feel\w*|pleased|disappoint\w*|grateful|thank\w*)\b"
)
_OVER_ITEMS = re.compile(r"(?i)\b(how many|number of|which|what share|what fraction|what percent\w*|count)\b")


def asks_for_judgement(query: str) -> bool:
    """The question counts or picks items by what they mean, not by an exact word or label."""
    return bool(query and _OVER_ITEMS.search(query) and _JUDGEMENT.search(query))


def items_code(context: Any) -> str:
    """REPL code that splits the text into items and shows how many there are and the first three:
    the first step of the small-model prompt's example for questions about meaning."""
    records = isinstance(context, str) and _has_short_records(context)
    source = 'context.split("\\n\\n")' if records else "context.splitlines()"
    joiner = '"\\n\\n"' if records else '"\\n"'
    return (
        f"items = [item for item in {source} if item.strip()]\n"
        "print(len(items))\n"
        f"print({joiner}.join(items[:3]))\n"
    )


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
    condition = " and ".join(_condition(term, unit) for term in terms) or "True"
    # Lower-case words match whole words only, so "billing" does not also find "billing-worker".
    prelude = "import re\n" if "re.search" in condition else ""
    if counting:
        return (
            f"{prelude}hits = [{unit} for {unit} in {source} if {condition}]\n"
            f"for {unit} in hits[:10]:\n"
            f"    print({unit})\n"
            f"print('Number of matching {unit}s:', len(hits))\n"
        )
    return f"{prelude}for {unit} in {source}:\n    if {condition}:\n        print({unit})\n"


def _condition(term: str, unit: str) -> str:
    # Lower-case words are the ones that hide inside others ("billing" in "billing-worker").
    if re.fullmatch(r"[a-z_]+", term):
        return f're.search(r"(?<![\\w-]){re.escape(term)}(?![\\w-])", {unit})'
    return f"{term!r} in {unit}"
