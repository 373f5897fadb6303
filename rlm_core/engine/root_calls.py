"""Asking the root model for its answer outside the turn loop's own call: the request for the final
answer without code (out of turns, or a strategy's ``AskForFinal``), a typed choice among options (a
strategy's ``Choose``), and reading a finish the model wrote outside code (``FINAL(...)`` as text,
``FINAL_VAR(name)`` from the REPL). Every answer returned is one the model wrote."""

from __future__ import annotations

from typing import Any, Protocol

from rlm_core.engine import typed_answers
from rlm_core.environments.base import Environment
from rlm_core.errors import BudgetExceededError, ProviderError
from rlm_core.guidance import prompts
from rlm_core.guidance.parsing import answer_from_prose, parse_reply
from rlm_core.types import AnswerSource, Message


class RootCaller(Protocol):
    """What these calls need of the run (``engine.run.Run`` provides it)."""

    messages: list[Message]
    environment: Environment

    async def ask_root(
        self, messages: list[Message], purpose: str, plan: Any = None, schema: dict[str, Any] | None = None
    ) -> Any: ...


async def final_from_text(
    environment: Environment, text: str | None, var: str | None, feedback: list[str]
) -> tuple[str | None, str | None]:
    """A finish written outside code: FINAL(text) as it stands, FINAL_VAR(name) read from the REPL
    (when the name does not exist, ``feedback`` says so and there is no answer)."""
    if var is None:
        return text, AnswerSource.FINAL.value
    result = await environment.execute(f"FINAL_VAR({var!r})")
    if result.final_answer is not None:
        return result.final_answer, AnswerSource.FINAL_VAR.value
    feedback.append(f"FINAL_VAR({var}) failed: {result.error or 'no such variable'}")
    return None, None


async def ask_for_final(run: RootCaller, opening: str, author: str) -> tuple[str | None, str | None, str]:
    """One root call asking for the final answer without code: (answer, source, reply text).
    ``opening`` says why (out of turns, or a strategy's reason); the answer is the FINAL the model
    writes, else None."""
    ask = Message("user", f"{opening} {prompts.LAST_TURN_REQUEST}".strip(), author=author)
    response = await run.ask_root([*run.messages, ask], "extract")
    reply = parse_reply(response.text)
    if reply.final_text is not None or reply.final_var is not None:
        answer, source = await final_from_text(run.environment, reply.final_text, reply.final_var, [])
        return answer, source, response.text
    return None, None, response.text


async def ask_to_choose(
    run: RootCaller, question: str, options: list[str], author: str
) -> tuple[str | None, str]:
    """One typed root call: the model picks one of ``options``. (the pick or None, reply text)."""
    spec = typed_answers.answer_spec(choices=options)
    assert spec is not None
    ask = Message("user", f"{question}\n\n{spec.instruction()}", author=author)
    response = await run.ask_root([*run.messages, ask], "choose", schema=spec.wire)
    value, problem = typed_answers.read_answer(response.text, spec)
    return (value if problem is None and value in options else None), response.text


async def last_turn(run: RootCaller, why: str) -> tuple[str | None, str | None]:
    """Out of iterations: one last root call for the answer. A reply without FINAL is taken as the
    answer's text (``last_turn_extract``), without a leading "Final answer:" label."""
    try:
        answer, source, text = await ask_for_final(run, why, "engine")
    except (BudgetExceededError, ProviderError):
        return None, None
    if answer is not None:
        return answer, source
    prose = parse_reply(text).prose
    return (answer_from_prose(prose), AnswerSource.LAST_TURN_EXTRACT.value) if prose else (None, None)
