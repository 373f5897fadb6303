"""Budget accounting: never over a limit, whatever the call sequence, concurrency or estimates."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rlm_core.engine.budget import Reservation, TierBudget
from rlm_core.engine.tokens import TokenEstimator
from rlm_core.errors import BudgetExceededError
from rlm_core.types import Message, TokenUsage

calls = st.lists(
    st.tuples(
        st.integers(1, 5000),  # provider's real prompt count
        st.integers(0, 3000),  # how much the estimate overshoots it
        st.one_of(st.none(), st.integers(1, 4000)),  # requested output cap
        st.floats(0, 1),  # share of the granted output the model uses
        st.booleans(),  # settle now (True) or keep in flight (False)
    ),
    max_size=60,
)


@given(st.integers(50, 50_000), calls)
@settings(max_examples=300)
def test_used_tokens_never_exceed_the_limit(limit: int, sequence: list) -> None:
    budget = TierBudget("sub", limit)
    in_flight: list[tuple[Reservation, TokenUsage]] = []
    for prompt, overshoot, wanted, share, settle_now in sequence:
        try:
            reservation = budget.reserve(prompt + overshoot, wanted)
        except BudgetExceededError as exc:
            assert exc.tier == "sub" and exc.limit == limit
            continue
        assert reservation.max_tokens >= 1
        usage = TokenUsage(prompt, int(reservation.max_tokens * share))
        in_flight.append((reservation, usage))
        if settle_now:
            budget.settle(*in_flight.pop())
        assert budget.used + budget.reserved <= limit
    for reservation, usage in in_flight:
        budget.settle(reservation, usage)
    assert budget.used <= limit
    assert budget.reserved == 0


def test_failed_calls_release_their_reservation() -> None:
    budget = TierBudget("root", 100)
    reservation = budget.reserve(60, 30)
    budget.settle(reservation, None)
    assert budget.used == 0 and budget.remaining == 100


def test_output_cap_is_what_is_left() -> None:
    budget = TierBudget("root", 1000)
    assert budget.reserve(900, None).max_tokens == 100


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
