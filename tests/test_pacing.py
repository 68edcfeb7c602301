"""RatePacer, AdaptiveRate and RateLimitJudge on a simulated clock (nothing sleeps, nothing
reads a clock)."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.errors import ConfigError
from harvester.fetch.backoff import RetryPolicy
from harvester.fetch.pacing import JUDGE_MEMORY, AdaptiveRate, RateLimitJudge, RatePacer

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


# --- a window's own 429s and the account's ---------------------------------------------------


def test_a_keys_first_429_is_the_accounts_and_its_next_amid_successes_its_own() -> None:
    """One 429 cannot tell; the same window refused again while others were served can."""
    judge = RateLimitJudge()
    judge.on_success("b")
    assert judge.on_rate_limited("a") is False
    judge.on_success("b")
    assert judge.on_rate_limited("a") is True
    assert judge.on_rate_limited("a") is True


def test_without_a_success_in_between_a_repeated_429_is_the_accounts() -> None:
    """A window refused twice with nobody served (start of a run, or everyone refused) has
    shown nothing of its own: both 429s count against the account."""
    judge = RateLimitJudge()
    assert [judge.on_rate_limited("a"), judge.on_rate_limited("a")] == [False, False]


def test_a_success_of_the_key_makes_its_next_429_a_first_again() -> None:
    """Once the window is served, its next 429 is judged afresh (the account's)."""
    judge = RateLimitJudge()
    judge.on_success("b")
    judge.on_rate_limited("a")
    judge.on_success("a")
    assert judge.on_rate_limited("a") is False


def test_a_keyless_429_always_counts_against_the_account() -> None:
    """Sign-in and list calls name no window: their 429s are always the account's."""
    judge = RateLimitJudge()
    judge.on_success("b")
    assert [judge.on_rate_limited(None), judge.on_rate_limited(None)] == [False, False]


def test_a_spell_of_account_429s_outvotes_earlier_successes() -> None:
    """Many windows refused after a quiet spell: a window's second 429 then counts against
    the account, since the others' latest outcomes are more refusals than successes."""
    judge = RateLimitJudge()
    for key in range(JUDGE_MEMORY):
        judge.on_success(key)
    assert judge.on_rate_limited("a") is False
    for key in range(100, 100 + JUDGE_MEMORY // 2 + 1):
        assert judge.on_rate_limited(key) is False
    assert judge.on_rate_limited("a") is False


def test_windows_refused_on_their_own_do_not_outvote_the_served_ones() -> None:
    """Ten windows refused on every attempt, one served request before each attempt: after
    each one's first 429, all their 429s are their own, since own 429s are not counted as
    the account's trouble (they would soon outnumber the successes)."""
    judge = RateLimitJudge()
    rounds = []
    for _ in range(5):
        judged = []
        for key in range(10):
            judge.on_success("served")
            judged.append(judge.on_rate_limited(key))
        rounds.append(judged)
    assert rounds == [[False] * 10] + [[True] * 10] * 4


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.integers(0, 5), max_size=300))
def test_when_every_request_meets_429_none_is_judged_own(keys: list[int | None]) -> None:
    """Whatever windows are refused in whatever order, with no success anywhere, every 429
    counts against the account (the run slows down as it always did)."""
    judge = RateLimitJudge()
    assert not any(judge.on_rate_limited(key) for key in keys)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=300), st.integers(1, 64))
def test_one_window_always_refused_among_served_ones_counts_once_against_the_account(
    served: list[int], memory: int
) -> None:
    """Window 0 is refused every time, every other window is served; served requests come
    before each of its attempts. Only its first 429 counts against the account."""
    judge = RateLimitJudge(memory)
    against_account = 0
    for key in served:
        judge.on_success(key)
        against_account += not judge.on_rate_limited(0)
    assert against_account == 1


