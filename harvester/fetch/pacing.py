"""Request pacing: smooth send slots, and a send rate that adapts to the server's 429s. PURE.

Nothing here sleeps or reads a clock: every method takes ``now`` (seconds on any monotonic
clock, e.g. the event loop's ``time()``) and the caller sleeps exactly the wait it is given.
That keeps pacing exact at any rate (no polling granularity; asyncio-throttle polls every
10 ms and tops out near 83 requests/s in its smooth form) and lets tests run on a simulated
clock.

Feedback is only as fresh as the oldest booked slot: a rate cut cannot move slots already
handed out. Callers should therefore take turns booking (e.g. hold one lock around
``reserve`` + sleep, released when the request goes out), so at most one slot is booked
ahead and a cut applies from the very next request.

Not every 429 is about the rate: a server may refuse one costly query (a window) again and
again while it serves every other request. :class:`RateLimitJudge` tells such a request's
own 429s from the account's, so that only the account's slow the run down.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable

from harvester.errors import ConfigError

# Around the remembered limit the rate probes gently from 90 % of it; 25 % above it the
# memory is dropped as stale.
_PROBE_FROM = 0.9
_FORGET_ABOVE = 1.25
#: Outcomes of requests the judge remembers: at a few requests per second, the last few
#: seconds; few enough that a new spell of account-wide 429s outvotes older successes soon.
JUDGE_MEMORY = 32


def _check_rate(rate: float, what: str) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"{what} must be a positive number of requests per second, got {rate}")


class RatePacer:
    """Hands out send slots one ``1/rate`` apart, with an allowance of ``burst`` at once.

    A generic cell-rate scheduler: ``_next_slot`` is when the next request is due at the
    configured rate. A caller that arrives after an idle spell sends at once; concurrent
    callers each book a distinct later slot.
    """

    def __init__(self, rate: float, burst: int = 1) -> None:
        _check_rate(rate, "the request rate")
        if burst < 1:
            raise ConfigError(f"burst must be at least 1, got {burst}")
        self._interval = 1.0 / rate
        self._burst = burst
        self._next_slot = -math.inf

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    def reserve(self, now: float) -> float:
        """Book the next slot; return the seconds to wait before sending (``>= 0``)."""
        due = max(self._next_slot, now)
        send_at = max(now, due - (self._burst - 1) * self._interval)
        self._next_slot = due + self._interval
        return send_at - now

    def set_rate(self, rate: float, now: float) -> None:
        """Pace the slots booked from now on at ``rate``.

        Slowing down stretches the not-yet-due part of the schedule as if it had been booked
        at the new rate, so the backlog does not count as fresh credit; speeding up spaces the
        next slot one new interval after the last booked one.
        """
        _check_rate(rate, "the request rate")
        interval = 1.0 / rate
        if self._next_slot > now:
            if interval > self._interval:
                ahead = (self._next_slot - now) * (interval / self._interval)
                self._next_slot = now + ahead
            else:
                self._next_slot = max(now, self._next_slot - self._interval + interval)
        self._interval = interval


class AdaptiveRate:
    """AIMD on the request rate, steered by the server's 429s; never above ``ceiling``.

    - **Decrease** on a 429, at most once per ``cooldown_s`` (the answers to requests sent
      before a cut keep arriving for a while and say nothing new). The cut aims at what the
      server accepted over the last ``window_s`` (its limit, once its bucket is empty), times
      ``headroom``; the cut multiplies the rate by ``decrease`` or less (``near_decrease``
      near the remembered limit, so a steady state oscillates narrowly) and by no less than
      ``deep_decrease``.
      A 429 while we already send below what the server accepts is stale and ignored.
    - **Increase** additively while requests succeed: ``increase_share`` of the ceiling per
      second (at least ``min_increase``), slowed to ``gentle_share`` of the remembered limit
      per second near it ("probe gently"), since a token bucket hides an overshoot until it
      runs dry.
    """

    def __init__(
        self,
        ceiling: float,
        floor: float = 0.5,
        decrease: float = 0.7,
        *,
        near_decrease: float = 0.9,
        deep_decrease: float = 0.5,
        cooldown_s: float = 0.25,
        window_s: float = 1.0,
        headroom: float = 0.95,
        increase_share: float = 0.02,
        min_increase: float = 0.5,
        gentle_share: float = 0.03,
    ) -> None:
        _check_rate(ceiling, "the rate ceiling (--rps)")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.rate = ceiling
        self._decrease = decrease
        self._near_decrease = near_decrease
        self._deep_decrease = deep_decrease
        self._cooldown_s = cooldown_s
        self._window_s = window_s
        self._headroom = headroom
        self._step = max(increase_share * ceiling, min_increase)
        self._gentle_share = gentle_share
        self._limit: float | None = None
        self._quiet_until = -math.inf
        self._last_increase: float | None = None
        self._successes: deque[float] = deque()

    @property
    def remembered_limit(self) -> float | None:
        """The accepted rate measured at the last cut, if any."""
        return self._limit

    def _accepted_rate(self, now: float) -> float:
        horizon = now - self._window_s
        while self._successes and self._successes[0] <= horizon:
            self._successes.popleft()
        return len(self._successes) / self._window_s

    def on_success(self, now: float) -> float:
        """Count a success and raise the rate for the time since the last change."""
        self._successes.append(now)
        self._accepted_rate(now)  # drop what fell out of the window: memory stays bounded
        if self._last_increase is None:
            self._last_increase = now
            return self.rate
        # An idle spell proved nothing about the server: credit at most one second of it.
        elapsed = min(max(now - self._last_increase, 0.0), 1.0)
        self._last_increase = now
        step = self._step
        if self._limit is not None:
            if self.rate > _FORGET_ABOVE * self._limit:
                # Well past the remembered limit without a 429: the server allows more now.
                self._limit = None
            elif self.rate >= _PROBE_FROM * self._limit:
                step = min(step, self._gentle_share * self._limit)
        self.rate = min(self.ceiling, self.rate + step * elapsed)
        return self.rate

    def on_rate_limited(self, now: float) -> float:
        """React to a 429: cut the rate unless it was cut a moment ago or is already low."""
        if now < self._quiet_until:
            return self.rate
        accepted = self._accepted_rate(now)
        target = self._headroom * accepted
        if target >= self.rate:
            return self.rate
        near_limit = self._limit is not None and self.rate <= _FORGET_ABOVE * self._limit
        factor = self._near_decrease if near_limit else self._decrease
        cut = max(self.rate * self._deep_decrease, min(self.rate * factor, target))
        if accepted > 0:
            self._limit = min(self.rate, accepted)
        self.rate = max(self.floor, cut)
        self._quiet_until = now + self._cooldown_s
        self._last_increase = now
        return self.rate


class RateLimitJudge:
    """Tells a request's own 429s from the account's, by the outcome of the other requests.

    The rule: a 429 is the request's **own** when the same key (a window) has met a 429
    before, with no success since, and among the latest ``memory`` outcomes of requests with
    other keys, successes outnumber 429s counted against the account. Otherwise it is the
    **account's**: the run should slow down. So a key's first 429 always counts against the
    account (one 429 cannot tell), and when every request meets 429 none is judged own.

    An own 429 is not remembered as an outcome: it says nothing about the account, and
    several keys refused each on its own must not outvote the successes around them.
    Requests without a key (sign-in, device lists) count as others for every key, and their
    429s always count against the account. A key is forgotten at its next success; the keys
    of requests that never succeed again (windows given up) stay, a few per failed window.
    """

    def __init__(self, memory: int = JUDGE_MEMORY) -> None:
        if memory < 1:
            raise ConfigError(f"the judge's memory must be at least 1 outcome, got {memory}")
        # (key, succeeded) of the latest successes and account-wide 429s.
        self._outcomes: deque[tuple[Hashable | None, bool]] = deque(maxlen=memory)
        self._refused: set[Hashable] = set()

    def on_success(self, key: Hashable | None = None) -> None:
        self._outcomes.append((key, True))
        if key is not None:
            self._refused.discard(key)

    def on_rate_limited(self, key: Hashable | None = None) -> bool:
        """Judge a 429 of ``key``: True when it is the key's own, False when the account's."""
        if key is not None and key in self._refused:
            successes = limited = 0
            for other, succeeded in self._outcomes:
                if other != key:
                    successes += succeeded
                    limited += not succeeded
            if successes > limited:
                return True
        if key is not None:
            self._refused.add(key)
        self._outcomes.append((key, False))
        return False
