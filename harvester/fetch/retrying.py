"""The async driver of a retry policy around any client call.

The policy (:class:`harvester.fetch.backoff.RetryPolicy`) is pure and decides how long to wait; this
module counts failures, sleeps and calls again. Only :class:`RetryableError` is retried:
anything else, e.g. ``AuthError`` or ``FatalRemoteError``, propagates at once.

It also keeps the time a call's own 429s (:class:`OwnRateLimitedError`) have held it, which
the policy weighs against its budget for them.
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
from harvester.fetch.backoff import OwnRateLimitedError

log = structlog.get_logger(__name__)

T = TypeVar("T")


class DelayPolicy(Protocol):
    """What :func:`with_retries` needs of a policy; ``RetryPolicy`` satisfies it."""

    def delay_for(
        self,
        attempts: int,
        rate_limited: int,
        error: RetryableError,
        rand: float,
        *,
        held_s: float = 0.0,
    ) -> float | None:
        """Seconds before the next attempt, or None to give up.

        ``attempts`` counts ordinary failures so far and ``rate_limited`` the 429s so far,
        both including ``error``; ``held_s`` is how long the call's own 429s have held it.
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
    clock: Callable[[], float] | None = None,
) -> T:
    """Await ``call()`` until it succeeds or ``policy`` gives up.

    On give-up the last error is raised again as the same class, its message naming
    ``what`` and the number of attempts (chained to the original). ``clock`` (the event
    loop's by default) times the call's own 429s.
    """
    now = clock or asyncio.get_running_loop().time
    failures = 0
    rate_limited = 0
    # Start of the attempt that met the first own 429 since the latest account-wide one.
    own_since: float | None = None
    while True:
        started = now()
        try:
            return await call()
        except RetryableError as error:
            held_s = 0.0
            if isinstance(error, RateLimitedError):
                rate_limited += 1
                if isinstance(error, OwnRateLimitedError):
                    if own_since is None:
                        own_since = started
                    held_s = now() - own_since
                else:
                    own_since = None
            else:
                failures += 1
            delay = policy.delay_for(failures, rate_limited, error, rand(), held_s=held_s)
            if isinstance(error, MalformedReplyError) and failures >= error.max_attempts:
                delay = None
            if delay is None:
                tries = failures + rate_limited
                log.warning("gave_up", what=what, attempts=tries, error=str(error))
                raise _exhausted(error, what, tries, rate_limited, held_s) from error
            if on_retry is not None:
                on_retry(error, delay)
            log.debug("retrying", what=what, error=str(error), delay_s=round(delay, 3))
            await sleep(delay)


def _exhausted(
    error: RetryableError, what: str, tries: int, rate_limited: int, held_s: float
) -> RetryableError:
    """``error`` again, same class and attributes, with a message that says we gave up."""
    limited = f", {rate_limited} rate-limited" if rate_limited else ""
    if isinstance(error, OwnRateLimitedError):
        limited += f" (refused on its own for {held_s:.0f} s while other requests were served)"
    message = f"{what}: gave up after {tries} attempts{limited}; last error: {error}"
    if isinstance(error, RateLimitedError):
        return type(error)(message, error.retry_after)
    if isinstance(error, ServerError):
        return ServerError(message, error.status)
    return type(error)(message)
