"""Budget accounting: never over a limit, whatever the call sequence, concurrency or estimates."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_core.engine.budget import DEFAULT_OUTPUT_RESERVE, Allowance, CallCounter, TierBudget
from rlm_core.engine.tokens import TokenEstimator
from rlm_core.errors import BudgetExceededError, CallLimitError, CostLimitError
from rlm_core.types import Message

calls = st.lists(
    st.tuples(
        st.integers(1, 5000),  # provider's real prompt count
        st.integers(0, 3000),  # how much the estimate overshoots it
        st.one_of(st.none(), st.integers(1, 4000)),  # requested output cap
        st.floats(0, 1),  # share of the granted output the model uses
        st.integers(0, 5),  # how many loop turns the call stays in flight
    ),
    max_size=60,
)


@given(st.integers(50, 50_000), calls)
@settings(max_examples=200, deadline=None)
def test_concurrent_calls_never_pass_the_limit_and_only_fail_when_it_is_spent(
    limit: int, sequence: list
) -> None:
    budget = TierBudget("sub", limit)

    async def call(prompt: int, overshoot: int, wanted: int | None, share: float, turns: int) -> None:
        estimate = prompt + overshoot
        try:
            reservation = await budget.reserve(estimate, 1, wanted or DEFAULT_OUTPUT_RESERVE)
        except BudgetExceededError as exc:
            # Only a budget that is really spent fails a call.
            assert exc.tier == "sub" and budget.used + estimate + 1 > limit
            return
        assert reservation.max_tokens >= 1
        assert budget.used + budget.reserved <= limit
        for _ in range(turns):
            await asyncio.sleep(0)
        budget.settle(reservation, prompt + int(reservation.max_tokens * share))
        assert budget.used <= limit

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(call(*c) for c in sequence)), timeout=10)

    asyncio.run(main())
    assert budget.used <= limit
    assert budget.reserved == 0


async def test_a_call_waits_for_reservations_instead_of_failing() -> None:
    budget = TierBudget("sub", 20_000)
    first = await budget.reserve(100, 1, 8192)
    second = await budget.reserve(100, 1, 8192)
    third = asyncio.ensure_future(budget.reserve(100, 1, 8192))
    await asyncio.sleep(0.01)
    assert not third.done()  # 3 x 8,292 would pass 20,000: it waits, it does not fail
    budget.settle(first, 150)
    granted = await asyncio.wait_for(third, 1)
    assert granted.max_tokens == 8192  # not cut to what the others happened to leave
    budget.settle(second, 150)
    budget.settle(granted, 150)
    assert budget.used == 450 and budget.reserved == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    budget = TierBudget("sub", 10_000)
    holder = await budget.reserve(100, 1, 9000)
    order: list[str] = []

    async def wait(name: str, wanted: int) -> None:
        reservation = await budget.reserve(10, 1, wanted)
        order.append(name)
        budget.settle(reservation, 20)

    big = asyncio.ensure_future(wait("big", 5000))
    await asyncio.sleep(0)
    small = asyncio.ensure_future(wait("small", 10))
    await asyncio.sleep(0.01)
    assert order == []  # the small call fits, but it arrived after the big one
    budget.settle(holder, 200)
    await asyncio.wait_for(asyncio.gather(big, small), 1)
    assert order == ["big", "small"]


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    budget = TierBudget("sub", 10_000)
    holder = await budget.reserve(100, 1, 9000)
    stuck = asyncio.ensure_future(budget.reserve(10, 1, 5000))
    behind = asyncio.ensure_future(budget.reserve(10, 1, 5000))
    await asyncio.sleep(0.01)
    stuck.cancel()
    await asyncio.sleep(0)
    budget.settle(holder, 100)
    granted = await asyncio.wait_for(behind, 1)
    assert granted.max_tokens == 5000 and stuck.cancelled()


async def test_only_a_spent_budget_fails_and_lowers_the_cap() -> None:
    budget = TierBudget("root", 1000)
    budget.add_used(800)
    assert (await budget.reserve(100, 1, 500)).max_tokens == 100  # what is spent leaves 100
    with pytest.raises(BudgetExceededError):
        await budget.reserve(200, 1, 10)


async def test_failed_calls_release_their_reservation() -> None:
    budget = TierBudget("root", 100)
    reservation = await budget.reserve(60, 1, 30)
    budget.settle(reservation, None)
    assert budget.used == 0 and budget.remaining == 100


async def test_cost_allowance_lowers_the_output_cap_to_what_the_money_buys() -> None:
    cost = Allowance("cost", 0.01, unit="usd")  # one cent
    # $1/Mtok in, $10/Mtok out: a 1,000-token prompt costs $0.001, leaving $0.009 = 900 output tokens.
    reservation = await cost.reserve(1000 * 1e-6, 10e-6, 8192)
    assert reservation.max_tokens == 900
    cost.settle(reservation, 0.0095)
    with pytest.raises(CostLimitError, match="max_cost"):
        await cost.reserve(1000 * 1e-6, 10e-6, 8192)


def test_call_counter_fails_the_call_past_the_limit() -> None:
    counter = CallCounter(2)
    counter.start()
    counter.start()
    with pytest.raises(CallLimitError, match="max_llm_calls=2"):
        counter.start()


@given(st.text(min_size=0, max_size=3000), st.integers(1, 4))
def test_estimate_before_learning_is_an_upper_bound_of_bytes(text: str, count: int) -> None:
    messages = [Message("user", text)] * count
    estimate = TokenEstimator().estimate(messages)
    assert estimate >= len(text.encode("utf-8")) * count


def test_estimator_learns_but_stays_above_what_it_saw() -> None:
    estimator = TokenEstimator()
    messages = [Message("user", "word " * 1000)]
    estimator.observe(messages, provider_input_tokens=1020)
    estimate = estimator.estimate(messages)
    assert 1020 <= estimate < 5000
