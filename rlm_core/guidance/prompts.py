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

SMALL_MODEL_SYSTEM_PROMPT = """\
You answer a question about a long text. The text is stored in the Python variable `context`. You \
cannot read it directly: you search it by running Python code, and you see only what your code prints.

Reply with exactly one code block and nothing else. I run it and show you what it printed. \
Example 1, a question about exact facts, "In which city does the owner of Blue Fern live?":
You:
```repl
for line in context.splitlines():
    if "Blue Fern" in line:
        print(line)
```
Me:
```output
Shop: Blue Fern; owner: Tom Reyes
Blue Fern is in Oslo.
```
You (the question asks where the owner lives, not the shop, and the owner is Tom Reyes):
```repl
for line in context.splitlines():
    if "Tom Reyes" in line and "live" in line:
        print(line)
```
Me:
```output
Tom Reyes lives in Lisbon.
```
You: FINAL(Lisbon)

Example 2, a question about the meaning of many items, "how many of the reviews complain about the \
delivery?":
You:
```repl
items = [line for line in context.splitlines() if line.strip()]
print(len(items))
print("\\n".join(items[:3]))
```
Me:
```output
3
r1 | The box came two weeks late.
r2 | Lovely colour, fits well.
r3 | The courier left it in the rain.
```
You (each review must be read for its meaning, so I ask about every item and count the answers):
```repl
answers = llm_query_batched(["Does this review complain about the delivery? " + item for item in items], \
choices=["yes", "no"])
print(answers.count("yes"))
```
Me:
```output
2
```
You: FINAL(2)

Rules:
1. For exact facts (names, numbers, codes, counts of a word or label), search for the exact names, \
numbers and words of the question with code. Print only matching lines, never the whole text.
2. To count exact matches, count with code, e.g. `print(sum(1 for line in context.splitlines() if \
"A" in line and "B" in line))`.
3. If the question asks about someone or something linked to what you found (an owner, a manager, \
a city), find the linked name first, then search for it.
4. If the question asks about meaning, intent, tone or category of many items (messages, reviews), \
words alone mislead: ask `llm_query_batched([short question + item for item in items], \
choices=[...])` about each item and count the answers with code.
5. Never change `context`. Never write the output yourself: wait for it.
6. As soon as the printed output shows the answer, reply with only: FINAL(the answer). Answer every \
part of the question, in a few words.
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


# -- small models: a first search, a restated question, escalations --------------------------------


def small_turn_reminder(root_prompt: str | None, first: bool = False) -> str:
    """Restates the question after each output. After the first search it also says how to take a
    second step; later it only pushes to finish, since small models otherwise keep searching."""
    question = f"The question is: {root_prompt}\n" if root_prompt else ""
    linked = (
        "If the question asks about someone or something linked to a name (for example a person's "
        "manager or a project's owner), first find the linked name, then search for it. "
        if first
        else ""
    )
    return (
        f"{question}If the output above answers every part of the question, reply with only "
        f"FINAL(the answer). {linked}Otherwise reply with one ```repl block that searches for what is "
        "still missing."
    )


def repeat_block_note(escalate: bool, search: str | None = None) -> str:
    """What to say when a block comes back with the same output (``escalate``: and again after that)."""
    if not escalate:
        return (
            "You ran this exact code before and got the same output. Read the output above: if it "
            "answers the query, reply with FINAL(answer); otherwise try something different."
        )
    step = (
        f"search for the question's key words instead:\n```repl\n{search.rstrip()}\n```"
        if search
        else "write different code that searches `context` with Python string operations."
    )
    return (
        "You sent the same code again, and its last two runs printed the same output, so I did not "
        "run it a third time. If the output you already saw answers the question, reply now with only "
        f"FINAL(the answer). Otherwise {step}"
    )


def follow_up_note(term: str, repeated: bool, answer: str | None = None) -> str:
    """Said before the output of a search the engine ran for the next name of a chain."""
    why = (
        "You sent the same search again. A printed line that fits the question names "
        f"{term}, so the next step is to search for {term}"
        if repeated
        else f"FINAL({answer}) is a name found on the way, not what the question asks for. The next "
        f"step is to search for {term}"
    )
    return f"{why}, and I ran that search for you:"


def prompt_too_long_note(chars: int | None) -> str:
    limit = f"about {chars:,} characters" if chars else "a few thousand characters"
    return (
        "An llm_query prompt was too long for the helper model, which reads at most "
        f"{limit}. Search `context` with Python first and pass only the matching lines, or a slice "
        "such as context[0:4000], to llm_query."
    )


def all_parts_note(answer: str, root_prompt: str | None) -> str:
    return (
        f"FINAL({answer}) answers only one part. The question is: {root_prompt}\n"
        "Reply with only FINAL(...) that answers every part, for example FINAL(first part, second part)."
    )


OUT_OF_TURNS_NOTE = "You have run out of turns."
STUCK_FINAL_NOTE = "You sent the same code again; it would print the same output as before."
GUESS_NOTE = (
    "You have not run any code yet, so that answer is a guess. Look at `context` with a "
    "```repl block first, then answer with FINAL(...)."
)
NO_CODE_YET_NOTE = (
    "The context is already loaded in the REPL variable `context`; nobody will paste it. "
    "Write a ```repl block that prints part of it."
)
NO_CODE_NOTE = (
    "Your reply had no ```repl block and no FINAL(...). If it is your answer, reply with "
    "FINAL(your answer); otherwise write the next ```repl block."
)
