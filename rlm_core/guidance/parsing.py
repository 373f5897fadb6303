"""Reading the root model's replies: code blocks to run and final answers given outside code.

A ``FINAL(...)`` line outside code finishes the run only when no code follows it in the same reply:
"FINAL(x) once the code below has run" followed by a code block announces an answer, it is not one.
"""

from __future__ import annotations

import ast
import re

import attrs

# ```repl is what the prompts ask for; ```python / ```py are what models write anyway.
_FENCE = re.compile(
    r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE
)
_OPEN_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*)\Z", re.DOTALL | re.MULTILINE)
CODE_LANGUAGES = {"repl", "python", "py", "python3", "ipython"}
# Small models also write "Final(...)" or "final(...)"; at the start of a line it means the same.
_FINAL_START = re.compile(r"^[ \t>*]*(FINAL_VAR|FINAL|Final_var|Final|final_var|final)\(", re.MULTILINE)


@attrs.define(frozen=True)
class ParsedReply:
    code_blocks: list[str]
    prose: str  # the reply without its code blocks
    final_text: str | None  # FINAL(...) given outside code
    final_var: str | None  # FINAL_VAR(name) given outside code
    truncated_block: bool = False  # the last block had no closing fence


def _looks_like_repl_code(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return bool(re.search(r"\b(print|context|llm_query|rlm_query|FINAL|FINAL_VAR|SHOW_VARS)\b", code))


def parse_reply(text: str) -> ParsedReply:
    """Find the runnable code blocks and any final answer outside them. Never raises."""
    blocks: list[str] = []
    # Each prose segment with the number of runnable blocks before it: a FINAL line counts only in
    # a segment after the last runnable block.
    prose_parts: list[tuple[str, int]] = []
    position = 0
    for match in _FENCE.finditer(text):
        language, body = match.group(1).lower(), match.group(2)
        prose_parts.append((text[position : match.start()], len(blocks)))
        position = match.end()
        runnable = language in CODE_LANGUAGES or (not language and _looks_like_repl_code(body))
        if runnable and body.strip():
            blocks.append(body.rstrip() + "\n")
        # other languages (```output, ```text) are model-written "output": neither run nor answer
    rest = text[position:]
    truncated = False
    open_match = _OPEN_FENCE.search(rest)
    if open_match and open_match.group(1).lower() in CODE_LANGUAGES | {""}:
        body = open_match.group(2)
        prose_parts.append((rest[: open_match.start()], len(blocks)))
        # a reply cut off mid-block: run it only if what we have is complete Python
        if body.strip() and _looks_like_repl_code(body):
            blocks.append(body.rstrip() + "\n")
            truncated = True
    else:
        prose_parts.append((rest, len(blocks)))
    prose = "".join(part for part, _ in prose_parts)
    closing = "".join(part for part, before in prose_parts if before == len(blocks))
    final_text, final_var = _find_final(closing)
    return ParsedReply(blocks, prose.strip(), final_text, final_var, truncated)


def _find_final(prose: str) -> tuple[str | None, str | None]:
    match = _FINAL_START.search(prose)
    if match is None:
        return None, None
    start = match.end()
    depth = 1
    end = None
    for index in range(start, len(prose)):
        char = prose[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                end = index
                break
    if end is None:  # unbalanced: take the rest of the line's text, dropping a trailing ')'
        end = len(prose)
    inner = prose[start:end].strip()
    if match.group(1).upper() == "FINAL_VAR":
        return None, inner.strip("'\"` ")
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        try:
            value = ast.literal_eval(inner)
            if isinstance(value, str):
                inner = value
        except (ValueError, SyntaxError):
            inner = inner[1:-1]
    return inner, None


# "Final answer:", "**Answer:**", "Answer -" at the start of a reply: a label, not part of the answer.
_ANSWER_LABEL = re.compile(
    r"(?is)\A[\s>*_#]*(?:(?:my|the)\s+)?(?:final\s+)?answer\s*(?:is)?\s*[*_]*\s*[:\-\u2013]\s*[*_]*\s*"
)


def answer_from_prose(text: str) -> str:
    """The answer in a reply written as prose (a last turn without FINAL): the reply without a
    leading "Final answer:" label, which the model wrote to introduce its answer."""
    stripped = _ANSWER_LABEL.sub("", text.strip(), count=1).strip()
    return stripped or text.strip()
