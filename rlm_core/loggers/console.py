"""The ``verbose=True`` view: a rich rendering of each run as it goes (iterations, code, sub-calls, usage).

rich is imported when a ConsoleLogger is built, never at ``import rlm_core``.
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs

from rlm_core.events import EventKind, RunEvent

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.text import Text
    from rich.tree import Tree

    from rlm_core.records import CodeBlockRecord, IterationRecord, RunMetadata, SubCallRecord
    from rlm_core.types import RLMChatCompletion, TokenUsage

# Sub-calls made from REPL code count against the sub tier even when their run is the root one.
_SUB_PURPOSES = frozenset({"llm_query", "rlm_query"})
_INDENT = 4


@attrs.define
class _RunState:
    run_id: str
    depth: int
    root_id: str
    started: float
    model: str = ""
    iteration: int = 0
    phase: str = "starting"
    root_tokens: int = 0
    sub_tokens: int = 0


class ConsoleLogger:
    """Renders runs on a rich console: a header per run, a panel per iteration, the final answer
    and usage per tier and model, plus a live status line (terminals only) while a run is going.

    Child runs are indented by their depth. ``max_chars`` caps every response, code cell and
    output shown (the log keeps everything).
    """

    def __init__(self, console: Console | None = None, max_chars: int = 2000) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console()
        self.max_chars = max_chars
        self._lock = threading.RLock()
        self._runs: dict[str, _RunState] = {}
        self._live: Live | None = None

    # -- events --------------------------------------------------------------------------------

    def on_event(self, event: RunEvent) -> None:
        with self._lock:
            handler = _HANDLERS.get(event.kind)
            if handler is not None:
                handler(self, event)

    def close(self) -> None:
        """Stop the status line; safe to call twice."""
        with self._lock:
            self._stop_status()
            self._runs.clear()

    def _on_run_start(self, event: RunEvent) -> None:
        metadata: RunMetadata = event.data["metadata"]
        parent = self._runs.get(event.parent_run_id or "")
        root_id = parent.root_id if parent is not None else event.run_id
        self._runs[event.run_id] = _RunState(
            event.run_id, event.depth, root_id, event.monotonic, model=metadata.root_model
        )
        self._print(self._header(metadata, event), event.depth)
        if root_id == event.run_id:
            self._start_status()

    def _on_iteration_start(self, event: RunEvent) -> None:
        state = self._runs.get(event.run_id)
        if state is not None:
            state.iteration = int(event.data.get("iteration", state.iteration + 1))
            state.phase = "waiting for the model"

    def _on_lm_call_start(self, event: RunEvent) -> None:
        state = self._runs.get(event.run_id)
        if state is not None and event.data.get("purpose") not in _SUB_PURPOSES:
            state.phase = f"calling {event.data.get('model') or 'the model'}"

    def _on_lm_call_end(self, event: RunEvent) -> None:
        state = self._runs.get(event.run_id)
        usage: TokenUsage | None = event.data.get("usage")
        if state is None or usage is None:
            return
        root = self._runs.get(state.root_id, state)
        if event.depth == 0 and event.data.get("purpose") not in _SUB_PURPOSES:
            root.root_tokens += usage.total_tokens
        else:
            root.sub_tokens += usage.total_tokens

    def _on_code_start(self, event: RunEvent) -> None:
        state = self._runs.get(event.run_id)
        if state is not None:
            state.phase = "running code"

    def _on_subcall_start(self, event: RunEvent) -> None:
        state = self._runs.get(event.run_id)
        if state is not None:
            function = event.data.get("function", "sub-call")
            state.phase = f"{function} → {event.data.get('model') or 'sub-model'}"

    def _on_iteration_end(self, event: RunEvent) -> None:
        record: IterationRecord = event.data["record"]
        self._print(self._iteration_panel(record, event.depth), event.depth)

    def _on_run_end(self, event: RunEvent) -> None:
        result: RLMChatCompletion = event.data["result"]
        state = self._runs.pop(event.run_id, None)
        if event.depth > 0 or (state is not None and state.root_id != event.run_id):
            self._print(self._child_result(result, event.depth), event.depth)
        else:
            self._print(self._final_panel(result), 0)
            self._print(self._usage_table(result), 0)
        if not any(s.root_id == s.run_id for s in self._runs.values()):
            self._stop_status()

    # -- status line ---------------------------------------------------------------------------

    def _start_status(self) -> None:
        # A spinner on a pipe or a file only adds noise; there the panels say enough.
        if self._live is not None or not self.console.is_terminal or self.console.is_dumb_terminal:
            return
        from rich.live import Live
        from rich.spinner import Spinner

        # No stdout redirection: the local REPL routes sys.stdout per thread to capture cells, and
        # Live swapping sys.stdout underneath it would lose their output.
        self._live = Live(
            Spinner("dots", text=_StatusText(self)),
            console=self.console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            refresh_per_second=8,
        )
        self._live.start()

    def _stop_status(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def status_text(self) -> str:
        """The status line's text: iteration, elapsed time and tokens of each active top-level run."""
        try:
            states = list(self._runs.values())
        except RuntimeError:  # changed during the copy; the next refresh shows it
            return ""
        now = time.perf_counter()
        parts = [
            f"{s.run_id[:8]} iteration {s.iteration} · {now - s.started:.1f}s · "
            f"root {s.root_tokens:,} tok · sub {s.sub_tokens:,} tok · {s.phase}"
            for s in states
            if s.root_id == s.run_id
        ]
        return " | ".join(parts)

    # -- renderables ---------------------------------------------------------------------------

    def _print(self, renderable: RenderableType, depth: int) -> None:
        if depth > 0:
            from rich.padding import Padding

            renderable = Padding(renderable, (0, 0, 0, _INDENT * depth))
        self.console.print(renderable)

    def _truncate(self, text: str) -> str:
        if len(text) <= self.max_chars:
            return text
        return f"{text[: self.max_chars]}\n… [{len(text) - self.max_chars:,} more chars not shown]"

    def _header(self, metadata: RunMetadata, event: RunEvent) -> RenderableType:
        from rich.text import Text

        context = f"{metadata.context_chars:,} chars"
        if metadata.context_type:
            context = f"{metadata.context_type}, {context}"
        details = (
            f"model {metadata.root_model} ({metadata.backend}) · environment {metadata.environment} · "
            f"context {context}"
        )
        if metadata.sub_models:
            details += f" · sub-models {', '.join(metadata.sub_models)}"
        if metadata.strategy:
            details += f" · strategy {metadata.strategy}"
        if event.depth > 0:
            return Text.assemble(
                (f"↳ child run {event.run_id[:8]} (depth {event.depth})", "bold magenta"), " · ", details
            )
        from rich.console import Group
        from rich.rule import Rule

        parts: list[RenderableType] = [
            Rule(Text(f"RLM run {event.run_id[:8]}", style="bold cyan")),
            Text(details),
        ]
        if metadata.root_prompt:
            parts.append(Text(f"question: {self._truncate(metadata.root_prompt)}", style="italic"))
        return Group(*parts)

    def _iteration_panel(self, record: IterationRecord, depth: int) -> RenderableType:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        parts: list[RenderableType] = []
        prose = _without_code(record.response, [block.code for block in record.code_blocks])
        if prose:
            parts.append(Text(self._truncate(prose)))
        for index, block in enumerate(record.code_blocks, start=1):
            parts.extend(self._code_block(block, index))
        for note in record.notes:
            parts.append(Text(f"engine note: {self._truncate(note)}", style="dim italic"))
        for action in record.actions:
            said = action.detail.get("text") or action.detail.get("why") or ""
            parts.append(
                Text(
                    f"strategy {action.strategy}: {action.action}"
                    + (f": {self._truncate(str(said))}" if said else ""),
                    style="italic cyan",
                )
            )
        if record.final_answer is not None:
            source = f" ({record.answer_source})" if record.answer_source else ""
            parts.append(
                Text(f"final answer{source}: {self._truncate(record.final_answer)}", style="bold green")
            )
        prefix = f"↳ depth {depth} · " if depth > 0 else ""
        subtitle = (
            f"{record.duration:.1f}s · root {_tokens(record.root_usage)} · sub {_tokens(record.sub_usage)}"
        )
        return Panel(
            Group(*parts) if parts else Text("(empty response)", style="dim"),
            title=f"{prefix}Iteration {record.iteration}",
            title_align="left",
            subtitle=subtitle,
            subtitle_align="right",
            border_style="magenta" if depth > 0 else "blue",
        )

    def _code_block(self, block: CodeBlockRecord, index: int) -> list[RenderableType]:
        from rich.syntax import Syntax
        from rich.text import Text

        by = "" if block.author == "model" else f", run by {block.author}, not the model"
        parts: list[RenderableType] = [
            Text(f"code cell {index} ({block.duration:.2f}s{by})", style="bold"),
            Syntax(self._truncate(block.code), "python", theme="ansi_dark", word_wrap=True, padding=(0, 1)),
        ]
        if block.stdout:
            parts.append(Text("output:", style="bold"))
            parts.append(Text(self._truncate(block.stdout)))
        if block.stderr:
            parts.append(Text(f"stderr: {self._truncate(block.stderr)}", style="yellow"))
        if block.error:
            parts.append(Text(f"error: {self._truncate(block.error)}", style="bold red"))
        if block.timed_out:
            parts.append(Text("the cell timed out", style="bold red"))
        subcalls = block.subcalls
        if subcalls:
            from rich.tree import Tree

            tree = Tree(Text(f"sub-calls ({len(subcalls)})", style="bold"))
            for call in subcalls:
                self._add_subcall(tree, call)
            parts.append(tree)
        return parts

    def _add_subcall(self, tree: Tree, call: SubCallRecord) -> None:
        from rich.text import Text

        label = Text.assemble(
            (call.function, "bold"),
            f" · {call.model or '?'} · {_tokens(call.usage)} · {call.duration:.2f}s",
        )
        if call.child_run_id:
            label.append(f" · child run {call.child_run_id[:8]}, {call.child_iterations} iterations")
        if call.error:
            label.append(f" · error: {self._truncate(call.error)}", style="bold red")
        node = tree.add(label)
        for child in call.children:
            self._add_subcall(node, child)

    def _final_panel(self, result: RLMChatCompletion) -> RenderableType:
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        finished = result.stop_reason.value == "final"
        style = "green" if finished and result.error is None else ("yellow" if not result.error else "red")
        title = "Final answer" if finished else f"Stopped without a final answer ({result.stop_reason.value})"
        if result.answer_source and not finished:
            title = f"Answer from {result.answer_source} ({result.stop_reason.value})"
        parts: list[RenderableType] = [Text(self._truncate(result.response or "(no answer)"))]
        if result.error:
            parts.append(Text(f"error: {result.error}", style="bold red"))
        return Panel(Group(*parts), title=title, title_align="left", border_style=style)

    def _usage_table(self, result: RLMChatCompletion) -> RenderableType:
        from rich.table import Table

        summary = result.usage_summary
        table = Table(
            title=f"{result.iterations} iterations · {result.execution_time:.1f}s",
            title_justify="left",
        )
        for column in ("tier", "model", "calls", "input tokens", "output tokens", "cost"):
            table.add_column(column, justify="left" if column in ("tier", "model") else "right")
        for (tier, model), usage in sorted(summary.by_tier_model.items()):
            table.add_row(
                tier,
                model,
                f"{usage.calls:,}",
                f"{usage.input_tokens:,}",
                f"{usage.output_tokens:,}",
                _cost(usage.cost),
            )
        total = summary.total
        table.add_row(
            "total",
            "",
            f"{total.calls:,}",
            f"{total.input_tokens:,}",
            f"{total.output_tokens:,}",
            _cost(total.cost),
            style="bold",
        )
        return table

    def _child_result(self, result: RLMChatCompletion, depth: int) -> Text:
        from rich.text import Text

        preview = self._truncate(result.response or "(no answer)")
        text = Text.assemble(
            (f"↳ child run {result.run_id[:8]} (depth {depth}) ", "bold magenta"),
            f"{result.stop_reason.value} after {result.iterations} iterations, "
            f"{result.execution_time:.1f}s: ",
            (preview, "green"),
        )
        if result.error:
            text.append(f" · error: {result.error}", style="bold red")
        return text


