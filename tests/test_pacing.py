"""RatePacer and AdaptiveRate on a simulated clock (nothing sleeps, nothing reads a clock)."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.errors import ConfigError
from harvester.pacing import AdaptiveRate, RatePacer

EPS = 1e-9


@pytest.mark.parametrize("rate", [5.0, 83.0, 100.0, 250.0, 500.0])
def test_n_reservations_at_once_span_n_minus_one_intervals(rate: float) -> None:
    """1000 callers arriving together get slots exactly 1/R apart: the last waits 999/R."""
    pacer = RatePacer(rate)
    waits = [pacer.reserve(10.0) for _ in range(1000)]
    assert waits[0] == 0.0
    assert waits[-1] == pytest.approx(999 / rate, rel=1e-9)
    gaps = [b - a for a, b in itertools.pairwise(waits)]
    assert min(gaps) == pytest.approx(1 / rate, rel=1e-6)
    assert max(gaps) == pytest.approx(1 / rate, rel=1e-6)


@pytest.mark.parametrize("rate", [5.0, 120.0, 500.0])
def test_a_caller_that_sleeps_its_wait_sends_at_exactly_the_rate(rate: float) -> None:
    """One caller looping reserve → sleep(wait) → send sends N requests in (N-1)/R seconds."""
    pacer = RatePacer(rate)
    now = 0.0
    sent = []
    for _ in range(2000):
        now += pacer.reserve(now)
        sent.append(now)
    assert sent[-1] - sent[0] == pytest.approx(1999 / rate, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=5.0, max_value=500.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=200),
)
def test_concurrent_callers_get_distinct_slots_one_interval_apart(
    rate: float, gaps: list[float]
) -> None:
    """Whenever callers arrive, slots are never closer than 1/R and nobody waits needlessly."""
    pacer = RatePacer(rate)
    now = 0.0
    slots: list[float] = []
    for gap in gaps:
        now += gap
        wait = pacer.reserve(now)
        assert wait >= 0.0
        if slots and now >= slots[-1] + 1 / rate:
            assert wait == 0.0
        slots.append(now + wait)
    for earlier, later in itertools.pairwise(slots):
        assert later - earlier >= 1 / rate - EPS


def test_burst_allows_that_many_at_once_after_an_idle_spell_and_no_more() -> None:
    """burst=3: three requests go at once after idling, then slots are 1/R apart again."""
    pacer = RatePacer(10.0, burst=3)
    assert [pacer.reserve(0.0) for _ in range(5)] == pytest.approx([0, 0, 0, 0.1, 0.2])
    # A long idle spell earns no more than the burst.
    waits = [pacer.reserve(100.0) for _ in range(5)]
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2])


def test_slowing_down_stretches_the_booked_schedule() -> None:
    """After a cut from 100/s to 50/s the next slot comes as if the backlog had been 50/s."""
    pacer = RatePacer(100.0)
    for _ in range(10):
        pacer.reserve(0.0)  # slots 0.00 … 0.09; the next would be 0.10
    pacer.set_rate(50.0, 0.0)
    assert pacer.rate == pytest.approx(50.0)
    assert pacer.reserve(0.0) == pytest.approx(0.2)
    assert pacer.reserve(0.0) == pytest.approx(0.22)


def test_speeding_up_spaces_the_next_slot_one_new_interval_after_the_last() -> None:
    """After a rise from 10/s to 100/s the next slot is 10 ms after the last booked one."""
    pacer = RatePacer(10.0)
    pacer.reserve(0.0)
    pacer.reserve(0.0)  # slot at 0.1
    pacer.set_rate(100.0, 0.0)
    assert pacer.reserve(0.0) == pytest.approx(0.11)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("nan"), 1), (10.0, 0)])
def test_invalid_pacer_settings_are_configuration_errors(rate: float, burst: int) -> None:
    """A non-positive or NaN rate, or a burst below 1, is refused."""
    with pytest.raises(ConfigError):
        RatePacer(rate, burst)


def test_adaptive_rate_cuts_at_most_once_per_cooldown() -> None:
    """A storm of 429s within the cool-down costs one cut, not one per answer."""
    adaptive = AdaptiveRate(ceiling=100.0)
    first = adaptive.on_rate_limited(1.0)
    assert first < 100.0
    assert [adaptive.on_rate_limited(1.0 + i * 0.01) for i in range(20)] == [first] * 20
    assert adaptive.on_rate_limited(2.0) < first


def test_adaptive_rate_ignores_429s_while_below_what_the_server_accepts() -> None:
    """A 429 arriving while we already send below the measured accepted rate is stale."""
    adaptive = AdaptiveRate(ceiling=100.0, floor=1.0)
    adaptive.on_rate_limited(0.0)  # no history: cut as deep as allowed
    assert adaptive.rate == pytest.approx(50.0)
    now = 0.0
    for _ in range(60):  # 60 successes in the last second: the server accepts 60/s
        now += 1 / 60
        adaptive.on_success(now)
    before = adaptive.rate
    assert before < 0.95 * 60
    assert adaptive.on_rate_limited(now) == before


def test_adaptive_rate_climbs_back_to_the_ceiling_without_429s() -> None:
    """With no 429 the rate rises additively, bounded by the ceiling."""
    adaptive = AdaptiveRate(ceiling=40.0)
    adaptive.on_rate_limited(0.0)
    low = adaptive.rate
    seen = [adaptive.on_success(t / 10) for t in range(1, 3000)]
    assert seen[0] >= low
    assert all(b >= a for a, b in itertools.pairwise(seen))
    assert max(seen) == 40.0


def test_adaptive_rate_never_leaves_floor_and_ceiling() -> None:
    """Hundreds of cuts stop at the floor; successes stop at the ceiling."""
    adaptive = AdaptiveRate(ceiling=20.0, floor=2.0)
    rates = [adaptive.on_rate_limited(float(t)) for t in range(200)]
    assert min(rates) == 2.0
    assert AdaptiveRate(ceiling=0.2).floor == 0.2


# --- convergence against a simulated token-bucket server ---------------------------------


@dataclass
class TokenBucket:
    """The server's limit: ``limit`` tokens at most, refilled at ``limit`` per second."""

    limit: float
    tokens: float = 0.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.limit

    def admit(self, now: float) -> bool:
        self.tokens = min(self.limit, self.tokens + (now - self.updated) * self.limit)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def simulate(
    limit: float, ceiling: float, workers: int = 16, latency_s: float = 0.02, seconds: float = 60
) -> tuple[float, float]:
    """Workers take turns booking a slot (one lock around reserve + sleep, as the module
    advises), send, and feed the answer back; a 429 is retried at once. Returns the achieved
    rate ÷ limit and the share of requests answered 429."""
    rng = random.Random(7)
    adaptive = AdaptiveRate(ceiling=ceiling)
    pacer = RatePacer(ceiling)
    server = TokenBucket(limit)
    events: list[tuple[float, int, str]] = []
    order = itertools.count()
    ready = workers  # workers waiting for their turn to book a slot
    booking = False
    ok = refused = 0

    def book(now: float) -> None:
        nonlocal booking, ready
        if booking or not ready:
            return
        booking = True
        ready -= 1
        heapq.heappush(events, (now + pacer.reserve(now), next(order), "send"))

    book(0.0)
    while events:
        now, _, kind = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "send":
            booking = False
            answer = "ok" if server.admit(now) else "429"
            reply_at = now + latency_s * (1 + 0.5 * rng.random())
            heapq.heappush(events, (reply_at, next(order), answer))
        else:
            if kind == "ok":
                ok += 1
                rate = adaptive.on_success(now)
            else:
                refused += 1
                rate = adaptive.on_rate_limited(now)
            pacer.set_rate(rate, now)
            ready += 1
        book(now)
    return ok / seconds / limit, refused / (ok + refused)


