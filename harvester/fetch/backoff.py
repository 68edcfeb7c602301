"""How long to wait before retrying a failed call, and when to give up. PURE.

Capped exponential back-off with full jitter (the AWS scheme: wait a uniform random time
between 0 and the exponential step, so that many workers failing together do not retry
together). A 429 is the server asking us to slow down, not a sign that the call is broken:
it has its own, larger budget and honours ``Retry-After`` when the server sends one.

A 429 that is a window's own (the server refuses that one query while it serves the others,
as judged by :class:`harvester.fetch.pacing.RateLimitJudge`) is not worth hours of waiting: such a
call gives up once its own 429s have held it ``window_429_budget_s``, or at once when the
server's hint would take it past that. The next run fetches the window again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from harvester.errors import ConfigError, RateLimitedError, RetryableError

# 2**60 half-seconds is ~18 billion years: past this the cap has long applied, and larger
# exponents would overflow a float.
_MAX_EXPONENT: Final = 60

#: Share of an honoured Retry-After added as random spread, so that workers told to wait the
#: same time do not all wake in the same instant.
RETRY_AFTER_SPREAD: Final = 0.1

#: A call's first 429 cannot be judged yet (the second tells whose it is), so its wait is at
#: most this share of ``window_429_budget_s``: a window refused on its own is then given up
#: within ``(1 + share) * budget`` of its first 429, whatever the server's hint.
FIRST_429_SHARE: Final = 1 / 3


class OwnRateLimitedError(RateLimitedError):
    """A 429 judged the request's own: other requests are served meanwhile."""


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off budgets and delays for one call (a window, a dates list, a device list)."""

    max_attempts: int = 8
    """Total attempts per call for ordinary retryable errors (5xx, resets, timeouts, bad bodies)."""
    max_rate_limited: int = 50
    """429 answers per call before giving up; they do not spend ``max_attempts``."""
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 300.0
    """Longest ``Retry-After`` obeyed; a longer hint is shortened to this."""
    window_429_budget_s: float = 90.0
    """How long a call's own 429s may hold it, from the attempt that met the first of them
    (since its latest account-wide 429). With the first 429's wait (at most a third of this) a
    window refused on its own is given up within 2 minutes; 90 s still honours a 60 s
    ``Retry-After`` once, and lets about ten jittered back-offs through when there is no hint."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.max_rate_limited < 0:
            raise ConfigError(f"max_rate_limited must be >= 0, got {self.max_rate_limited}")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s", "window_429_budget_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")

    def backoff_cap(self, failures: int) -> float:
        """The upper end of the jittered wait after ``failures`` failures (1 = the first)."""
        exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
        return min(self.max_delay_s, self.base_delay_s * 2.0**exponent)

    def delay_for(
        self,
        attempts: int,
        rate_limited: int,
        error: RetryableError,
        rand: float,
        *,
        held_s: float = 0.0,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        ``attempts`` = ordinary failures so far (including this one), ``rate_limited`` = 429s
        so far (including this one when ``error`` is a 429), ``rand`` uniform in ``[0, 1)``
        supplied by the caller (full jitter). ``held_s`` = seconds since the attempt that met
        the call's first own 429 (after its latest account-wide one); only an
        :class:`OwnRateLimitedError` reads it.
        """
        if isinstance(error, RateLimitedError):
            if rate_limited >= self.max_rate_limited:
                return None
            delay = self._rate_limited_delay(rate_limited, error, rand)
            if isinstance(error, OwnRateLimitedError):
                # Sleeping past the budget only to give up then would hold the window longer.
                return None if held_s + delay > self.window_429_budget_s else delay
            if rate_limited == 1:
                return min(delay, FIRST_429_SHARE * self.window_429_budget_s)
            return delay
        if attempts >= self.max_attempts:
            return None
        return rand * self.backoff_cap(attempts)

    def _rate_limited_delay(self, rate_limited: int, error: RateLimitedError, rand: float) -> float:
        # NaN compares false with everything: such a hint is no hint.
        if error.retry_after is not None and not math.isnan(error.retry_after):
            honoured = min(max(error.retry_after, 0.0), self.max_retry_after_s)
            spread = RETRY_AFTER_SPREAD * max(honoured, self.base_delay_s)
            return honoured + rand * spread
        return rand * self.backoff_cap(rate_limited)
