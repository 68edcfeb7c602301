"""with_retries: the async retry driver, with scripted calls, a recording policy, fake sleep
and a fake clock; and a window refused on its own through a real RequestGate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from harvester.errors import (
    AuthError,
    FatalRemoteError,
    RateLimitedError,
    RetryableError,
    ServerError,
    ShapeError,
    TransportError,
)
from harvester.fetch.backoff import OwnRateLimitedError, RetryPolicy
from harvester.fetch.retrying import with_retries
from tests.support.counting_gate import CountingGate


@dataclass
class RecordingPolicy:
    """Gives the scripted delays in order, then None; records what it was asked."""

    delays: Sequence[float | None]
    asked: list[tuple[int, int, RetryableError, float]] = field(default_factory=list)
    held: list[float] = field(default_factory=list)

    def delay_for(
        self,
        attempts: int,
        rate_limited: int,
        error: RetryableError,
        rand: float,
        *,
        held_s: float = 0.0,
    ) -> float | None:
        self.asked.append((attempts, rate_limited, error, rand))
        self.held.append(held_s)
        index = len(self.asked) - 1
        return self.delays[index] if index < len(self.delays) else None


@dataclass
class Script:
    """A call that raises the scripted errors in turn, then returns ``result``."""

    errors: Sequence[BaseException]
    result: str = "done"
    calls: int = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= len(self.errors):
            raise self.errors[self.calls - 1]
        return self.result


@dataclass
class FakeSleep:
    """Records each sleep and moves a fake clock on by it (``now`` is the clock)."""

    slept: list[float] = field(default_factory=list)
    time: float = 0.0

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += seconds

    def now(self) -> float:
        return self.time


def run(
    call: Callable[[], Awaitable[str]],
    policy: RecordingPolicy | RetryPolicy,
    sleep: FakeSleep,
    *,
    on_retry: Callable[[RetryableError, float], None] | None = None,
    rand: Callable[[], float] = lambda: 0.5,
) -> Awaitable[str]:
    what = "window 1041 2024-02-05 22:00"
    return with_retries(
        call, policy, what=what, on_retry=on_retry, rand=rand, sleep=sleep, clock=sleep.now
    )


async def test_retries_then_succeeds_sleeping_the_policy_delays() -> None:
    """Two retryable failures, then success: the result is returned after sleeping exactly the
    delays the policy chose, and on_retry sees each error with its delay."""
    first, second = ServerError("HTTP 503", 503), TransportError("reset")
    call, policy, sleep = Script([first, second]), RecordingPolicy([1.5, 4.0]), FakeSleep()
    seen: list[tuple[RetryableError, float]] = []
    result = await run(call, policy, sleep, on_retry=lambda e, d: seen.append((e, d)))
    assert result == "done"
    assert call.calls == 3
    assert sleep.slept == [1.5, 4.0]
    assert seen == [(first, 1.5), (second, 4.0)]


async def test_gives_up_with_the_same_class_naming_what_and_attempts() -> None:
    """When the policy says None, the last error is raised again as the same class with its
    status kept, a message naming the call and the attempts, chained to the original."""
    errors = [TransportError("reset"), ShapeError("truncated"), ServerError("HTTP 502: bad", 502)]
    call, sleep = Script(errors), FakeSleep()
    with pytest.raises(ServerError) as caught:
        await run(call, RecordingPolicy([0.1, 0.2]), sleep)
    assert caught.value.status == 502
    assert str(caught.value) == (
        "window 1041 2024-02-05 22:00: gave up after 3 attempts; last error: HTTP 502: bad"
    )
    assert caught.value.__cause__ is errors[-1]
    assert call.calls == 3
    assert sleep.slept == [0.1, 0.2]


@pytest.mark.parametrize("error", [TransportError("reset"), ShapeError("not json")])
async def test_give_up_keeps_the_class_of_plain_retryable_errors(error: RetryableError) -> None:
    """Transport and shape errors are re-raised as their own class after the budget."""
    with pytest.raises(type(error), match="gave up after 1 attempts"):
        await run(Script([error]), RecordingPolicy([]), FakeSleep())


async def test_rate_limited_give_up_keeps_retry_after_and_counts_429s() -> None:
    """A 429 give-up is a RateLimitedError with its retry_after and the 429 count named."""
    errors = [RateLimitedError("429", 3.0), RateLimitedError("429", 9.0)]
    with pytest.raises(RateLimitedError) as caught:
        await run(Script(errors), RecordingPolicy([3.0]), FakeSleep())
    assert caught.value.retry_after == 9.0
    assert "gave up after 2 attempts, 2 rate-limited" in str(caught.value)


@pytest.mark.parametrize(
    "error", [FatalRemoteError("HTTP 400", 400), AuthError("refused"), ValueError("bug")]
)
async def test_non_retryable_errors_propagate_at_once(error: Exception) -> None:
    """Fatal, auth and foreign errors are not retried: one call, no policy question, no sleep."""
    call, policy, sleep = Script([error]), RecordingPolicy([1.0]), FakeSleep()
    with pytest.raises(type(error)) as caught:
        await run(call, policy, sleep)
    assert caught.value is error
    assert (call.calls, policy.asked, sleep.slept) == (1, [], [])


async def test_429s_and_other_failures_are_counted_apart() -> None:
    """The policy is told ordinary failures and 429s separately, each including this one,
    together with the caller's random draw."""
    errors = [
        RateLimitedError("429"),
        RateLimitedError("429", 2.0),
        ServerError("HTTP 500", 500),
        RateLimitedError("429"),
        TransportError("reset"),
    ]
    draws = iter([0.1, 0.2, 0.3, 0.4, 0.5])
    policy = RecordingPolicy([0.0] * 5)
    result = await run(Script(errors), policy, FakeSleep(), rand=lambda: next(draws))
    assert result == "done"
    assert [(a, r, rand) for a, r, _, rand in policy.asked] == [
        (0, 1, 0.1),
        (0, 2, 0.2),
        (1, 2, 0.3),
        (1, 3, 0.4),
        (2, 3, 0.5),
    ]


