"""Repair guards of the root loop: notice a reply that went wrong in a known way and say what to do.

Guards return verdicts (a note for the log, a message for the model); the loop decides what to do
with them, so no guard writes into a record or a message list.

Each guard answers one failure measured with small models (an answer before any code ran, prose
instead of FINAL, FINAL(GR-348) written in code without quotes, the same block run again and again,
one part of a two-part answer, a final answer of the wrong shape or resting on lines that break the
question's conditions, a sub-call prompt too long for its model) and fires only on that failure, so
capable models are unaffected. Models recognised as small also get a first search of the context,
the question restated each turn, shorter turns, the next search of a look-up chain run for them
when they stop on a link (``follow_up``), and a block that only quotes a line they were shown taken
as their answer. ``small_model_guards=False`` turns everything here off.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from rlm_core.guidance import answer_check, first_search, follow_up, prompts
from rlm_core.guidance.follow_up import FollowUp
from rlm_core.records import CodeBlockRecord

SMALL_MAX_OUTPUT_CHARS = 4_000  # of REPL output shown to a small model per block
SMALL_ROOT_MAX_TOKENS = 400  # one code block or a FINAL line; small models ramble past it
# Sub-calls of a small root model answer one short question about one item; unbounded generation
# on a CPU takes minutes (summaries ran to ~350 tokens).
SMALL_SUB_MAX_TOKENS = 200
# How llama.cpp, vLLM, OpenAI and Anthropic word a prompt that does not fit the model's window.
_PROMPT_TOO_LONG = re.compile(
    r"(?is)ProviderError.*(exceeds the available context|context length|context window|too many tokens"
    r"|prompt is too long|maximum context)"
)
_FINAL_CALL = re.compile(r"FINAL\(([^\n]*)\)")
_NOT_PYTHON = re.compile(r"\b(NameError|SyntaxError)\b")
_SECOND_QUESTION = re.compile(r"(?i)(\band\b|,|;)\s+(what|which|who|whom|whose|when|where|how|why)\b")
_ANSWER_SEPARATOR = re.compile(r"(?i)\band\b|[,;]|\bwith\b")


@attrs.define(frozen=True)
class Verdict:
    """What a guard decided. ``note`` goes into the trajectory, ``message`` (if any) to the model;
    ``accept`` is set when the guard takes a reply as the final answer."""

    note: str
    message: str | None = None
    accept: str | None = None
    # Set when asking again is pointless: the loop asks for the final answer in a turn without code.
    finish: bool = False
    # A search the loop runs for the model and shows after ``message`` (the next link of a chain).
    search: FollowUp | None = None


def answers_only_one_part(query: str | None, answer: str) -> bool:
    """The question asks two things ("who ..., and what ...?") but the answer is one short phrase."""
    if not query or not _SECOND_QUESTION.search(query):
        return False
    return len(answer.split()) <= 4 and not _ANSWER_SEPARATOR.search(answer)


class ReplyGuards:
    """The guards' memory for one run. ``enabled`` is ``small_model_guards``; ``small`` says the root
    model was recognised as small (or ``prompt_style="small"``)."""

    def __init__(self, *, enabled: bool, small: bool, root_prompt: str | None, context: Any) -> None:
        self.enabled = enabled
        self.small = enabled and small
        self.root_prompt = root_prompt
        self.context = context
        self.ran_code = False
        self._asked: set[str] = set()  # one-shot guards already used
        self._outputs: dict[str, str] = {}  # code -> the output of its last run
        self._stuck: set[str] = set()  # code whose last two runs printed the same output
        self._last_output = ""  # what the model saw after its last blocks
        # Small models only: every block run (what was searched already) and its output, in order.
        self._codes: list[str] = []
        self._history: list[str] = []
        self._followed: set[str] = set()  # names the engine searched for the model

    # -- before a turn -------------------------------------------------------------------------

    def first_search_code(self) -> str | None:
        """Search code for the question's key words (text contexts with searchable words only)."""
        if not isinstance(self.context, str):
            return None
        if first_search.asks_for_judgement(self.root_prompt or ""):
            # Counting by meaning: show the items, the first step of the prompt's second example.
            return first_search.items_code(self.context)
        terms = first_search.key_terms(self.root_prompt or "", self.context)
        if not terms:
            return None
        counting = first_search.asks_for_a_count(self.root_prompt or "")
        return first_search.search_code(terms, self.context, counting)

    def root_max_tokens(self, client_max: Any) -> int | None:
        if not self.small:
            return None
        if isinstance(client_max, int) and client_max > 0:
            return min(SMALL_ROOT_MAX_TOKENS, client_max)
        return SMALL_ROOT_MAX_TOKENS

    def sub_max_tokens(self) -> int | None:
        return SMALL_SUB_MAX_TOKENS if self.small else None

    def output_limit(self, limit: int) -> int:
        # A small model's window holds a few thousand tokens; long output also reads slowly on CPU.
        return min(limit, SMALL_MAX_OUTPUT_CHARS) if self.small else limit

    def turn_prompt(self, first: bool = False) -> str:
        # Small models lose track of the question after a few turns of output: restate it.
        return prompts.small_turn_reminder(self.root_prompt, first) if self.small else prompts.CONTINUE_PROMPT

    # -- on a reply ----------------------------------------------------------------------------

    def stuck_on(self, code: str) -> Verdict | None:
        """The model sent a block whose last two runs printed the same thing: do not run it again."""
        if not self.enabled or code.strip() not in self._stuck:
            return None
        link = self._next_link()
        if link is not None:
            # The model has the next name of a chain in front of it and searches the last one again.
            return Verdict(
                f"identical block sent again: searched for the next link, {link.term!r}",
                prompts.follow_up_note(link.term, repeated=True),
                search=link,
            )
        if self.small:
            # Small models repeat such a block until time runs out, often with the answer already
            # printed (a refusal note did not stop them on any seed measured). Ask for the answer.
            return Verdict("identical block sent again: asked for the final answer", finish=True)
        return Verdict(
            "identical block sent again after two identical outputs: not run",
            prompts.repeat_block_note(escalate=True, search=self.first_search_code()),
        )

    def check_final(
        self, final: str, replied_with_code: bool, blocks: Sequence[CodeBlockRecord] = ()
    ) -> Verdict | None:
        """None accepts the final answer; a verdict sends the model back to work. ``blocks`` are the
        blocks of this turn (with the engine's first search), whose output the model may have seen."""
        if self.enabled and not self.ran_code and not replied_with_code and self._once("guess"):
            # Answering before looking at the context is almost always a made-up answer.
            return Verdict("final answer before any code ran: asked to check first", prompts.GUESS_NOTE)
        if not self.small:
            return None
        if answers_only_one_part(self.root_prompt, final) and self._once("all-parts"):
            # Small models answer the first half of a two-part question and stop.
            return Verdict(
                "a two-part question got a one-part answer: asked for every part",
                prompts.all_parts_note(final, self.root_prompt),
            )
        problem = answer_check.shape_problem(self.root_prompt, final)
        if problem and self._once("shape"):
            counting = first_search.asks_for_a_count(self.root_prompt or "")
            link = None if counting else self._follow(final)
            if link is not None:
                # The answer is a name found on the way (a city for "what code"): follow it.
                return Verdict(
                    f"the final answer is a name on the way: searched for {link.term!r}",
                    prompts.follow_up_note(link.term, repeated=False, answer=final),
                    search=link,
                )
            return Verdict("the final answer does not have the shape the question asks for", problem)
        seen = "\n".join(
            [self._last_output, *(_output(block) for block in blocks if block.final_answer is None)]
        )
        problem = answer_check.loose_match_problem(self.root_prompt, self.context, seen, final)
        if problem and self._once("loose"):
            return Verdict("the output behind the answer breaks the question's conditions", problem)
        return None

    def quoted_answer(self, code: str) -> Verdict | None:
        """A small model's block that only prints text it has already seen in an output: it is
        quoting its evidence as the answer (and would print it again and again), so take it as one."""
        if not self.small or not self._outputs:
            return None
        text = _printed_literal(code)
        if not text or not any(text in output for output in self._outputs.values()):
            return None
        return Verdict("a block that only printed a line already shown: taken as the answer", accept=text)

    def unquoted_final(self, block: CodeBlockRecord) -> Verdict | None:
        """A block that is only ``FINAL(GR-348)``, with the answer written as text rather than a
        string, fails as Python; its text is the answer. A bare name (``FINAL(result)``) is a
        variable that does not exist, and stays an error the model sees."""
        if not self.enabled or not block.error or not _NOT_PYTHON.search(block.error):
            return None
        match = _FINAL_CALL.fullmatch(block.code.strip())
        if match is None or match.group(1).strip().isidentifier():
            return None
        text = match.group(1).strip().strip("\"'").strip()
        if not text:
            return None
        return Verdict("FINAL(...) in code with its answer as bare text: took the text", accept=text)

    def subcall_notes(self, blocks: Sequence[CodeBlockRecord]) -> list[str]:
        """Says in the log that a small model's sub-calls had their output capped."""
        calls = sum(len(block.subcalls) for block in blocks)
        if not self.small or not calls:
            return []
        return [f"{calls} sub-call(s) of a small model: output capped at {SMALL_SUB_MAX_TOKENS} tokens each"]

    def no_code_reply(self, prose: str) -> Verdict:
        """A reply with neither code nor FINAL(...): the second such clear reply is taken as the answer."""
        if self.ran_code and self.enabled and prose and not self._once("prose"):
            return Verdict("accepted a plain-text reply as the final answer", accept=prose)
        return Verdict(
            "reply had no code and no FINAL(...)",
            prompts.NO_CODE_NOTE if self.ran_code else prompts.NO_CODE_YET_NOTE,
        )

    def after_blocks(
        self, blocks: Sequence[CodeBlockRecord], sub_window_chars: Callable[[], int | None]
    ) -> list[Verdict]:
        """Verdicts on the blocks that ran: repeats and sub-call prompts too long for their model
        (``sub_window_chars()`` gives that model's window in characters, asked only when a prompt was
        too long)."""
        verdicts: list[Verdict] = []
        repeated = False
        for block in blocks:
            key = block.code.strip()
            output = block.stdout + (block.error or "")
            if self.enabled and self._outputs.get(key) == output:
                repeated = True
                self._stuck.add(key)
            else:
                self._stuck.clear()  # other code ran: what was stuck before may print something new
                if self.small:
                    # A small model that sends a block again at once gets the same output (and, with
                    # sub-calls, spends minutes on a CPU for it): it is stuck, not retrying.
                    self._stuck.add(key)
            self._outputs[key] = output
            if self.small:  # only the small-model link search reads these
                self._codes.append(block.code)
                self._history.append(output)
        self._last_output = "\n".join(_output(block) for block in blocks)
        if repeated:
            verdicts.append(Verdict("repeated an identical block", prompts.repeat_block_note(escalate=False)))
        if self.enabled and self._prompt_too_long(blocks):
            window = sub_window_chars()
            # Room for the question and the answer: 60% of the window.
            chars = int(window * 0.6) if window else None
            verdicts.append(
                Verdict(
                    "an llm_query prompt exceeded the sub-model's window", prompts.prompt_too_long_note(chars)
                )
            )
        return verdicts

    def extract_suffix(self) -> str:
        return f" The question was: {self.root_prompt}" if self.root_prompt and self.small else ""

    # -- helpers -------------------------------------------------------------------------------

    def _next_link(self) -> FollowUp | None:
        """The search for the first name on the latest output that may be the chain's next link
        and whose lines the model has not all seen yet (small models only)."""
        if not self.small:
            return None
        searched = follow_up.searched_terms(self._codes)
        seen = "\n".join(self._outputs.values())
        # The latest output that printed something: the chain's last link was found last (a
        # search that printed nothing often follows the one that showed it). Earlier outputs hold
        # links the model already passed.
        latest = next((output for output in reversed(self._history) if output.strip()), "")
        for name in follow_up.linked_names(self.root_prompt or "", latest, searched):
            if name.lower() in self._followed:
                continue
            found = follow_up.follow_up(name, self.root_prompt or "", self.context)
            if found is not None and any(line not in seen for line in found.lines):
                self._followed.add(found.term.lower())
                return found
        return None

    def _follow(self, term: str | None) -> FollowUp | None:
        """The engine's search for the next name of a chain, once per name (small models only)."""
        if not self.small or not term or term.lower() in self._followed:
            return None
        found = follow_up.follow_up(term, self.root_prompt or "", self.context)
        if found is not None:
            self._followed.add(found.term.lower())
        return found

    def _once(self, name: str) -> bool:
        """True the first time a one-shot guard asks."""
        if name in self._asked:
            return False
        self._asked.add(name)
        return True

    @staticmethod
    def _prompt_too_long(blocks: Sequence[CodeBlockRecord]) -> bool:
        return any(
            _PROMPT_TOO_LONG.search(block.error or "")
            or any(_PROMPT_TOO_LONG.search(call.error or "") for call in block.subcalls)
            for block in blocks
        )


def _printed_literal(code: str) -> str | None:
    """The text of a block made only of ``print("...")`` calls of string literals, else None."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    lines = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "print"
            and len(call.args) == 1
            and not call.keywords
            and isinstance(call.args[0], ast.Constant)
            and isinstance(call.args[0].value, str)
        ):
            return None
        lines.append(call.args[0].value)
    return "\n".join(lines).strip() or None


def _output(block: CodeBlockRecord) -> str:
    return block.stdout + (block.error or "")
