"""A contract test suite for strategies: do no harm, and never speak for the model.

Subclass it in a strategy plugin's tests (``make_strategy`` returns the strategy, or None for a run
without one)::

    from rlm_core.testing.strategy_contract import StrategyContract

    class TestMyStrategy(StrategyContract):
        def make_strategy(self):
            return MyStrategy()

Every case is a question outside any one task family (code, legal text, JSON records, a German
question, an absent answer, a prose answer, a printed label, ``FINAL(expr)`` after a NameError, ...)
with scripted correct replies. With the strategy on, each answer must come back exactly, from the
model's own finish, on the turn the model gave it; and every ``assistant`` message the engine sent
must be a reply the model wrote. Each case runs under a small and a capable model name, which must
make no difference.
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import attrs
import pytest

from rlm_core.testing.scripted import ScriptedClient, repl
from rlm_core.types import LMRequest, RLMChatCompletion, StopReason


@attrs.define(frozen=True)
class HarmCase:
    """A question, the model's scripted replies, and the answer its last reply gives."""

    name: str
    context: Any
    question: str
    replies: tuple[str, ...]
    answer: str
    source: str = "final"


DIJKSTRA = """\
import heapq

def shortest(graph, start):
    dist = {start: 0}
    queue = [(0, start)]
    while queue:
        d, node = heapq.heappop(queue)
        for nxt, w in graph[node]:
            if d + w < dist.get(nxt, float("inf")):
                dist[nxt] = d + w
                heapq.heappush(queue, (d + w, nxt))
    return dist
"""
LEASE = (
    "12. Risk of loss. From the delivery date, the Tenant bears all risk of loss of or damage to the "
    "Equipment, whatever its cause, and the Landlord is released from it.\n"
    "13. Insurance. The Tenant shall insure the Equipment at its full replacement value.\n"
)
RECORDS = [
    {"id": 1, "status": "open", "owner": "ana"},
    {"id": 2, "status": "closed", "owner": "piotr"},
    {"id": 3, "status": "open", "owner": "lea"},
]
BERICHT = "Bericht 7: Die Prüfung in Graz wurde am 3. Mai von Jana Novak unterschrieben.\n" * 3
LOG = "2026-11-02 10:00 INFO start\n2026-11-02 10:01 ERROR disk full\n2026-11-02 10:02 INFO retry\n"

CASES: tuple[HarmCase, ...] = (
    HarmCase(
        "code question",
        DIJKSTRA,
        "What does this code do?",
        (repl("print(context[:400])"), 'FINAL("It computes shortest paths with the algorithm of Dijkstra")'),
        "It computes shortest paths with the algorithm of Dijkstra",
    ),
    HarmCase(
        "legal text",
        LEASE,
        "Under the lease, who bears the risk of loss?",
        (repl("print([l for l in context.splitlines() if 'risk' in l.lower()])"), 'FINAL("The tenant")'),
        "The tenant",
    ),
    HarmCase(
        "json records",
        RECORDS,
        "How many records are open?",
        (repl("print(sum(1 for r in context if r['status'] == 'open'))"), "FINAL(2)"),
        "2",
    ),
    HarmCase(
        "german question",
        BERICHT,
        "Wer hat den Bericht über die Prüfung in Graz unterschrieben?",
        (repl("print(context.splitlines()[0])"), "FINAL(Jana Novak)"),
        "Jana Novak",
    ),
    HarmCase(
        "absent answer",
        LEASE,
        "What is the monthly rent?",
        (repl("print('rent' in context.lower())"), 'FINAL("It is not mentioned")'),
        "It is not mentioned",
    ),
    HarmCase(
        "prose answer",
        LEASE,
        "Summarise clause 12 in one sentence.",
        (
            repl("print(context.splitlines()[0])"),
            'FINAL("From delivery, the tenant carries every risk of loss or damage.")',
        ),
        "From delivery, the tenant carries every risk of loss or damage.",
    ),
    HarmCase(
        "printed label",
        LOG,
        "What is the level of the line about the disk?",
        (
            repl('print("ERROR")'),
            repl("print([l for l in context.splitlines() if 'disk' in l])"),
            "FINAL(ERROR)",
        ),
        "ERROR",
    ),
    HarmCase(
        "FINAL(expr) after a NameError",
        "x\ny\nx\nx\n",
        "How many lines are x?",
        (
            repl("FINAL(len(hits))"),
            repl("hits = [l for l in context.splitlines() if l == 'x']\nFINAL(len(hits))"),
        ),
        "3",
    ),
    HarmCase("answer before any code", "abc", "Reply 42.", ("FINAL(42)",), "42"),
    HarmCase(
        "FINAL_VAR",
        "Lisbon is the city.",
        "Which city?",
        (repl("city = context.split()[0]"), "FINAL_VAR(city)"),
        "Lisbon",
        "final_var",
    ),
    HarmCase(
        "answer dict",
        "yes or no: yes",
        "Yes or no?",
        (repl("answer['content'] = context.split()[-1]\nanswer['ready'] = True"),),
        "yes",
        "answer_dict",
    ),
)

