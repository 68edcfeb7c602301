"""RetryPolicy: capped exponential back-off with full jitter, 429 budget, Retry-After, and the
time budget of a window's own 429s."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.errors import (
    ConfigError,
    RateLimitedError,
    RetryableError,
    ServerError,
    ShapeError,
    TransportError,
)
from harvester.fetch.backoff import (
    FIRST_429_SHARE,
    RETRY_AFTER_SPREAD,
    OwnRateLimitedError,
    RetryPolicy,
)

rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 20),
    max_rate_limited=st.integers(0, 100),
    base_delay_s=st.floats(0.0, 5.0),
    max_delay_s=st.floats(0.0, 120.0),
    max_retry_after_s=st.floats(0.0, 600.0),
    window_429_budget_s=st.floats(0.0, 300.0),
)
hints = st.none() | st.floats(min_value=-5.0, max_value=200_000.0) | st.just(float("nan"))
ordinary_errors = st.sampled_from(
    [ServerError("HTTP 503", 503), TransportError("reset"), ShapeError("truncated")]
)


def test_defaults_match_the_contract() -> None:
    """The default budgets and delays are those the pool and the docs rely on."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.max_rate_limited) == (8, 50)
    assert (policy.base_delay_s, policy.max_delay_s, policy.max_retry_after_s) == (0.5, 30.0, 300.0)
    assert policy.window_429_budget_s == 90.0


def test_full_jitter_doubles_up_to_the_cap() -> None:
    """With rand just below 1 the waits are 0.5, 1, 2, 4, 8, 16, 30 (capped) seconds."""
    policy = RetryPolicy(max_attempts=100)
    error = ServerError("HTTP 500", 500)
    rand = 1.0 - 1e-12
    delays = [policy.delay_for(n, 0, error, rand) for n in range(1, 9)]
    assert delays == pytest.approx([0.5, 1, 2, 4, 8, 16, 30, 30])
    assert policy.delay_for(3, 0, error, 0.25) == pytest.approx(0.5)
    assert policy.delay_for(3, 0, error, 0.0) == 0.0


def test_ordinary_errors_give_up_after_max_attempts() -> None:
    """The 8th failed attempt is the last: no ninth is asked for."""
    policy = RetryPolicy()
    error = TransportError("connection reset")
    assert policy.delay_for(7, 0, error, 0.5) is not None
    assert policy.delay_for(8, 0, error, 0.5) is None


def test_rate_limited_answers_do_not_spend_the_ordinary_budget() -> None:
    """Many 429s after 7 ordinary failures still get retried, up to their own budget."""
    policy = RetryPolicy()
    assert policy.delay_for(7, 49, RateLimitedError("429"), 0.5) is not None
    assert policy.delay_for(7, 50, RateLimitedError("429"), 0.5) is None


def test_retry_after_is_honoured_with_a_small_spread() -> None:
    """Retry-After: 12 waits 12 s plus at most 10 % so workers do not wake together."""
    policy = RetryPolicy()
    error = RateLimitedError("429", retry_after=12.0)
    assert policy.delay_for(0, 1, error, 0.0) == 12.0
    assert policy.delay_for(0, 1, error, 0.999) == pytest.approx(13.2, abs=0.01)


def test_retry_after_beyond_the_limit_is_shortened() -> None:
    """A Retry-After of an hour (on a call's second 429) is obeyed only up to max_retry_after_s."""
    policy = RetryPolicy(max_retry_after_s=60.0)
    delay = policy.delay_for(0, 2, RateLimitedError("429", retry_after=3600.0), 0.0)
    assert delay == 60.0


def test_nan_retry_after_falls_back_to_exponential_backoff() -> None:
    """A Retry-After that is not a number is ignored in favour of the jittered back-off."""
    policy = RetryPolicy()
    delay = policy.delay_for(0, 3, RateLimitedError("429", retry_after=float("nan")), 0.5)
    assert delay == pytest.approx(0.5 * 2.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_rate_limited": -1},
        {"base_delay_s": -1.0},
        {"max_delay_s": float("nan")},
    ],
)
def test_invalid_policies_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    """Budgets below their minimum and negative or NaN delays are refused up front."""
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)


