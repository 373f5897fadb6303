"""The engine's small-model guards, with scripted models: each fires on the failure it targets and
stays silent for a capable model's normal replies."""

from __future__ import annotations

import contextlib
import io

import pytest

from rlm_core import RLM
from rlm_core.errors import ProviderError
from rlm_core.guidance import answer_check, first_search, follow_up, prompts
from rlm_core.testing import ScriptedClient
from rlm_core.types import LMRequest, StopReason

REPORTS = "\n\n".join(
    f"Report #{n}\nSite: {city}\nSigned off by: {who}\nPressure: {bar} bar"
    for n, (city, who, bar) in enumerate(
        [("Lyon", "Ana Berg", "2.10"), ("Tarragona", "Marta Ilves", "4.72"), ("Porto", "Karl Dahl", "3.05")]
    )
)
QUESTION = "Which engineer signed off on the Tarragona inspection, and what was the pressure?"


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


def user_text(request: LMRequest) -> str:
    return "\n".join(m.content for m in request.messages if m.role == "user")


def last_user(request: LMRequest) -> str:
    return next(m.content for m in reversed(request.messages) if m.role == "user")


# -- the query's key words and the engine's first search ------------------------------------------


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("Which engineer signed off on the Tarragona plant inspection?", ["Tarragona"]),
        ("What is the launch code for project Gecko-472?", ["Gecko-472"]),
        ("How many ERROR lines are there for the service 'payments'?", ["ERROR", "payments"]),
        ("In which room does the manager of Alma Dahl work?", ["Alma Dahl"]),
        ("Summarise the document.", []),
        ("how many words are there?", []),
    ],
)
def test_key_terms_are_names_ids_caps_and_quoted_words(query: str, terms: list[str]) -> None:
    assert first_search.key_terms(query) == terms


def test_search_code_prints_whole_short_records_and_counts_when_asked() -> None:
    code = first_search.search_code(["Tarragona"], REPORTS)
    out: list[str] = []
    exec(code, {"context": REPORTS, "print": lambda *a: out.append(" ".join(map(str, a)))})
    assert out == [REPORTS.split("\n\n")[1]]  # the whole record, not just the matching line
    logs = "\n".join(f"ERROR [{s}] boom" for s in ["a", "b", "a"])
    code = first_search.search_code(["ERROR", "a"], logs, counting=True)
    out.clear()
    exec(code, {"context": logs, "print": lambda *a: out.append(" ".join(map(str, a)))})
    assert out[-1] == "Number of matching lines: 2"


def test_small_model_gets_a_first_search_for_the_query_key_words() -> None:
    root = ScriptedClient(["FINAL(Marta Ilves, 4.72 bar)"], model_name="qwen2.5-coder-1.5b")
    result = RLM(backend=root).completion(REPORTS, root_prompt=QUESTION)
    assert result.response == "Marta Ilves, 4.72 bar" and result.iterations == 1
    first = root.requests[0]
    # shown as the model's own first turn, followed by its output and the question again
    assert [m.role for m in first.messages] == ["system", "user", "assistant", "user"]
    assert "'Tarragona' in record" in first.messages[2].content
    assert "Signed off by: Marta Ilves" in first.messages[3].content
    assert QUESTION in first.messages[3].content


def test_capable_model_gets_no_first_search() -> None:
    root = ScriptedClient([repl("print(len(context))"), "FINAL(done)"], model_name="gpt-big")
    RLM(backend=root).completion(REPORTS, root_prompt=QUESTION)
    assert [m.role for m in root.requests[0].messages] == ["system", "user"]
    assert "Marta Ilves" not in user_text(root.requests[0])
    assert last_user(root.requests[1]).endswith(prompts.CONTINUE_PROMPT)


def test_no_first_search_without_key_words_or_a_text_context() -> None:
    root = ScriptedClient([repl("print(1)"), "FINAL(x)"], model_name="qwen2.5-coder-1.5b")
    RLM(backend=root).completion(REPORTS, root_prompt="summarise this")
    assert [m.role for m in root.requests[0].messages] == ["system", "user"]
    root = ScriptedClient([repl("print(1)"), "FINAL(x)"], model_name="qwen2.5-coder-1.5b")
    RLM(backend=root).completion({"Tarragona": 1}, root_prompt="What about Tarragona?")
    assert [m.role for m in root.requests[0].messages] == ["system", "user"]