async def test_with_the_real_policy_429s_do_not_spend_the_attempt_budget() -> None:
    """With RetryPolicy(max_attempts=2): many 429s plus one 5xx still succeed; a second 5xx
    gives up; Retry-After is slept (within the policy's spread)."""
    policy = RetryPolicy(max_attempts=2, max_rate_limited=10)
    sleep = FakeSleep()
    limited = [RateLimitedError("429", 5.0)] * 6
    assert await run(Script([*limited, ServerError("HTTP 500", 500)]), policy, sleep) == "done"
    assert all(5.0 <= s <= 5.0 * 1.1 for s in sleep.slept[:6])
    with pytest.raises(ServerError, match="gave up after 2 attempts"):
        await run(Script([ServerError("a", 500), ServerError("b", 503)]), policy, FakeSleep())


async def test_own_429_time_counts_from_the_first_and_restarts_after_an_account_429() -> None:
    """The policy is told, for each own 429, the time since the attempt that met the first own
    429 after the latest account-wide one (0 for other errors): an account-wide 429 in between
    restarts the count."""
    errors = [
        RateLimitedError("429"),
        OwnRateLimitedError("429"),
        OwnRateLimitedError("429"),
        ServerError("HTTP 500", 500),
        OwnRateLimitedError("429"),
        RateLimitedError("429"),
        OwnRateLimitedError("429"),
    ]
    policy = RecordingPolicy([5.0, 7.0, 11.0, 13.0, 17.0, 19.0, 23.0])
    sleep = FakeSleep()
    assert await run(Script(errors), policy, sleep) == "done"
    assert policy.held == [0.0, 0.0, 7.0, 0.0, 7.0 + 11.0 + 13.0, 0.0, 0.0]


async def test_an_own_429_give_up_keeps_its_class_and_says_it_was_the_windows_own() -> None:
    """Given up on its own 429s, the error stays an OwnRateLimitedError (a RemoteError the
    pool lists as a failed window) whose message says how long it was refused on its own."""
    errors = [RateLimitedError("429"), OwnRateLimitedError("429"), OwnRateLimitedError("429")]
    with pytest.raises(OwnRateLimitedError) as caught:
        await run(Script(errors), RecordingPolicy([1.0, 40.0]), FakeSleep())
    assert "3 rate-limited (refused on its own for 40 s" in str(caught.value)


async def test_a_window_refused_on_its_own_through_the_gate_gives_up_within_the_budget() -> None:
    """Through a real RequestGate: other windows succeed, one window always answers 429 with
    an unparseable Retry-After. Only its first 429 slows the gate; then its 429s are its own
    and with_retries gives up within the 10 s budget (fake clock), well before
    max_rate_limited."""
    gate = CountingGate(1000.0)
    sleep = FakeSleep()
    policy = RetryPolicy(window_429_budget_s=10.0)

    async def refused() -> str:
        raise RateLimitedError("HTTP 429 (Retry-After: soon-ish)", retry_after=None)

    async def served() -> str:
        return "rows"

    async def attempt() -> str:
        # Another window is served between two attempts of the refused one.
        assert await gate.send(served, key="another window") == "rows"
        return await gate.send(refused, key="the window")

    with pytest.raises(OwnRateLimitedError, match="refused on its own"):
        await with_retries(
            attempt, policy, what="the window", sleep=sleep, clock=sleep.now, rand=lambda: 0.99
        )
    assert gate.slowed == 1
    assert sleep.time <= policy.window_429_budget_s * (1 + 1 / 3)
    assert 3 <= len(sleep.slept) < policy.max_rate_limited


async def test_when_every_request_meets_429_each_slows_the_gate_as_before() -> None:
    """No request is served: every 429 is the account's, slows the gate, and the call keeps
    today's 429 budget (max_rate_limited), however long it has been refused."""
    gate = CountingGate(1000.0)
    sleep = FakeSleep()
    policy = RetryPolicy(window_429_budget_s=1.0, max_rate_limited=12)

    async def refused() -> str:
        raise RateLimitedError("HTTP 429", retry_after=5.0)

    async def attempt() -> str:
        with pytest.raises(RateLimitedError):
            await gate.send(refused, key="another window")
        return await gate.send(refused, key="the window")

    with pytest.raises(RateLimitedError, match="gave up after 12 attempts") as caught:
        await with_retries(attempt, policy, what="the window", sleep=sleep, clock=sleep.now)
    assert not isinstance(caught.value, OwnRateLimitedError)
    assert gate.slowed == 2 * 12
    assert len(sleep.slept) == 11
