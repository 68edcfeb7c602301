"""Per-account token buckets: capacity R (at least one request), refilled at R tokens/s."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """``take`` answers None when a request may pass, else the seconds until it could."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._refusals = 0

    def take(self, account: str) -> float | None:
        if self._rate <= 0:
            return None
        now = self._clock()
        tokens, then = self._buckets.get(account, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - then) * self._rate)
        if tokens >= 1.0:
            self._buckets[account] = (tokens - 1.0, now)
            return None
        self._buckets[account] = (tokens, now)
        return (1.0 - tokens) / self._rate

    def retry_after_header(self, wait_s: float) -> str | None:
        """``Retry-After`` for a refusal (whole seconds, rounded up), omitted every third time.

        Real services are inconsistent about the header; clients must cope without it.
        """
        self._refusals += 1
        if self._refusals % 3 == 0:
            return None
        return str(max(1, math.ceil(wait_s)))