@pytest.mark.parametrize(("limit", "latency_s"), [(10.0, 0.005), (40.0, 0.02), (100.0, 0.05)])
def test_aimd_converges_on_a_limit_five_times_below_the_ceiling(
    limit: float, latency_s: float
) -> None:
    """--rps 5x the server's limit: ≥ 0.85 of the limit achieved, ≤ 5 % of requests 429."""
    achieved, refused_share = simulate(limit, ceiling=5 * limit, latency_s=latency_s)
    assert achieved >= 0.85
    assert refused_share <= 0.05


@pytest.mark.parametrize(("limit", "latency_s"), [(10.0, 0.005), (40.0, 0.02), (100.0, 0.05)])
def test_aimd_at_a_ceiling_equal_to_the_limit_loses_nothing(limit: float, latency_s: float) -> None:
    """--rps equal to the server's limit: ≥ 0.95 of the limit achieved, ≤ 1 % of requests 429."""
    achieved, refused_share = simulate(limit, ceiling=limit, latency_s=latency_s)
    assert achieved >= 0.95
    assert refused_share <= 0.01


def test_without_adaptation_a_fixed_rate_storms_the_server() -> None:
    """Control for the simulation: pacing at 5x the limit without AIMD is answered 429 ~80 %."""
    pacer = RatePacer(200.0)
    server = TokenBucket(40.0)
    now, refused = 0.0, 0
    for _ in range(12_000):
        now += pacer.reserve(now)
        refused += not server.admit(now)
    assert refused / 12_000 > 0.75
