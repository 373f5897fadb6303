"""A contract test suite for routing policies: subclass it in a plugin's tests to run every test against it.

Usage::

    import pytest
    from rlm_core.testing.routing_contract import RoutingContract

    class TestMyPolicy(RoutingContract):
        @pytest.fixture
        def policy(self):
            return MyPolicy(threshold=1000)

Every test gets a fresh policy from the fixture. The client sets below mix priced and unpriced clients,
known and unknown context windows, and two clients that share a model name, so a policy that reads
``client.price`` or ``client.context_window`` meets the cases real configurations have.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from rlm_core import RLM
from rlm_core.clients.base import Price
from rlm_core.errors import RLMError
from rlm_core.routing import ClientSet, RoutingPolicy
from rlm_core.testing.scripted import ScriptedClient
from rlm_core.types import LMRequest, Message

SHORT_PROMPT = "Summarise this line in five words."
# Long enough to pass any sensible "long prompt" threshold, small enough for every window that is known.
LONG_PROMPT = "The quarterly ledger lists one hundred entries. " * 400  # ~19,600 characters
DEPTHS = (0, 1, 2, 3, 7, 50)


def scripted(
    model_name: str, price: Price | None = None, context_window: int | None = None
) -> ScriptedClient:
    return ScriptedClient(["ok"], model_name=model_name, price=price, context_window=context_window)


def tiered_clients() -> ClientSet:
    """A root model and two sub tiers with different prices and windows."""
    clients = {
        "large": scripted("large", Price(3.0, 15.0), 200_000),
        "medium": scripted("medium", Price(0.4, 1.6), 128_000),
        "small": scripted("small", Price(0.1, 0.4), 32_000),
    }
    return ClientSet(
        clients=clients, tiers=["large", "medium", "small"], backends=dict.fromkeys(clients, "x")
    )


def single_client() -> ClientSet:
    """One client with neither a price nor a window: everything must go to it."""
    return ClientSet(clients={"only": scripted("only")}, tiers=["only"], backends={"only": "scripted"})


def shared_model_clients() -> ClientSet:
    """Two backends serving the same model name (``m`` and ``other:m``), as ``RLM`` names them."""
    clients = {
        "root": scripted("root", Price(1.0, 4.0), 100_000),
        "m": scripted("m", Price(0.2, 0.8), 64_000),
        "other:m": scripted("m", None, None),
    }
    backends = {"root": "scripted", "m": "scripted", "other:m": "other"}
    return ClientSet(clients=clients, tiers=["root", "m", "other:m"], backends=backends)


CLIENT_SETS = {"tiered": tiered_clients, "single": single_client, "shared": shared_model_clients}


def request(depth: int, prompt: str = SHORT_PROMPT, model: str | None = None) -> LMRequest:
    purpose = "root" if depth == 0 else "llm_query"
    return LMRequest([Message("user", prompt)], depth=depth, model=model, max_tokens=256, purpose=purpose)


def selected_names(selected: str | Sequence[str], clients: ClientSet) -> list[str]:
    """The names a ``select`` answer stands for, checked: non-empty, strings, all configured."""
    names = [selected] if isinstance(selected, str) else list(selected)
    assert names, "select() returned no client name; return a name or a non-empty list of names"
    for name in names:
        assert isinstance(name, str), f"select() returned {name!r}, not a client name (str)"
        assert name in clients.clients, f"select() returned {name!r}; configured: {sorted(clients.clients)}"
    return names


def answer_key(selected: str | Sequence[str]) -> tuple[str, ...]:
    return (selected,) if isinstance(selected, str) else tuple(selected)


def rotation_period(answers: list[tuple[str, ...]], limit: int) -> int | None:
    """The smallest period (at most ``limit``) with which ``answers`` repeat, or None."""
    for period in range(1, limit + 1):
        if all(answers[i] == answers[i + period] for i in range(len(answers) - period)):
            return period
    return None


class RoutingContract:
    """The behaviour every rlm-core routing policy shares. Provide a ``policy`` fixture."""

    @pytest.fixture
    def policy(self) -> RoutingPolicy:
        pytest.fail("a RoutingContract subclass must provide a `policy` fixture returning a fresh policy")

    # -- the contract --------------------------------------------------------------------------

    def test_it_is_a_routing_policy(self, policy: RoutingPolicy) -> None:
        assert isinstance(policy, RoutingPolicy), "a routing policy needs select(request, clients)"

    @pytest.mark.parametrize("client_set", sorted(CLIENT_SETS))
    def test_selects_only_configured_names(self, policy: RoutingPolicy, client_set: str) -> None:
        clients = CLIENT_SETS[client_set]()
        for depth in DEPTHS:
            for prompt in (SHORT_PROMPT, LONG_PROMPT):
                selected_names(policy.select(request(depth, prompt), clients), clients)

    def test_depth_zero_and_depths_beyond_the_tiers(self, policy: RoutingPolicy) -> None:
        clients = tiered_clients()
        for depth in (0, len(clients.tiers), 1_000):
            selected_names(policy.select(request(depth), clients), clients)

    @pytest.mark.parametrize("client_set", sorted(CLIENT_SETS))
    def test_a_model_named_by_code_wins(self, policy: RoutingPolicy, client_set: str) -> None:
        clients = CLIENT_SETS[client_set]()
        for name, client in clients.clients.items():
            for depth in (0, 1, 5):
                by_key = selected_names(policy.select(request(depth, model=name), clients), clients)
                assert by_key[0] == name, f"llm_query(model={name!r}) at depth {depth} went to {by_key[0]!r}"
                by_model = selected_names(
                    policy.select(request(depth, model=client.model_name), clients), clients
                )
                assert clients.clients[by_model[0]].model_name == client.model_name

    def test_an_unconfigured_model_is_an_error_that_names_it(self, policy: RoutingPolicy) -> None:
        with pytest.raises(RLMError, match="no-such-model"):
            policy.select(request(1, model="no-such-model"), tiered_clients())

    def test_clients_sharing_a_model_name_stay_apart(self, policy: RoutingPolicy) -> None:
        clients = shared_model_clients()
        seen: set[str] = set()
        for depth in DEPTHS:
            for prompt in (SHORT_PROMPT, LONG_PROMPT):
                seen.update(selected_names(policy.select(request(depth, prompt), clients), clients))
        assert seen <= {"root", "m", "other:m"}
        chosen = selected_names(policy.select(request(2, model="other:m"), clients), clients)
        assert chosen[0] == "other:m"

    @pytest.mark.parametrize("client_set", sorted(CLIENT_SETS))
    def test_answers_are_deterministic(self, policy: RoutingPolicy, client_set: str) -> None:
        """The same request, asked again and again, gets one answer, or answers that rotate with a fixed
        period no longer than the number of clients (round robin): never a random one."""
        clients = CLIENT_SETS[client_set]()
        for depth in (0, 1, 3):
            for prompt in (SHORT_PROMPT, LONG_PROMPT):
                limit = len(clients.clients)
                answers = [
                    answer_key(policy.select(request(depth, prompt), clients)) for _ in range(4 * limit + 4)
                ]
                assert rotation_period(answers, limit) is not None, (
                    f"depth {depth}: answers {answers} do not repeat with a period <= {limit}"
                )

    def test_usable_from_several_threads(self, policy: RoutingPolicy) -> None:
        clients = tiered_clients()
        asks = [request(depth, prompt) for depth in (0, 1, 2) for prompt in (SHORT_PROMPT, LONG_PROMPT)]
        alone = {id(ask): answer_key(policy.select(ask, clients)) for ask in asks}
        # A policy that rotates (round robin) answers the same request differently when asked twice in a row.
        stable = all(
            alone[id(ask)]
            == answer_key(policy.select(ask, clients))
            == answer_key(policy.select(ask, clients))
            for ask in asks
        )
        results: list[tuple[int, tuple[str, ...]]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def work() -> None:
            try:
                for _ in range(50):
                    for ask in asks:
                        answer = answer_key(policy.select(ask, clients))
                        with lock:
                            results.append((id(ask), answer))
            except BaseException as exc:
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, f"select() raised in a thread: {errors[0]!r}"
        assert len(results) == 8 * 50 * len(asks)
        for ask_id, answer in results:
            selected_names(list(answer), clients)
            if stable:  # a policy without rotation answers from threads exactly as alone
                assert answer == alone[ask_id]

    def test_routes_a_real_rlm_run(self, policy: RoutingPolicy) -> None:
        root_code = (
            "```repl\n"
            "short = llm_query('a short question')\n"
            "batch = llm_query_batched(['first', 'second', 'third'])\n"
            f"long = llm_query('{LONG_PROMPT[:4000]}' * 5)\n"
            "named = llm_query('for the small model', model='small')\n"
            "FINAL('|'.join([short, *batch, long, named]))\n"
            "```"
        )

        def reply_for(model_name: str) -> Callable[[LMRequest], str]:
            # Whoever the policy picks for a depth-0 call plays the root and runs the script.
            return lambda req: root_code if req.depth == 0 else f"answer from {model_name}"

        # The clients of tiered_clients(), each answering with its own name, configured as an RLM would be.
        backends = [
            ScriptedClient(
                reply_for(c.model_name),
                model_name=c.model_name,
                price=c.price,
                context_window=c.context_window,
            )
            for c in tiered_clients().clients.values()
        ]
        models = {client.model_name for client in backends}
        with RLM(backend=backends[0], other_backends=backends[1:], routing=policy, max_iterations=3) as rlm:
            result = rlm.completion("a context")
        assert result.error is None, result.error
        parts = result.response.split("|")
        assert len(parts) == 6 and all(p.startswith("answer from ") for p in parts), result.response
        assert {p.removeprefix("answer from ") for p in parts} <= models
        assert parts[-1] == "answer from small"  # the model named by code
        served = sum(len(client.requests) for client in backends)
        assert served == 1 + 6  # one root call and six sub-calls, each served exactly once
