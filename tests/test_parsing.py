"""Reply parsing: code blocks and FINAL answers, on fixed cases and arbitrary text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rlm_core.guidance.parsing import parse_reply


def test_repl_and_python_fences_are_code_other_languages_are_not() -> None:
    reply = parse_reply(
        "Look:\n```repl\nprint(1)\n```\nthen\n```python\nx = 2\n```\n```output\n42\n```\n```bash\nls\n```"
    )
    assert reply.code_blocks == ["print(1)\n", "x = 2\n"]
    # a model-written fake "output" block is neither run nor read as the model's own words
    assert "42" not in reply.prose and reply.prose.startswith("Look:")
    assert reply.final_text is None


def test_untagged_fence_runs_only_when_it_is_repl_code() -> None:
    assert parse_reply("```\nprint(context[:10])\n```").code_blocks == ["print(context[:10])\n"]
    assert parse_reply("```\nThe answer is 4\n```").code_blocks == []


def test_final_outside_code() -> None:
    assert parse_reply("Done.\nFINAL(42)").final_text == "42"
    assert parse_reply('FINAL("a (nested) answer")').final_text == "a (nested) answer"
    assert parse_reply("FINAL(multi\nline)").final_text == "multi\nline"
    assert parse_reply("FINAL_VAR(result)").final_var == "result"
    assert parse_reply("FINAL_VAR('result')").final_var == "result"


def test_final_inside_code_is_not_a_text_final() -> None:
    reply = parse_reply("```repl\nFINAL('x')\n```")
    assert reply.final_text is None
    assert reply.code_blocks == ["FINAL('x')\n"]


def test_truncated_last_block_runs_only_if_complete_python() -> None:
    ok = parse_reply("```repl\nprint(context[:5])\n")
    assert ok.code_blocks == ["print(context[:5])\n"] and ok.truncated_block
    assert parse_reply("```repl\nprint(context[:5]\n").code_blocks == []


code_bodies = st.lists(
    st.sampled_from(
        ["print(1)", "x = context[:3]", "y = llm_query('q')", "for i in range(2):\n    print(i)"]
    ),
    min_size=1,
    max_size=3,
).map("\n".join)
prose_text = st.text(alphabet=st.characters(blacklist_characters="`"), max_size=200)


@given(st.text(max_size=2000))
def test_parsing_never_crashes(text: str) -> None:
    reply = parse_reply(text)
    assert isinstance(reply.code_blocks, list)


@given(st.lists(st.tuples(prose_text, code_bodies), max_size=5), prose_text)
def test_finds_exactly_the_blocks(pieces: list[tuple[str, str]], tail: str) -> None:
    text = "".join(f"{prose}\n```repl\n{code}\n```\n" for prose, code in pieces) + tail
    reply = parse_reply(text)
    assert reply.code_blocks == [code.rstrip() + "\n" for _, code in pieces]