MODEL_NAMES = ("qwen2.5-coder-1.5b", "gpt-5")


def scripted_model(replies: tuple[str, ...], model_name: str) -> ScriptedClient:
    """A model that gives ``replies`` in order to its turns, and picks the first option whenever a
    strategy asks it to choose (``Choose``), without using up a reply."""
    script = list(replies)
    used = 0

    def reply(request: LMRequest) -> str:
        nonlocal used
        if request.purpose == "choose" and request.response_schema is not None:
            options = request.response_schema["properties"]["answer"]["enum"]
            return json.dumps({"answer": options[0]})
        text = script[min(used, len(script) - 1)]
        used += 1
        return text

    return ScriptedClient(reply, model_name=model_name)


def turns_asked(client: ScriptedClient) -> int:
    """The model calls that were turns of the run (not a strategy's choice questions)."""
    return sum(1 for request in client.requests if request.purpose != "choose")


def assert_model_words_are_the_models(requests: list[LMRequest], replies: tuple[str, ...]) -> None:
    """Every assistant message the engine sent is, word for word, one of the model's replies."""
    for request in requests:
        for message in request.messages:
            if message.role == "assistant":
                assert message.author == "model", f"an assistant message authored {message.author!r}"
                assert message.content in replies, f"sent as the model's turn, never written by it: {message}"


class StrategyContract(abc.ABC):
    """Do-no-harm and provenance for one strategy. Override :meth:`make_strategy`."""

    cases: ClassVar[tuple[HarmCase, ...]] = CASES

    @abc.abstractmethod
    def make_strategy(self) -> Any:
        """The strategy under test (an object or a registered name), or None for no strategy."""

    def run_case(self, case: HarmCase, model_name: str) -> tuple[RLMChatCompletion, ScriptedClient]:
        from rlm_core import RLM

        root = scripted_model(case.replies, model_name)
        with RLM(backend=root, strategy=self.make_strategy(), max_iterations=10) as rlm:
            result = rlm.completion(case.context, root_prompt=case.question)
        return result, root

    @pytest.mark.parametrize("model_name", MODEL_NAMES)
    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_the_models_answer_comes_back_exactly_on_its_turn(self, case: HarmCase, model_name: str) -> None:
        result, root = self.run_case(case, model_name)
        assert result.response == case.answer
        assert result.stop_reason is StopReason.FINAL
        assert result.answer_source == case.source
        # On the turn the model gave it: every scripted reply was asked for, and no more.
        asked = turns_asked(root)
        assert asked == len(case.replies), f"{asked} model turns for {len(case.replies)} replies"

    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    def test_nothing_is_sent_as_the_models_words(self, case: HarmCase) -> None:
        _, root = self.run_case(case, MODEL_NAMES[0])
        assert_model_words_are_the_models(root.requests, case.replies)
        for request in root.requests:
            for message in request.messages:
                assert message.author, f"a message without an author: {message}"

    def test_a_final_whose_expression_raised_is_never_an_answer(self) -> None:
        from rlm_core import RLM

        root = scripted_model((repl("FINAL(len(hits))"),), MODEL_NAMES[0])
        with RLM(backend=root, strategy=self.make_strategy(), max_iterations=3) as rlm:
            result = rlm.completion("a\nb", root_prompt="How many hits?")
        assert result.response != "len(hits)"
        assert result.stop_reason is not StopReason.FINAL
        assert result.answer_source != "final"
