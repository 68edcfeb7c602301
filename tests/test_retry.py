"""RetryPolicy: capped exponential back-off with full jitter, 429 budget, Retry-After."""

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
from harvester.retry import RETRY_AFTER_SPREAD, RetryPolicy

rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 20),
    max_rate_limited=st.integers(0, 100),
    base_delay_s=st.floats(0.0, 5.0),
    max_delay_s=st.floats(0.0, 120.0),
    max_retry_after_s=st.floats(0.0, 600.0),
)
ordinary_errors = st.sampled_from(
    [ServerError("HTTP 503", 503), TransportError("reset"), ShapeError("truncated")]
)


def test_defaults_match_the_contract() -> None:
    """The default budgets and delays are those the pool and the docs rely on."""
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.max_rate_limited) == (8, 50)
    assert (policy.base_delay_s, policy.max_delay_s, policy.max_retry_after_s) == (0.5, 30.0, 300.0)


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
    """A Retry-After of an hour is obeyed only up to max_retry_after_s."""
    policy = RetryPolicy(max_retry_after_s=60.0)
    delay = policy.delay_for(0, 1, RateLimitedError("429", retry_after=3600.0), 0.0)
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
    assert honoured <= delay <= honoured + RETRY_AFTER_SPREAD * max(honoured, policy.base_delay_s)


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
