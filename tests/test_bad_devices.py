"""One bad device never blocks the others: which shape errors are retried, and how often."""

from __future__ import annotations

import pytest

from harvester.errors import MalformedReplyError, ShapeError
from harvester.retry import RetryPolicy
from harvester.retrying import with_retries


async def _attempts_until_given_up(error: ShapeError) -> tuple[int, type[ShapeError]]:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error

    async def no_sleep(_: float) -> None:
        return None

    with pytest.raises(ShapeError) as caught:
        await with_retries(call, RetryPolicy(), what="dates of 1041", sleep=no_sleep)
    return calls, type(caught.value)


async def test_a_malformed_reply_is_retried_once_and_a_cut_off_body_fully() -> None:
    """Whole JSON of the wrong shape is asked again once (the server answers it the same);
    a body that is not JSON (cut off, so maybe transient) gets every attempt of the policy.
    Either is raised again as its own class."""
    assert await _attempts_until_given_up(MalformedReplyError("not a list")) == (
        MalformedReplyError.max_attempts,
        MalformedReplyError,
    )
    assert MalformedReplyError.max_attempts == 2
    assert await _attempts_until_given_up(ShapeError("cut off")) == (
        RetryPolicy().max_attempts,
        ShapeError,
    )