def test_small_model_is_reminded_of_the_question_every_turn() -> None:
    root = ScriptedClient([repl("print('a')"), repl("print('b')"), "FINAL(b)"])
    RLM(backend=root, prompt_style="small").completion("abc", root_prompt="what is it?")
    for request in root.requests[1:]:
        assert "The question is: what is it?" in last_user(request)


# -- repeated identical blocks --------------------------------------------------------------------


def test_third_identical_block_with_identical_output_is_not_run() -> None:
    runs: list[int] = []

    def tick() -> None:
        """Counts runs."""
        runs.append(1)

    block = repl("tick()\nprint(context[:3])")
    root = ScriptedClient([block, block, block, "FINAL(abc)"])
    result = RLM(backend=root, custom_tools={"tick": tick}).completion("abcdef")
    assert result.response == "abc"
    assert "ran this exact code before" in last_user(root.requests[2])
    assert "did not run it a third time" in last_user(root.requests[3])
    assert len(runs) == 2


def test_blocks_that_change_in_between_are_run_again() -> None:
    a, b = repl("print(len(context))"), repl("print(context[:2])")
    root = ScriptedClient([a, a, b, a, "FINAL(done)"])
    RLM(backend=root).completion("abcdef")
    assert not any("did not run" in last_user(r) for r in root.requests)
    assert "Output:\n```output\n6" in last_user(root.requests[4])


def test_escalation_offers_the_key_word_search() -> None:
    block = repl("print(context[:3])")
    root = ScriptedClient([block, block, block, "FINAL(Marta Ilves, 4.72 bar)"])
    RLM(backend=root).completion(REPORTS, root_prompt=QUESTION)
    assert "did not run it a third time" in last_user(root.requests[3])
    assert "'Tarragona' in record" in last_user(root.requests[3])


# -- an llm_query prompt larger than the sub-model's window ---------------------------------------


def test_oversized_sub_prompt_gets_a_note_with_the_size_that_fits() -> None:
    too_long = ProviderError(
        "HTTP 400: request (33218 tokens) exceeds the available context size (8192 tokens)"
    )
    sub = ScriptedClient(["short"], model_name="sub", fail_on={0: too_long}, context_window=8192)
    root = ScriptedClient([repl("llm_query('q: ' + context)"), "FINAL(x)"])
    RLM(backend=root, other_backends=[sub]).completion("abc" * 100)
    note = last_user(root.requests[1])
    assert "too long for the helper model" in note and "17,203 characters" in note


def test_working_or_otherwise_failing_sub_calls_get_no_size_note() -> None:
    sub = ScriptedClient(["short"], model_name="sub", fail_on={1: ProviderError("HTTP 500: server error")})
    root = ScriptedClient([repl("print(llm_query('q'))"), repl("llm_query('q')"), "FINAL(x)"])
    RLM(backend=root, other_backends=[sub]).completion("abc")
    assert not any("too long for the helper" in last_user(r) for r in root.requests)


# -- two-part questions ---------------------------------------------------------------------------


def test_one_part_answer_to_a_two_part_question_is_asked_to_complete_once() -> None:
    root = ScriptedClient(["FINAL(Marta Ilves)", "FINAL(Marta Ilves, 4.72 bar)"])
    result = RLM(backend=root, prompt_style="small").completion(REPORTS, root_prompt=QUESTION)
    assert result.response == "Marta Ilves, 4.72 bar"
    assert "answers only one part" in last_user(root.requests[1])
    # asked once only: a second short answer is accepted
    root = ScriptedClient(["FINAL(Marta Ilves)", "FINAL(Marta Ilves)"])
    result = RLM(backend=root, prompt_style="small").completion(REPORTS, root_prompt=QUESTION)
    assert result.response == "Marta Ilves" and root.calls == 2