def test_the_judges_memory_must_hold_an_outcome() -> None:
    """A memory of no outcome could judge nothing: refused as a configuration error."""
    with pytest.raises(ConfigError):
        RateLimitJudge(0)


def simulate_windows(
    limit: float,
    ceiling: float,
    *,
    refused_key: bool,
    seed: int,
    workers: int = 30,
    latency_s: float = 0.01,
    seconds: float = 120,
) -> tuple[float, float, int, int]:
    """``simulate`` with windows: each worker fetches one window (key) at a time and, on a
    429, retries it after the policy's back-off; only the 429s the judge finds to be the
    account's reach AdaptiveRate. With ``refused_key``, window 0 is refused every time (without
    spending the server's tokens) and retried throughout. Returns the achieved rate ÷ limit,
    the share of requests answered 429, the longest run of own 429s of any other window, and
    how many of window 0's 429s counted against the account."""
    rng = random.Random(seed)
    adaptive, pacer, judge = AdaptiveRate(ceiling=ceiling), RatePacer(ceiling), RateLimitJudge()
    server, policy = TokenBucket(limit), RetryPolicy()
    keys = itertools.count(0 if refused_key else 1)
    events: list[tuple[float, int, str, int, int]] = []  # (time, order, kind, key, 429s so far)
    order = itertools.count()
    ready = [(next(keys), 0) for _ in range(workers)]
    booking = False
    ok = refused = longest_own = against_account_0 = 0
    own_run: dict[int, int] = {}

    def book(now: float) -> None:
        nonlocal booking
        if booking or not ready:
            return
        booking = True
        key, limited = ready.pop(0)
        heapq.heappush(events, (now + pacer.reserve(now), next(order), "send", key, limited))

    book(0.0)
    while events:
        now, _, kind, key, limited = heapq.heappop(events)
        if now > seconds:
            break
        if kind == "send":
            booking = False
            answer = "429" if key == 0 else "ok" if server.admit(now) else "429"
            reply_at = now + latency_s * (1 + 0.5 * rng.random())
            heapq.heappush(events, (reply_at, next(order), answer, key, limited))
        elif kind == "retry":
            ready.append((key, limited))
        elif kind == "ok":
            ok += 1
            judge.on_success(key)
            pacer.set_rate(adaptive.on_success(now), now)
            ready.append((next(keys), 0))
        else:
            refused += 1
            if judge.on_rate_limited(key):
                own_run[key] = own_run.get(key, 0) + 1
                if key != 0:
                    longest_own = max(longest_own, own_run[key])
            else:
                own_run[key] = 0
                against_account_0 += key == 0
                pacer.set_rate(adaptive.on_rate_limited(now), now)
            delay = policy.backoff_cap(limited + 1) * rng.random()
            heapq.heappush(events, (now + delay, next(order), "retry", key, limited + 1))
        book(now)
    return ok / seconds / limit, refused / (ok + refused), longest_own, against_account_0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_under_an_account_limit_the_judge_keeps_aimd_converging(seed: int) -> None:
    """Windows retried against a token bucket 15 req/s under --rps 100 (the misbehaving-server
    test's setting): AIMD still reaches ≥ 0.85 of the limit with ≤ 5 % refused, and no window
    meets two own 429s in a row, so none comes near its own-429 budget."""
    achieved, refused_share, longest_own, _ = simulate_windows(
        15.0, 100.0, refused_key=False, seed=seed
    )
    assert achieved >= 0.85
    assert refused_share <= 0.05
    assert longest_own <= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_window_refused_throughout_does_not_hold_the_rate_down(seed: int) -> None:
    """The same, with one window refused on every attempt for two minutes: only its first
    429 reaches AIMD, and the other windows still get ≥ 0.85 of the limit."""
    achieved, _, longest_own, against_account = simulate_windows(
        15.0, 100.0, refused_key=True, seed=seed
    )
    assert against_account == 1
    assert achieved >= 0.85
    assert longest_own <= 1
