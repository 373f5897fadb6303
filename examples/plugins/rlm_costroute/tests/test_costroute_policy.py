"""What the cost policy decides, case by case, and how it behaves inside real runs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rlm_costroute import CostPolicy, PromptTooLongError, estimate_tokens

from rlm_core import RLM, ClientSet, LMRequest, Message, ModelUsage, Price, TokenUsage
from rlm_core.errors import ConfigurationError
from rlm_core.plugins import get_registry
from rlm_core.testing import ScriptedClient

CHEAP, MID, PREMIUM = Price(0.1, 0.4), Price(0.4, 1.6), Price(3.0, 15.0)


def clients(*specs: tuple[str, Price | None, int | None]) -> ClientSet:
    made = {name: ScriptedClient(["ok"], model_name=name, price=p, context_window=w) for name, p, w in specs}
    return ClientSet(clients=made, tiers=list(made), backends=dict.fromkeys(made, "scripted"))


THREE = clients(("premium", PREMIUM, 200_000), ("mid", MID, 128_000), ("cheap", CHEAP, 32_000))


def ask(size: int, depth: int = 1, max_tokens: int | None = 256, model: str | None = None) -> LMRequest:
    return LMRequest([Message("user", "x" * size)], depth=depth, model=model, max_tokens=max_tokens)


def test_short_prompts_go_to_the_cheapest_model_then_up_the_price_list() -> None:
    assert CostPolicy().select(ask(2_000), THREE) == ["cheap", "mid", "premium"]


def test_long_prompts_go_to_the_largest_window_first() -> None:
    assert CostPolicy().select(ask(20_000), THREE) == ["premium", "mid", "cheap"]


def test_a_model_whose_window_the_prompt_does_not_fit_is_never_chosen() -> None:
    policy = CostPolicy(long_prompt_tokens=100_000)  # a "short" prompt that is still too big for cheap
    assert policy.select(ask(40_000), THREE) == ["mid", "premium"]
    # The reply's max_tokens needs room in the window too: 31,900 bytes + 256 > 32,000.
    assert "cheap" not in policy.select(ask(31_900), THREE)
    assert "cheap" in policy.select(ask(31_900, max_tokens=50), THREE)
    # Without a max_tokens, expected_output_tokens (500) is kept free for the reply.
    assert "cheap" not in policy.select(ask(31_600, max_tokens=None), THREE)
    assert "cheap" in policy.select(ask(31_400, max_tokens=None), THREE)


def test_a_prompt_no_window_fits_is_an_error_that_says_what_to_do() -> None:
    with pytest.raises(
        PromptTooLongError,
        match=r"about 300016 tokens \(plus 256 for the reply\).*'premium' with 200000.*Split the prompt",
    ):
        CostPolicy().select(ask(300_000), THREE)


def test_unknown_windows_fit_but_rank_after_known_ones_for_long_prompts() -> None:
    mixed = clients(("unknown", PREMIUM, None), ("small", CHEAP, 32_000), ("large", MID, 128_000))
    assert CostPolicy().select(ask(20_000), mixed) == ["large", "small", "unknown"]
    assert CostPolicy().select(ask(100_000), mixed) == ["large", "unknown"]
    only_unknown = clients(("unknown", None, None))
    assert CostPolicy().select(ask(5_000_000), only_unknown) == ["unknown"]


def test_missing_prices_rank_last_and_ties_keep_the_configuration_order() -> None:
    mixed = clients(("free?", None, 64_000), ("b", CHEAP, 64_000), ("a", CHEAP, 64_000), ("c", MID, 64_000))
    assert CostPolicy().select(ask(1_000), mixed) == ["b", "a", "c", "free?"]
    # Equal windows for a long prompt: cheaper first, then configuration order.
    assert CostPolicy().select(ask(30_000), mixed) == ["b", "a", "c", "free?"]


def test_root_calls_stay_on_the_root_model_unless_route_root() -> None:
    assert CostPolicy().select(ask(100, depth=0), THREE) == "premium"
    assert CostPolicy(route_root=True).select(ask(100, depth=0), THREE) == ["cheap", "mid", "premium"]


def test_a_model_named_by_code_wins_and_fallback_false_returns_one_name() -> None:
    assert CostPolicy().select(ask(100, model="mid"), THREE) == "mid"
    assert CostPolicy(fallback=False).select(ask(100), THREE) == "cheap"


def test_models_restricts_the_candidates() -> None:
    policy = CostPolicy(models=["premium", "mid"])
    assert policy.select(ask(100), THREE) == ["mid", "premium"]
    with pytest.raises(ConfigurationError, match="'nope' is not configured"):
        CostPolicy(models=["nope"]).select(ask(100), THREE)


def test_bytes_per_token_scales_the_estimate() -> None:
    messages = [Message("user", "y" * 4_000)]
    assert estimate_tokens(messages) == 4_000 + 16
    assert estimate_tokens(messages, bytes_per_token=4.0) == 1_000 + 16
    # 20,000 bytes is long at 1 byte per token, short at 4.
    assert CostPolicy(bytes_per_token=4.0).select(ask(20_000), THREE)[0] == "cheap"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"long_prompt_tokens": 0}, "long_prompt_tokens must be a positive int"),
        ({"expected_output_tokens": True}, "expected_output_tokens must be a positive int"),
        ({"bytes_per_token": 0.5}, "bytes_per_token must be between 1.0"),
        ({"models": "cheap"}, "models must be a non-empty list"),
    ],
)
def test_bad_settings_are_clear_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CostPolicy(**settings)  # type: ignore[arg-type]


def run_script(routing: object) -> tuple[str, dict[str, int], dict[str, ModelUsage]]:
    """One root call whose code makes a short and a long sub-call; returns the answer, and the calls and
    the cost per model from the run's own ledger."""
    code = "```repl\nFINAL(llm_query('short question') + ' / ' + llm_query('z' * 30000))\n```"

    def reply(name: str) -> Callable[[LMRequest], str]:
        return lambda req: code if req.depth == 0 else f"{name} answered"

    made = [
        ScriptedClient(reply(name), model_name=name, price=price, context_window=window)
        for name, price, window in (
            ("premium", PREMIUM, 200_000),
            ("mid", MID, 128_000),
            ("cheap", CHEAP, 32_000),
        )
    ]
    with RLM(backend=made[0], other_backends=made[1:], routing=routing) as rlm:  # type: ignore[arg-type]
        result = rlm.completion("context")
    assert result.error is None, result.error
    totals = result.usage_summary.model_totals()
    calls = {client.model_name: len(client.requests) for client in made}
    assert {model: usage.calls for model, usage in totals.items()} == {m: n for m, n in calls.items() if n}
    return result.response, calls, totals