def test_complete_answers_and_capable_models_are_not_asked_again() -> None:
    root = ScriptedClient(["FINAL(Marta Ilves, 4.72 bar)"])
    RLM(backend=root, prompt_style="small").completion(REPORTS, root_prompt=QUESTION)
    assert root.calls == 1
    root = ScriptedClient([repl("print(1)"), "FINAL(Marta Ilves)"], model_name="gpt-big")
    assert RLM(backend=root).completion(REPORTS, root_prompt=QUESTION).response == "Marta Ilves"
    assert root.calls == 2
    single = "What is the pressure at Tarragona?"
    root = ScriptedClient(["FINAL(4.72 bar)"])
    RLM(backend=root, prompt_style="small").completion(REPORTS, root_prompt=single)
    assert root.calls == 1


# -- short outputs for small models ---------------------------------------------------------------


def test_small_model_root_calls_are_capped_and_see_shorter_output() -> None:
    root = ScriptedClient([repl("print('x' * 9000)"), "FINAL(ok)"])
    result = RLM(backend=root, prompt_style="small").completion("abc")
    assert result.stop_reason is StopReason.FINAL
    assert all(r.max_tokens == 400 for r in root.requests)
    assert last_user(root.requests[1]).count("x") < 4_100


def test_capable_model_root_calls_are_uncapped_with_full_output() -> None:
    root = ScriptedClient([repl("print('x' * 9000)"), "FINAL(ok)"], model_name="gpt-big")
    RLM(backend=root).completion("abc")
    assert all((r.max_tokens or 10**9) > 400 for r in root.requests)  # only the budget's cap
    assert last_user(root.requests[1]).count("x") >= 9000


def test_guards_off_means_none_of_the_small_model_help() -> None:
    block = repl("print(context[:3])")
    root = ScriptedClient([block, block, block, "FINAL(Marta Ilves)"], model_name="qwen2.5-coder-1.5b")
    result = RLM(backend=root, small_model_guards=False).completion(REPORTS, root_prompt=QUESTION)
    assert result.response == "Marta Ilves"
    assert [m.role for m in root.requests[0].messages] == ["system", "user"]
    assert not any("did not run" in last_user(r) for r in root.requests)
    assert all((r.max_tokens or 10**9) > 400 for r in root.requests)


# -- questions about meaning, lower-case questions ------------------------------------------------

INBOX = "\n".join(
    [
        "m1 | the kettle broke after a day, I want my money back",
        "m2 | thanks, the refund policy page answered my question",
        "m3 | please return what I paid for the lamp",
        "m4 | love the new colours",
    ]
)
LOG = "\n".join(
    [
        "10:00 ERROR [billing] timeout after 30 ms",
        "10:01 ERROR [billing-worker] disk quota exceeded",
        "10:02 INFO [billing] error budget at 3%",
        "10:03 ERROR [billing] upstream returned 503",
        "10:04 INFO [auth] health check passed",
        "10:05 WARN [search] slow response",
        "10:06 INFO [search] served",
        "10:07 INFO [mailer] served",
    ]
)


def test_a_question_about_meaning_starts_by_showing_the_items() -> None:
    root = ScriptedClient(["FINAL(2)"], model_name="qwen2.5-coder-1.5b")
    RLM(backend=root).completion(INBOX, root_prompt="how many of these messages ask for their money back?")
    first = root.requests[0].messages
    assert "items = [item for item in context.splitlines()" in first[2].content
    assert "```output\n4\nm1 | the kettle" in first[3].content
    assert "llm_query_batched" in first[0].content and "choices=" in first[0].content


def test_lower_case_questions_get_a_whole_word_search_in_the_texts_spelling() -> None:
    assert first_search.key_terms("how many error lines does billing have?", LOG) == ["ERROR", "billing"]
    root = ScriptedClient(["FINAL(2)"], model_name="qwen2.5-coder-1.5b")
    RLM(backend=root).completion(LOG, root_prompt="how many error lines does billing have?")
    shown = root.requests[0].messages[3].content
    assert "Number of matching lines: 2" in shown and "billing-worker" not in shown


