"""FINAL given outside code finishes a run only when no code is still to run in the same reply."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_core import RLM
from rlm_core.guidance.parsing import parse_reply
from rlm_core.testing import ScriptedClient, repl


def test_a_final_line_announcing_code_below_is_not_a_final_answer() -> None:
    reply = parse_reply("FINAL(42) once the code below has run.\n" + repl("x = 6 * 7\nprint(x)"))
    assert reply.final_text is None
    assert reply.code_blocks == ["x = 6 * 7\nprint(x)\n"]


def test_a_final_line_after_the_code_still_finishes() -> None:
    reply = parse_reply(repl("print(1)") + "\nFINAL(42)")
    assert reply.final_text == "42"


def test_non_code_blocks_after_the_final_line_do_not_cancel_it() -> None:
    reply = parse_reply("FINAL(42)\n```output\n42\n```")
    assert reply.final_text == "42"


def test_the_run_executes_the_code_instead_of_ending_on_the_announcement() -> None:
    root = ScriptedClient(
        [
            "FINAL(the count) after the code below runs.\n" + repl("n = len(context)\nprint(n)"),
            "FINAL_VAR(n)",
        ]
    )
    result = RLM(backend=root).completion("abcdef")
    assert result.response == "6"
    assert result.iterations == 2


prose_lines = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="`"), max_size=40
).filter(lambda line: "FINAL" not in line)
code_bodies = st.sampled_from(["print(1)", "x = context[:3]", "y = llm_query('q')", "n = len(context)"])
other_blocks = st.sampled_from(["```output\n42\n```", "```text\nnot code\n```", "```bash\nls\n```"])
pieces = st.lists(
    st.one_of(
        prose_lines.map(lambda line: ("prose", line)),
        code_bodies.map(lambda code: ("code", repl(code))),
        other_blocks.map(lambda block: ("other", block)),
    ),
    max_size=6,
)


@given(before=pieces, after=pieces, answer=st.from_regex(r"[A-Za-z0-9 .,]{1,20}", fullmatch=True))
@settings(max_examples=300)
def test_final_outside_code_counts_exactly_when_no_code_follows_it(
    before: list[tuple[str, str]], after: list[tuple[str, str]], answer: str
) -> None:
    parts = [text for _, text in before] + [f"FINAL({answer})"] + [text for _, text in after]
    reply = parse_reply("\n".join(parts))
    code_after = any(kind == "code" for kind, _ in after)
    if code_after:
        assert reply.final_text is None
    else:
        assert reply.final_text == answer.strip()
    expected_blocks = sum(1 for kind, _ in before + after if kind == "code")
    assert len(reply.code_blocks) == expected_blocks


@given(st.text(max_size=400))
@settings(max_examples=300)
def test_parsing_never_raises_on_arbitrary_text(text: str) -> None:
    reply = parse_reply(text)
    assert isinstance(reply.prose, str)
