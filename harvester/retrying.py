"""The async driver of a retry policy around any client call.

The policy (:class:`harvester.retry.RetryPolicy`) is pure and decides how long to wait; this
module counts failures, sleeps and calls again. Only :class:`RetryableError` is retried:
anything else, e.g. ``AuthError`` or ``FatalRemoteError``, propagates at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from harvester.errors import (
    MalformedReplyError,
    RateLimitedError,
    RetryableError,
    ServerError,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")


class DelayPolicy(Protocol):
    """What :func:`with_retries` needs of a policy; ``RetryPolicy`` satisfies it."""

    def delay_for(
        self, attempts: int, rate_limited: int, error: RetryableError, rand: float
    ) -> float | None:
        """Seconds before the next attempt, or None to give up.

        ``attempts`` counts ordinary failures so far and ``rate_limited`` the 429s so far,
        both including ``error``.
        """
        ...


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: DelayPolicy,
    *,
    what: str,
    on_retry: Callable[[RetryableError, float], None] | None = None,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await ``call()`` until it succeeds or ``policy`` gives up.

    On give-up the last error is raised again as the same class, its message naming
    ``what`` and the number of attempts (chained to the original).
    """
    failures = 0
    rate_limited = 0
    while True:
        try:
            return await call()
        except RetryableError as error:
            if isinstance(error, RateLimitedError):
                rate_limited += 1
            else:
                failures += 1
            delay = policy.delay_for(failures, rate_limited, error, rand())
            if isinstance(error, MalformedReplyError) and failures >= error.max_attempts:
                delay = None
            if delay is None:
                tries = failures + rate_limited
                log.warning("gave_up", what=what, attempts=tries, error=str(error))
                raise _exhausted(error, what, tries, rate_limited) from error
            if on_retry is not None:
                on_retry(error, delay)
            log.debug("retrying", what=what, error=str(error), delay_s=round(delay, 3))
            await sleep(delay)


def _exhausted(error: RetryableError, what: str, tries: int, rate_limited: int) -> RetryableError:
    """``error`` again, same class and attributes, with a message that says we gave up."""
    limited = f", {rate_limited} rate-limited" if rate_limited else ""
    message = f"{what}: gave up after {tries} attempts{limited}; last error: {error}"
    if isinstance(error, RateLimitedError):
        return RateLimitedError(message, error.retry_after)
    if isinstance(error, ServerError):
        return ServerError(message, error.status)
    return type(error)(message)