# -- answers checked against the question ---------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "first", "expected"),
    [
        ("How many ERROR lines does auth have?", "FINAL(the auth service)", "has no number"),
        ("What is the room code of Ana Berg's manager?", "FINAL(Karl Dahl)", "has no digits"),
        ("What is the launch code for project Heron?", "FINAL(No launch code found)", "not found"),
    ],
)
def test_an_answer_of_the_wrong_shape_gets_one_specific_chance(
    question: str, first: str, expected: str
) -> None:
    root = ScriptedClient([repl("print('looked')"), first, first])
    result = RLM(backend=root, prompt_style="small").completion("abc", root_prompt=question)
    assert expected in last_user(root.requests[2])
    assert root.calls == 3 and result.stop_reason is StopReason.FINAL  # asked once, then accepted


def test_a_count_over_lines_that_break_the_question_gets_one_chance() -> None:
    loose = repl("for l in context.splitlines():\n    if 'billing' in l and 'ERROR' in l:\n        print(l)")
    root = ScriptedClient([loose, "FINAL(3)", "FINAL(2)"])
    question = "How many ERROR lines does billing have?"
    result = RLM(backend=root, prompt_style="small", small_model_guards=True).completion(
        LOG, root_prompt=question
    )
    note = last_user(root.requests[2])
    assert "do not meet the question's conditions" in note and "billing-worker" in note
    assert result.response == "2"


def test_answers_of_the_right_shape_and_capable_models_are_not_checked() -> None:
    for question, answer in [
        ("How many ERROR lines does auth have?", "FINAL(0)"),
        ("What is the room code of Ana Berg's manager?", "FINAL(B-212)"),
        ("how many error lines does billing have?", "FINAL(2)"),
    ]:
        root = ScriptedClient([repl("print('looked')"), answer])
        RLM(backend=root, prompt_style="small").completion(LOG, root_prompt=question)
        assert root.calls == 2
    loose = repl("for l in context.splitlines():\n    if 'billing' in l:\n        print(l)")
    root = ScriptedClient([loose, "FINAL(the billing service)"], model_name="gpt-big")
    result = RLM(backend=root).completion(LOG, root_prompt="How many ERROR lines does billing have?")
    assert root.calls == 2 and result.response == "the billing service"


def test_lower_case_names_and_places_are_spelled_as_the_text_spells_them() -> None:
    text = "Tomas Brandt reports to Ana Berg.\nAna Berg lives in Brno.\nOffice code for Brno: BR-111"
    question = "what is the office code of the city where tomas brandt's manager lives?"
    assert first_search.key_terms(question, text) == ["Tomas Brandt"]
    assert first_search.key_terms("which office is in brno?", text) == ["Brno"]
    assert first_search.key_terms(question) == []  # no text to learn the spelling from


def test_words_of_a_negated_clause_are_not_required_by_the_first_search() -> None:
    log = "\n".join(["ERROR [payments] boom", "ERROR [payments-worker] x", "INFO [payments-cron] ok"] * 3)
    question = "count ERROR lines of payments only, not payments-worker or payments-cron"
    assert first_search.key_terms(question, log) == ["ERROR", "payments"]
    assert first_search.without_negated("who, except Ana Berg, signed?").split() == ["who,", ",", "signed?"]


def test_a_small_model_stuck_on_one_block_gets_a_final_answer_turn() -> None:
    block = repl("print(context[:3])")
    root = ScriptedClient([block, block, "FINAL(abc)"])
    result = RLM(backend=root, prompt_style="small").completion("abcdef", root_prompt="what is it?")
    assert result.response == "abc" and result.iterations == 2  # the block ran once
    assert "You sent the same code again" in last_user(root.requests[2])
    assert root.requests[2].purpose == "extract"


# -- the next link of a look-up chain --------------------------------------------------------------

CHAIN = "\n".join(
    [
        "Tomas Brandt reports to Ana Berg.",
        "Lea Holm reports to Ana Berg.",
        "Ana Berg visited Porto in spring.",
        "Ana Berg lives in Brno.",
        "Karl Dahl lives in Brno.",
        "Office code for Brno: BR-111",
        "Office code for Porto: PO-222",
    ]
)
CHAIN_QUESTION = "What is the office code of the city where Tomas Brandt's manager lives?"


