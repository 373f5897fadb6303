"""The batch layer's parts on their own: item parsing, the results file, the ledger, the cache."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from rlm_core.batch import BatchInputError, iter_items
from rlm_core.batch.cache import SubCallCache
from rlm_core.batch.ledger import JobLedger
from rlm_core.batch.settings import job_settings_of
from rlm_core.batch.store import ResultStore, is_finished
from rlm_core.types import LMRequest, LMResponse, Message, TokenUsage


def test_items_read_lazily_with_settings_paths_and_problems(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    items_file = tmp_path / "sub" / "items.jsonl"
    items_file.write_text(
        "\n".join(
            [
                json.dumps({"context_path": "doc.txt", "question": "q", "settings": {"max_iterations": 3}}),
                "",
                json.dumps({"id": "b", "context": "c", "context_path": "x"}),
                "[1, 2]",
                json.dumps(
                    {"id": "c", "context": ["a", "b"], "question": "q", "max_depth": 2, "metadata": {"k": 1}}
                ),
            ]
        )
    )
    (tmp_path / "sub" / "doc.txt").write_text("the document")
    first, both, array, nested = list(iter_items(items_file))
    assert first.id == "line-1" and first.settings == {"max_iterations": 3} and first.problem is None
    assert first.context_path == str(tmp_path / "sub" / "doc.txt")  # relative to the items file
    assert first.load_context() == "the document"
    assert "exactly one of 'context' or 'context_path'" in (both.problem or "")
    assert array.id == "line-4" and "expected a JSON object" in (array.problem or "")
    assert nested.settings == {"max_depth": 2} and nested.metadata == {"k": 1}
    with pytest.raises(BatchInputError, match="exactly one"):
        both.load_context()


def test_a_folder_needs_its_question_and_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="--question"):
        iter_items(tmp_path)
    with pytest.raises(BatchInputError, match="does not exist"):
        iter_items(tmp_path / "nope.jsonl")


def test_fingerprint_follows_input_and_settings_but_not_connections(tmp_path: Path) -> None:
    (item,) = iter_items([{"id": "a", "context": "c", "question": "q"}])
    job = job_settings_of(
        {"backend": "openai", "backend_kwargs": {"model_name": "m", "base_url": "http://a"}}
    )
    moved = job_settings_of(
        {"backend": "openai", "backend_kwargs": {"model_name": "m", "base_url": "http://b", "api_key": "k"}}
    )
    other_model = job_settings_of({"backend": "openai", "backend_kwargs": {"model_name": "n"}})
    assert item.fingerprint(job) == item.fingerprint(moved)
    assert item.fingerprint(job) != item.fingerprint(other_model)
    (changed,) = iter_items([{"id": "a", "context": "c2", "question": "q"}])
    assert changed.fingerprint(job) != item.fingerprint(job)


def test_results_file_skips_a_torn_line_and_never_glues_to_it(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"id": "a", "status": "ok", "input_hash": "h"}) + '\n{"id": "b", "sta')
    store = ResultStore(path)
    assert set(store.load()) == {"a"}
    store.append({"id": "b", "status": "failed", "input_hash": "h2"})
    store.close()
    records = store.load()
    assert set(records) == {"a", "b"}
    assert is_finished(records["a"], "h", retry_failed=True)
    assert is_finished(records["b"], "h2", retry_failed=False)
    assert not is_finished(records["b"], "h2", retry_failed=True)
    assert not is_finished(records["a"], "other", retry_failed=False)


def test_ledger_projects_items_in_flight_and_survives_pickling() -> None:
    ledger = JobLedger(max_tokens=1000)
    assert ledger.refusal(in_flight=5) is None  # nothing known yet: only real spend counts
    for _ in range(3):
        ledger.record_call(200, None)
        ledger.record_item(200, None)
    assert ledger.refusal(in_flight=0) is None  # 600 + 200 <= 1000
    ledger.record_call(50, None)  # an item in flight has spent 50 of its expected 200
    assert ledger.refusal(in_flight=1) is None  # 650 + 150 + 200 = 1000
    assert "1000 tokens" in (ledger.refusal(in_flight=2) or "")  # 650 + 350 + 200 > 1000
    copy = pickle.loads(pickle.dumps(ledger))
    assert copy.refusal(in_flight=1) is None and copy.state() == ledger.state()
    priced = JobLedger(max_cost=0.01, prior_tokens=10, prior_cost=0.02, prior_items=1)
    assert "USD" in (priced.refusal(0) or "")


def test_cache_serves_only_complete_replies_that_fit_the_cap(tmp_path: Path) -> None:
    cache = SubCallCache(tmp_path / "c.sqlite")
    request = LMRequest([Message("user", "hi")], depth=1, max_tokens=100)
    cache.put("m", request, LMResponse("hello", TokenUsage(3, 20), finish_reason="stop"))
    cache.put(
        "m", LMRequest([Message("user", "cut")]), LMResponse("he", TokenUsage(3, 2), finish_reason="length")
    )
    hit = cache.get("m", request)
    assert hit is not None and hit.cached and hit.text == "hello" and hit.usage.total_tokens == 0
    assert cache.get("other-model", request) is None
    assert cache.get("m", LMRequest([Message("user", "hi")], depth=1, max_tokens=10)) is None  # 20 > 10
    assert cache.get("m", LMRequest([Message("user", "cut")])) is None
    cache.close()
    reopened = SubCallCache(tmp_path / "c.sqlite")  # survives the process: reruns hit too
    assert reopened.get("m", request) is not None
    reopened.close()