class _StatusText:
    """Re-rendered on every refresh, so elapsed time moves while the run waits on a model.

    It reads the logger's state without its lock: the refresh thread holds rich's live lock while
    rendering, and taking ours there could deadlock against a print in progress.
    """

    def __init__(self, logger: ConsoleLogger) -> None:
        self.logger = logger

    def __rich__(self) -> Text:
        from rich.text import Text

        return Text(self.logger.status_text(), style="cyan")


_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def _without_code(response: str, codes: list[str]) -> str:
    """The response minus the fenced blocks that ran: they are shown highlighted below it."""
    ran = {code.strip() for code in codes}
    if not ran:
        return response.strip()
    stripped = _FENCE.sub(lambda m: "" if m.group(1).strip() in ran else m.group(0), response)
    return re.sub(r"\n{3,}", "\n\n", stripped).strip()


def _tokens(usage: TokenUsage) -> str:
    return f"{usage.input_tokens:,} in / {usage.output_tokens:,} out tok"


def _cost(cost: float | None) -> str:
    return "n/a" if cost is None else f"${cost:.4f}"


_HANDLERS: dict[EventKind, Any] = {
    EventKind.RUN_START: ConsoleLogger._on_run_start,
    EventKind.RUN_END: ConsoleLogger._on_run_end,
    EventKind.ITERATION_START: ConsoleLogger._on_iteration_start,
    EventKind.ITERATION_END: ConsoleLogger._on_iteration_end,
    EventKind.LM_CALL_START: ConsoleLogger._on_lm_call_start,
    EventKind.LM_CALL_END: ConsoleLogger._on_lm_call_end,
    EventKind.CODE_START: ConsoleLogger._on_code_start,
    EventKind.SUBCALL_START: ConsoleLogger._on_subcall_start,
}
