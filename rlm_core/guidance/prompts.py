"""What the core tells the root model: the system prompt, the per-turn messages that describe the
context and feed REPL output back, and the texts of its plain notes. (A strategy may say more.)"""

from __future__ import annotations

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
with plain code. `llm_query(prompt, choices=["a", "b"])` returns one of the choices and \
`llm_query(prompt, schema={{...}})` (a JSON schema) a value matching it.
- `llm_query_batched(prompts, model=None) -> list[str]`: many sub-model calls at once, in order; far \
faster than a loop of llm_query. It takes `choices=` and `schema=` too.
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

CONTINUE_PROMPT = (
    "Continue: write the next ```repl block, or finish with FINAL(...) if the output above answers the query."
)


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


def describe_tools(tools: dict[str, Any]) -> str:
    """The custom tools as prompt lines (their docstrings' first lines), or an empty string."""
    if not tools:
        return ""
    described = []
    for name, value in tools.items():
        doc = (getattr(value, "__doc__", None) or "").strip().splitlines()
        described.append(f"- `{name}`: {doc[0] if doc and callable(value) else type(value).__name__}")
    return "Custom tools:\n" + "\n".join(described) + "\n"


def system_prompt(context: Any, tools: dict[str, Any], sub_window_chars: int = 400_000) -> str:
    return DEFAULT_SYSTEM_PROMPT.format(
        context_type=describe_context(context),
        tools=describe_tools(tools),
        sub_window=f"{sub_window_chars:,}",
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


REPEAT_NOTE = (
    "You ran this exact code before and it printed the same output. If that output answers the "
    "query, finish with FINAL(answer); otherwise try something different."
)


def prompt_too_long_note(chars: int | None) -> str:
    limit = f"about {chars:,} characters" if chars else "a few thousand characters"
    return (
        "An llm_query prompt was too long for the helper model, which reads at most "
        f"{limit}. Search `context` with Python first and pass only the matching lines, or a slice "
        "such as context[0:4000], to llm_query."
    )


OUT_OF_TURNS_NOTE = "You have run out of turns."
LAST_TURN_REQUEST = (
    "Based only on what your code has shown, reply now with your best final answer as "
    "FINAL(answer). Do not write code."
)
NO_CODE_YET_NOTE = (
    "The context is already loaded in the REPL variable `context`; nobody will paste it. "
    "Write a ```repl block that prints part of it."
)
NO_CODE_NOTE = (
    "Your reply had no ```repl block and no FINAL(...). If it is your answer, reply with "
    "FINAL(your answer); otherwise write the next ```repl block."
)