@settings(max_examples=300, deadline=None)
@given(policy=policies, attempts=st.integers(1, 10_000), error=ordinary_errors, rand=rands)
def test_ordinary_delays_are_bounded_and_give_up_exactly_at_the_budget(
    policy: RetryPolicy, attempts: int, error: RetryableError, rand: float
) -> None:
    """Waits lie in [0, min(max_delay, base·2^(n-1))); None exactly from max_attempts on."""
    delay = policy.delay_for(attempts, 0, error, rand)
    if attempts >= policy.max_attempts:
        assert delay is None
        return
    assert delay is not None
    assert 0.0 <= delay <= policy.max_delay_s
    assert delay <= policy.base_delay_s * 2.0 ** min(attempts - 1, 1000)


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    attempts=st.integers(0, 30),
    rate_limited=st.integers(1, 200),
    retry_after=st.none() | st.floats(min_value=-5.0, max_value=10_000.0),
    rand=rands,
)
def test_rate_limited_delays_honour_retry_after_and_their_own_budget(
    policy: RetryPolicy,
    attempts: int,
    rate_limited: int,
    retry_after: float | None,
    rand: float,
) -> None:
    """429s give up exactly at max_rate_limited whatever the ordinary count; Retry-After is
    waited out in full (up to max_retry_after_s), otherwise the jittered cap applies."""
    delay = policy.delay_for(attempts, rate_limited, RateLimitedError("429", retry_after), rand)
    if rate_limited >= policy.max_rate_limited:
        assert delay is None
        return
    assert delay is not None
    assert delay >= 0.0
    if retry_after is None:
        assert delay <= policy.max_delay_s
        return
    honoured = min(max(retry_after, 0.0), policy.max_retry_after_s)
    spread = RETRY_AFTER_SPREAD * max(honoured, policy.base_delay_s)
    if rate_limited == 1:
        first_cap = FIRST_429_SHARE * policy.window_429_budget_s
        assert min(honoured, first_cap) <= delay <= min(honoured + spread, first_cap)
    else:
        assert honoured <= delay <= honoured + spread


@settings(max_examples=100, deadline=None)
@given(policy=policies, attempts=st.integers(1, 50), error=ordinary_errors)
def test_jitter_spans_the_whole_interval(
    policy: RetryPolicy, attempts: int, error: RetryableError
) -> None:
    """Full jitter: the wait scales linearly with rand from 0 up to the step's cap."""
    low = policy.delay_for(attempts, 0, error, 0.0)
    mid = policy.delay_for(attempts, 0, error, 0.5)
    if attempts >= policy.max_attempts:
        assert low is None
        return
    assert low == 0.0
    assert mid == pytest.approx(0.5 * policy.backoff_cap(attempts))


def test_a_first_429_waits_at_most_a_third_of_the_window_budget() -> None:
    """Retry-After: 86400 on a call's first 429 (whose 429 it is cannot be told yet) waits
    30 s with the default 90 s budget; on its second account-wide 429, the usual 300 s."""
    policy = RetryPolicy()
    day = RateLimitedError("429", retry_after=86400.0)
    assert policy.delay_for(0, 1, day, 0.5) == 30.0
    assert policy.delay_for(0, 2, day, 0.0) == 300.0


def test_an_own_429_whose_hint_outlasts_the_budget_gives_up_at_once() -> None:
    """A window's own 429 saying "come back tomorrow" (or in 80 s, with 20 s of the budget
    left) is given up now rather than slept on."""
    policy = RetryPolicy()
    assert policy.delay_for(0, 2, OwnRateLimitedError("429", 86400.0), 0.0, held_s=0.0) is None
    assert policy.delay_for(0, 5, OwnRateLimitedError("429", 80.0), 0.0, held_s=70.0) is None


def test_own_429s_are_retried_while_the_budget_lasts() -> None:
    """Own 429s wait as any 429 (hint, else jittered back-off) while the wait ends within the
    budget: 60 s of hint fits at 25 s held, 10 s of back-off no longer fits at 85 s held."""
    policy = RetryPolicy()
    assert policy.delay_for(0, 2, OwnRateLimitedError("429", 60.0), 0.0, held_s=25.0) == 60.0
    no_hint = OwnRateLimitedError("429 soon-ish")
    assert policy.delay_for(0, 6, no_hint, 0.5, held_s=10.0) == pytest.approx(8.0)
    assert policy.delay_for(0, 6, no_hint, 0.625, held_s=85.0) is None


def test_account_wide_429s_keep_their_long_waits_whatever_the_time_held() -> None:
    """When 429s are the account's, the window budget does not apply: a day's hint is still
    waited out up to max_retry_after_s, after any time spent."""
    policy = RetryPolicy()
    error = RateLimitedError("429", retry_after=86400.0)
    assert policy.delay_for(0, 7, error, 0.0, held_s=10_000.0) == 300.0


@settings(max_examples=300, deadline=None)
@given(
    policy=policies,
    first_hint=hints,
    steps=st.lists(st.tuples(hints, rands, st.floats(0.0, 5.0)), min_size=1, max_size=300),
    rand=rands,
)
def test_a_window_refused_on_its_own_gives_up_within_the_budget_whatever_the_hints(
    policy: RetryPolicy,
    first_hint: float | None,
    steps: list[tuple[float | None, float, float]],
    rand: float,
) -> None:
    """A call whose first 429 is followed by its own 429s only, with any hints, draws and
    request times, waits at most a third of the budget after the first, never sleeps past
    the budget counted from its first own 429, and gives up (it is never told to go on
    after max_rate_limited 429s)."""
    first = policy.delay_for(0, 1, RateLimitedError("429", first_hint), rand)
    if first is None:
        assert policy.max_rate_limited <= 1
        return
    assert first <= FIRST_429_SHARE * policy.window_429_budget_s
    held = 0.0
    for count, (hint, draw, request_s) in enumerate(steps, start=2):
        held += request_s
        delay = policy.delay_for(0, count, OwnRateLimitedError("429", hint), draw, held_s=held)
        if delay is None:
            return
        assert count < policy.max_rate_limited
        held += delay
        assert held <= policy.window_429_budget_s
