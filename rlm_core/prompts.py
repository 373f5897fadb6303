"""What the root model is told: the system prompts (one for capable models, one for small ones) and
the per-turn messages that describe the context and feed REPL output back."""

from __future__ import annotations

import re
from typing import Any

DEFAULT_SYSTEM_PROMPT = """\
You answer a query about a context that is too large to read at once. The context is already loaded \
in a Python REPL as the variable `context`; you explore it by writing code, and you see only what \
your code prints.

Write code in fenced blocks tagged repl:
```repl
print(type(context), len(context))
print(context[:1000])
```
Each block runs in the same persistent namespace, and you get its output (truncated if long) in the \
next message. Available inside the REPL:
- `context`: the data ({context_type}). Do not reassign it; make new variables instead.
- `llm_query(prompt, model=None) -> str`: ask a sub-model about a piece of text (it can read about \
{sub_window} characters at once). Use it to read, classify or summarise chunks you cannot inspect \
with plain code.
- `llm_query_batched(prompts, model=None) -> list[str]`: many sub-model calls at once, in order; far \
faster than a loop of llm_query.
- `rlm_query(prompt)` / `rlm_query_batched(prompts)`: like llm_query, but the callee gets its own REPL \
(use for sub-tasks that are themselves large).
- `SHOW_VARS()`: list the variables you created.
{tools}
Work step by step: look at the structure of the context first, then search, slice and chunk it with \
code, use sub-model calls on the chunks that need reading, and keep intermediate results in variables. \
Prefer exact string and regex operations when they suffice.

When you know the answer, finish with FINAL(your answer) (text), or FINAL_VAR(variable_name) to return \
a variable you built in the REPL, either inside a repl block or on its own line outside code. Do not \
give a final answer until your code has shown you the evidence for it.
"""

SMALL_MODEL_SYSTEM_PROMPT = """\
You are a Python programmer. A large text is stored in the variable `context` in a Python REPL. You \
cannot see it: you must run code to look at it. Write exactly one code block per reply, like this:
```repl
print(len(context))
print(context[:500])
```
I will run it and show you what it printed. Rules:
1. Always start by running code. Never guess an answer.
2. Search with Python: `for line in context.splitlines(): if "word" in line: print(line)`, or the `re` module.
3. `llm_query("question about this text: " + chunk)` asks a helper model about a piece of text.
4. Never change `context`. Never write the output yourself: wait for it.
5. When the printed output shows the answer, reply with only: FINAL(the answer)
{tools}"""

_SMALL_MODEL_PATTERNS = re.compile(
    r"(?i)(\b|[-_/:])(0\.5b|1\.5b|1b|2b|3b|135m|360m|1\.7b|smol|tiny|qwen2\.5-coder-1\.5b|phi-?[123]\b)"
)

CONTINUE_PROMPT = (
    "Continue: write the next ```repl block, or finish with FINAL(...) if the output above answers the query."
)


def looks_like_small_model(model_name: str) -> bool:
    return bool(_SMALL_MODEL_PATTERNS.search(model_name or ""))


def describe_context(context: Any) -> str:
    """A short description of the context's type and size (never its content)."""
    if isinstance(context, str):
        lines = context.count("\n") + 1 if context else 0
        return f"a str of {len(context):,} characters, {lines:,} lines"
    if isinstance(context, dict):
        return f"a dict with {len(context):,} keys"
    if isinstance(context, (list, tuple)):
        total = sum(len(x) for x in context if isinstance(x, (str, list, dict)))
        return f"a {type(context).__name__} of {len(context):,} items ({total:,} characters in all)"
    return f"a {type(context).__name__}"


def system_prompt(style: str, context: Any, tools: dict[str, Any], sub_window_chars: int = 400_000) -> str:
    tool_lines = ""
    if tools:
        described = []
        for name, value in tools.items():
            doc = (getattr(value, "__doc__", None) or "").strip().splitlines()
            described.append(f"- `{name}`: {doc[0] if doc and callable(value) else type(value).__name__}")
        tool_lines = "Custom tools:\n" + "\n".join(described) + "\n"
    template = SMALL_MODEL_SYSTEM_PROMPT if style == "small" else DEFAULT_SYSTEM_PROMPT
    return template.format(
        context_type=describe_context(context), tools=tool_lines, sub_window=f"{sub_window_chars:,}"
    )


def first_user_message(context: Any, root_prompt: str | None, turn: int = 0) -> str:
    parts = [f"The context is loaded in the REPL as `context`: {describe_context(context)}."]
    if turn > 0:
        parts.append(
            f"This is turn {turn} of a conversation: earlier contexts are `context_0` .. "
            f"`context_{turn - 1}` and earlier transcripts `history_0` .. `history_{turn - 1}`."
        )
    if root_prompt:
        parts.append(f"Query: {root_prompt}")
    else:
        parts.append("The query is part of the context: read it there first.")
    parts.append("Start by writing a ```repl block to look at the context.")
    return "\n".join(parts)


def execution_feedback(code: str, output: str, index: int, total: int) -> str:
    label = f"Block {index + 1} of {total}" if total > 1 else "Your code"
    return f"{label} ran. Output:\n```output\n{output.rstrip() or '(no output)'}\n```"