def test_the_linked_name_is_the_new_name_on_the_line_that_fits_the_question() -> None:
    output = "\n".join(CHAIN.splitlines()[:4])
    searched = follow_up.searched_terms(["if 'Ana Berg' in line:", 'x = "Tomas Brandt"'])
    assert searched == {"Ana Berg", "Tomas Brandt"}
    # "lives" is a word of the question: that line's new name comes first.
    assert follow_up.linked_names(CHAIN_QUESTION, output, searched)[0] == "Brno"
    assert follow_up.linked_names(CHAIN_QUESTION, "Nothing in common here", searched) == []


def test_the_follow_up_search_keeps_the_lines_with_the_question_words() -> None:
    found = follow_up.follow_up("brno", CHAIN_QUESTION, CHAIN)
    assert found is not None and found.term == "Brno"  # spelled as the text spells it
    namespace = {"context": CHAIN}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(found.code, namespace)
    assert printed.getvalue() == "Office code for Brno: BR-111\n"
    assert follow_up.follow_up("Bern", CHAIN_QUESTION, CHAIN) is None  # not in the text
    assert follow_up.follow_up("Brn", CHAIN_QUESTION, CHAIN) is None  # only inside a longer word


def test_a_name_given_as_the_answer_to_a_code_question_is_followed_for_the_model() -> None:
    root = ScriptedClient([repl("print('Ana Berg lives in Brno.')"), "FINAL(Brno)", "FINAL(BR-111)"])
    result = RLM(backend=root, prompt_style="small").completion(CHAIN, root_prompt=CHAIN_QUESTION)
    note = last_user(root.requests[2])
    assert "FINAL(Brno) is a name found on the way" in note and "Office code for Brno: BR-111" in note
    assert result.response == "BR-111" and root.calls == 3


def test_a_search_sent_again_with_the_next_name_printed_is_followed_for_the_model() -> None:
    block = repl("for line in context.splitlines():\n    if 'Ana Berg' in line:\n        print(line)")
    root = ScriptedClient([block, block, "FINAL(BR-111)"])
    result = RLM(backend=root, prompt_style="small").completion(CHAIN, root_prompt=CHAIN_QUESTION)
    note = last_user(root.requests[2])
    assert "search for Brno, and I ran that search" in note and "Office code for Brno: BR-111" in note
    assert result.response == "BR-111"


def test_a_word_of_the_question_is_not_a_new_link() -> None:
    output = "Project otter-81: access code 10146.\nThe access code for project otter-810 is 57442."
    searched = {"otter-81"}
    names = follow_up.linked_names("give me the access code of project otter-81.", output, searched)
    assert "Project" not in names


def test_capable_models_get_no_follow_up_search() -> None:
    root = ScriptedClient([repl("print('Ana Berg lives in Brno.')"), "FINAL(Brno)"], model_name="gpt-big")
    result = RLM(backend=root).completion(CHAIN, root_prompt=CHAIN_QUESTION)
    assert result.response == "Brno" and root.calls == 2


def test_a_word_that_only_opens_a_sentence_does_not_break_the_question() -> None:
    text = "\n".join(
        [
            "Project otter-81: access code 10146.",
            "The access code for project otter-810 is 57442.",
            "The access code for project heron-12 is 11111.",
            "The access code for project lynx-40 is 22222.",
        ]
    )
    question = "give me the access code of project otter-81."
    lines, words = answer_check.loose_matches(question, text, text)
    assert lines == ["The access code for project otter-810 is 57442."] and words == ["otter-81"]
    root = ScriptedClient([repl("print(context)"), "FINAL(10146)"])
    result = RLM(backend=root, prompt_style="small").completion(text, root_prompt=question)
    assert result.response == "10146" and root.calls == 2
    assert answer_check.loose_matches("how many ERROR lines?", "x ERROR y", "retrying after error")[0]


def test_a_block_that_only_prints_a_line_already_shown_is_taken_as_the_answer() -> None:
    search = repl("for line in context.splitlines():\n    if 'Brno' in line:\n        print(line)")
    quote = repl('print("Office code for Brno: BR-111")')
    root = ScriptedClient([search, quote, quote, quote])
    result = RLM(backend=root, prompt_style="small").completion(CHAIN, root_prompt=CHAIN_QUESTION)
    assert result.response == "Office code for Brno: BR-111" and root.calls == 2
    # Text not seen in any output is code like any other: it runs.
    made_up = repl('print("Office code for Brno: BR-999")')
    root = ScriptedClient([made_up, "FINAL(BR-111)"])
    result = RLM(backend=root, prompt_style="small").completion(CHAIN, root_prompt=CHAIN_QUESTION)
    assert "BR-999" in last_user(root.requests[1]) and result.response == "BR-111"