@pytest.mark.usefixtures("discoverable")
def test_registered_as_cost_and_routes_a_real_run() -> None:
    info = next(i for i in get_registry().plugin_infos() if i.name == "costroute")
    assert info.distribution == "rlm-costroute" and info.registered == {"routing_policies": ["cost"]}
    response, calls, usage = run_script("cost")
    assert response == "cheap answered / premium answered"
    assert calls == {"premium": 2, "mid": 0, "cheap": 1}
    # The default tiered routing sends both sub-calls to the first sub tier instead.
    tiered_response, tiered_calls, _ = run_script("tiered")
    assert tiered_response == "mid answered / mid answered"
    assert tiered_calls == {"premium": 1, "mid": 2, "cheap": 0}
    # The ledger charged the short call at the cheap model's price: a quarter of mid's for the same tokens.
    short = TokenUsage(usage["cheap"].input_tokens, usage["cheap"].output_tokens)
    assert usage["cheap"].cost == pytest.approx(CHEAP.cost(short)) and CHEAP.cost(short) == pytest.approx(
        MID.cost(short) / 4
    )


def test_a_prompt_too_long_for_every_model_surfaces_in_the_repl() -> None:
    code = (
        "```repl\n"
        "try:\n"
        "    llm_query('w' * 50000)\n"
        "except Exception as exc:\n"
        "    FINAL(type(exc).__name__ + ': ' + str(exc))\n"
        "```"
    )
    root = ScriptedClient([code], model_name="root", price=PREMIUM, context_window=None)
    small = ScriptedClient(["never"], model_name="small", price=CHEAP, context_window=8_000)
    with RLM(backend=root, other_backends=[small], routing=CostPolicy(models=["small"])) as rlm:
        result = rlm.completion("context")
    assert result.response.startswith("PromptTooLongError: a prompt of about 50016 tokens"), result.response
    assert "fits no configured model; the largest window is 'small' with 8000" in result.response
    assert small.requests == []
