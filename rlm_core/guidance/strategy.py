"""The strategy contract (public): help a run gives its root model, as typed actions the engine logs.

On its own the core only reads the model's finish and tells it plain facts. Anything more (another
system prompt, the question restated, code run for the model, an answer taken, the final answer
asked for early, a cap on a call's output) belongs to a ``Strategy``. Each action a strategy takes
becomes an event and a log entry under the strategy's name, so a trajectory says who did what.

A strategy can never refuse or rewrite an answer the model gave: the model's FINAL / FINAL_VAR /
``answer`` ends the run before the strategy is asked anything about that turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from rlm_core.records import CodeBlockRecord


@attrs.define(frozen=True)
class Tell:
    """Say ``text`` to the model, in a user message of the strategy's own after the engine's."""

    text: str
    why: str = ""


@attrs.define(frozen=True)
class RunCode:
    """Run ``code`` in the REPL for the model. The model is shown the code (or ``shown``, a short
    account of what the code does, e.g. for a long set-up cell) and its output, in a user message
    that says the engine ran it; the cell is recorded, code and all, with the strategy as its author."""

    code: str
    why: str = ""
    shown: str | None = None


@attrs.define(frozen=True)
class AcceptAnswer:
    """End the run with ``text`` as the answer. The result says so: ``answer_source`` is
    ``"strategy:<name>"`` and ``stop_reason`` is ``"strategy"``, never ``"final"``."""

    text: str
    why: str = ""


@attrs.define(frozen=True)
class AskForFinal:
    """Ask the model for its final answer now, in a turn without code (``why`` opens the request).
    A FINAL it then writes is its own answer; a reply without one lets the run go on."""

    why: str = ""


@attrs.define(frozen=True)
class CapCall:
    """Cap the output tokens of the run's root turns (``tier="root"``) or of its sub-calls
    (``"sub"``). A cap only ever lowers the ``max_tokens`` a client was configured with."""

    max_tokens: int
    tier: Literal["root", "sub"] = "root"
    why: str = ""

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"CapCall.max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if self.tier not in ("root", "sub"):
            raise ValueError(f"CapCall.tier must be 'root' or 'sub', got {self.tier!r}")


@attrs.define(frozen=True)
class CapOutput:
    """Show the model at most ``chars`` characters of each cell's output (only ever lowers the
    RLM's ``max_output_chars``)."""

    chars: int
    why: str = ""

    def __attrs_post_init__(self) -> None:
        if isinstance(self.chars, bool) or not isinstance(self.chars, int) or self.chars < 100:
            raise ValueError(f"CapOutput.chars must be an int >= 100, got {self.chars!r}")


@attrs.define(frozen=True)
class Choose:
    """Ask the model to pick one of ``options`` (its keys) in one typed root call (the provider's
    structured output where it has one), then carry out the actions given for its pick, e.g. a
    ``Tell`` of the plan it chose. The question and the model's pick go into the log; neither
    enters the conversation. A reply that is none of the options carries out nothing."""

    question: str
    options: dict[str, tuple[Any, ...]]
    why: str = ""

    def __attrs_post_init__(self) -> None:
        if len(self.options) < 2:
            raise ValueError("Choose needs at least two options")
        for name, then in self.options.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"Choose options are named by non-empty strings, got {name!r}")
            if any(isinstance(action, (Choose, AcceptAnswer, AskForFinal)) for action in then):
                raise ValueError("the actions of a Choose option may tell, run code or set caps only")


Action = Tell | RunCode | AcceptAnswer | AskForFinal | CapCall | CapOutput | Choose
ACTION_KINDS: dict[type, str] = {
    Tell: "tell",
    RunCode: "run_code",
    AcceptAnswer: "accept_answer",
    AskForFinal: "ask_for_final",
    CapCall: "cap_call",
    CapOutput: "cap_output",
    Choose: "choose",
}
START_ACTIONS = (Tell, RunCode, CapCall, CapOutput, Choose)  # what ``on_start`` may return


@attrs.define(frozen=True)
class StartView:
    """What a strategy sees before the first root call of a run."""

    run_id: str
    depth: int
    context: Any
    root_prompt: str | None
    root_model: str
    default_system_prompt: str
    tools: dict[str, Any] = attrs.field(factory=dict)


@attrs.define(frozen=True)
class TurnView:
    """What a strategy sees after a turn in which the model did not finish.

    ``cells`` are this turn's cells in order (the model's, and any a strategy ran), ``history`` every
    cell of the run so far, this turn's included; ``notes`` the plain facts the core told the model
    this turn. ``last_turn`` is true when the run has no iteration left after this one.
    """

    run_id: str
    depth: int
    iteration: int
    max_iterations: int
    context: Any
    root_prompt: str | None
    reply: str
    cells: tuple[CodeBlockRecord, ...]
    history: tuple[CodeBlockRecord, ...]
    notes: tuple[str, ...] = ()
    last_turn: bool = False


@runtime_checkable
class Strategy(Protocol):
    """Help for the root model, given as actions. ``name`` labels every action in events and logs.

    Register a factory through ``rlm_register_strategies`` (``factory(**strategy_kwargs)``) and pick
    it with ``RLM(strategy="name")``, or pass an object. One object may serve many runs at once
    (child runs, concurrent completions): keep per-run memory keyed by ``view.run_id``, or none.
    """

    name: str

    def system_prompt(self, view: StartView) -> str | None:
        """The system prompt for this run, or None to keep ``view.default_system_prompt``."""
        ...

    def on_start(self, view: StartView) -> Sequence[Action]:
        """Actions before the first root call: ``Tell``, ``RunCode``, ``CapCall``, ``CapOutput``,
        ``Choose``."""
        ...

    def on_turn(self, view: TurnView) -> Sequence[Action]:
        """Actions after a turn in which the model did not finish (any kind)."""
        ...


class BaseStrategy:
    """A strategy that does nothing: subclass it and override what you need."""

    name = "base"

    def system_prompt(self, view: StartView) -> str | None:
        return None

    def on_start(self, view: StartView) -> Sequence[Action]:
        return ()

    def on_turn(self, view: TurnView) -> Sequence[Action]:
        return ()


def author_of(strategy: Strategy) -> str:
    """The author label of what a strategy did: ``"strategy:<name>"``."""
    return f"strategy:{strategy.name}"


def describe(action: Action) -> dict[str, Any]:
    """An action as a plain dict for events and logs: its kind and its fields."""
    if isinstance(action, Choose):  # the options' actions, described in turn
        options = {name: [describe(a) for a in then] for name, then in action.options.items()}
        return {"action": "choose", "question": action.question, "options": options, "why": action.why}
    return {"action": ACTION_KINDS[type(action)], **attrs.asdict(action)}