def test_a_quoted_line_ends_a_run_that_ran_out_of_turns() -> None:
    search = repl("for line in context.splitlines():\n    if 'Brno' in line:\n        print(line)")
    root = ScriptedClient([search, repl('print("Office code for Brno: BR-111")')])
    result = RLM(backend=root, prompt_style="small", max_iterations=1).completion(
        CHAIN, root_prompt=CHAIN_QUESTION
    )
    assert "You have run out of turns" in last_user(root.requests[1])
    assert result.response == "Office code for Brno: BR-111"


def test_capable_models_quoting_a_line_run_it_as_code() -> None:
    search = repl("for line in context.splitlines():\n    if 'Brno' in line:\n        print(line)")
    quote = repl('print("Office code for Brno: BR-111")')
    root = ScriptedClient([search, quote, "FINAL(BR-111)"], model_name="gpt-big")
    result = RLM(backend=root).completion(CHAIN, root_prompt=CHAIN_QUESTION)
    assert result.response == "BR-111" and root.calls == 3


def test_the_short_sub_call_cap_never_raises_the_cap_the_user_gave_the_sub_client() -> None:
    code = repl("print(llm_query('one item?'), llm_query('other item?'))")
    for client_cap, expected in [(50, 50), (4000, 200), (None, 200)]:
        sub = ScriptedClient(["a", "b"], model_name="sub")
        sub.max_tokens = client_cap  # type: ignore[attr-defined]
        root = ScriptedClient([code, "FINAL(done)"], model_name="qwen2.5-coder-1.5b")
        RLM(backend=root, other_backends=[sub]).completion("x", root_prompt="q")
        assert [r.max_tokens for r in sub.requests] == [expected, expected]


@pytest.mark.parametrize(
    ("block", "answer"),
    [("FINAL(GR-348)", "GR-348"), ("FINAL(Marta Ilves, 4.72 bar)", "Marta Ilves, 4.72 bar")],
)
def test_final_in_code_with_bare_text_takes_the_text(block: str, answer: str) -> None:
    root = ScriptedClient([repl("print(context[:5])"), repl(block)])
    result = RLM(backend=root).completion("GR-348 and more", root_prompt="which code?")
    assert result.response == answer and root.calls == 2


def test_final_of_a_missing_variable_stays_an_error_the_model_sees() -> None:
    root = ScriptedClient([repl("print(context[:5])"), repl("FINAL(result)"), "FINAL(done)"])
    result = RLM(backend=root).completion("GR-348 and more", root_prompt="which code?")
    assert "NameError" in last_user(root.requests[2]) and result.response == "done"
    off = ScriptedClient([repl("FINAL(GR-348)"), "FINAL(done)"])
    assert RLM(backend=off, small_model_guards=False).completion("x").response == "done"


def test_a_line_sharing_only_a_searched_name_with_the_question_is_no_link() -> None:
    question = "Find the manager of Lidia Novak, then the city the manager lives in: what is its office code?"
    output = "Bruno Novak reports to Oskar Brandt.\nOskar Brandt lives in Lisbon."
    assert follow_up.linked_names(question, output, {"Lidia Novak", "Oskar Brandt"})[0] == "Lisbon"
    text = "Office code for Lisbon: LI-385\nLidia Novak lives in Lisbon."
    found = follow_up.follow_up("Lisbon", question, text)
    assert found is not None and "novak" not in found.code and "'office' in line.lower()" in found.code


def test_a_small_model_sending_its_sub_call_block_again_at_once_gets_the_final_answer_turn() -> None:
    block = repl(
        "answers = [llm_query('Is it a refund? ' + m) for m in ['a', 'b']]\nprint(answers.count('yes'))"
    )
    root = ScriptedClient([block, block, "FINAL(1)"], model_name="qwen2.5-coder-1.5b")
    sub = ScriptedClient(["yes", "no"], model_name="sub")
    result = RLM(backend=root, other_backends=[sub]).completion("a\nb", root_prompt="how many refunds?")
    assert result.response == "1" and sub.calls == 2  # the sub-calls ran once
    assert "You sent the same code again" in last_user(root.requests[2])
    capable = ScriptedClient([block, block, "FINAL(1)"], model_name="gpt-big")
    sub = ScriptedClient(["yes", "no", "yes", "no"], model_name="sub")
    RLM(backend=capable, other_backends=[sub]).completion("a\nb", root_prompt="how many refunds?")
    assert sub.calls == 4  # a capable model's repeat runs


def test_a_link_on_a_line_in_other_words_is_followed_when_its_lines_are_new() -> None:
    text = "Milan Ortiz once worked in Brno.\nMilan Ortiz is based in Cork.\nOffice code for Cork: CO-840"
    question = "Milan Ortiz lives somewhere; give the office code for that city."
    block = repl(
        "for line in context.splitlines():\n    if 'Milan Ortiz' in line and 'Cork' in line:\n        print(line)"
    )
    root = ScriptedClient([block, block, "FINAL(CO-840)"])
    result = RLM(backend=root, prompt_style="small").completion(text, root_prompt=question)
    assert "Office code for Cork: CO-840" in last_user(root.requests[2]) and result.response == "CO-840"


def test_final_written_in_other_cases_is_a_final_answer() -> None:
    root = ScriptedClient([repl("print(context)"), "Final(Cork)"])
    assert RLM(backend=root).completion("Cork").response == "Cork"


def test_a_link_shown_before_a_search_that_printed_nothing_is_followed() -> None:
    empty = repl(
        "for line in context.splitlines():\n    if 'Ana Berg' in line and 'office code' in line:\n        print(line)"
    )
    root = ScriptedClient([empty, empty, "FINAL(BR-111)"])
    question = "What is the office code of the city where Ana Berg lives?"
    result = RLM(backend=root, prompt_style="small").completion(CHAIN, root_prompt=question)
    assert "Office code for Brno: BR-111" in last_user(root.requests[2]) and result.response == "BR-111"


def test_the_link_comes_from_the_latest_search_before_earlier_ones() -> None:
    text = "\n".join(
        [
            "Tomas Brandt lives in Porto.",
            "Tomas Brandt reports to Ana Berg.",
            "Ana Berg lives in Brno.",
            "Office code for Brno: BR-111",
            "Office code for Porto: PO-222",
        ]
    )
    block = repl("for line in context.splitlines():\n    if 'Ana Berg' in line:\n        print(line)")
    root = ScriptedClient([block, block, "FINAL(BR-111)"])
    RLM(backend=root, prompt_style="small").completion(text, root_prompt=CHAIN_QUESTION)
    note = last_user(root.requests[2])
    assert "search for Brno" in note and "PO-222" not in note


def test_no_link_is_followed_past_a_printed_line_that_answers_the_question() -> None:
    question = "What is the office code of the city where Ana Berg lives?"
    output = "Karl Dahl lives in Brno.\nOffice code for Brno: BR-111\nLea Holm is based in Brno."
    assert follow_up.linked_names(question, output, {"Ana Berg", "Brno"}) == ["BR-111", "Brno"]
    block = repl("for line in context.splitlines():\n    if 'Brno' in line:\n        print(line)")
    root = ScriptedClient([block, block, "FINAL(BR-111)"])
    result = RLM(backend=root, prompt_style="small").completion(CHAIN, root_prompt=question)
    assert root.requests[2].purpose == "extract" and result.response == "BR-111"


def test_links_the_model_already_passed_are_not_followed_again() -> None:
    text = (
        "Irene Ilves is based in Brno.\nIrene Ilves visited Oslo in spring.\nOffice code for Brno: BR-314\n"
    )
    text += "Office code for Oslo: OS-680"
    question = "Irene Ilves lives somewhere; give the office code for that city."
    block = repl("for line in context.splitlines():\n    if 'Brno' in line:\n        print(line)")
    root = ScriptedClient([block, block, "FINAL(BR-314)"])
    result = RLM(backend=root, prompt_style="small").completion(text, root_prompt=question)
    assert root.requests[2].purpose == "extract" and result.response == "BR-314"
