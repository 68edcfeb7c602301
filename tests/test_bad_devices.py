"""One bad device never blocks the others: which shape errors are retried, and how often."""

from __future__ import annotations

import pytest

from harvester.errors import MalformedReplyError, ShapeError
from harvester.parse import decode_window, parse_window
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


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"records": []}',
        b'{"data": {"a": 1}}',
        b'{"data": [1]}',
        b'{"data": [{"date": "2024-02-05T00:00:00Z"}]}',
        b'{"data": [{"_id": "a", "date": "yesterday"}]}',
        b'{"data": [{"_id": "a", "date": null}]}',
        b"[" * 100 + b"]" * 100,
    ],
)
def test_records_of_the_wrong_shape_are_malformed_replies(body: bytes) -> None:
    """A records body that is whole JSON of the wrong shape is a malformed reply (retried
    once), whichever parser meets it, large or small."""
    padded = body[:-1] + b" " * 20_000 + body[-1:]
    for candidate in (body, padded):
        with pytest.raises(MalformedReplyError):
            parse_window(candidate)
        with pytest.raises(MalformedReplyError):
            decode_window(candidate)


@pytest.mark.parametrize("body", [b'{"data": [{"_id": "a", "da', b"<html>", b""])
def test_records_that_are_not_json_are_plain_shape_errors(body: bytes) -> None:
    """A cut-off or non-JSON records body keeps the usual retries: a plain ShapeError."""
    for parse in (parse_window, decode_window):
        with pytest.raises(ShapeError) as caught:
            parse(body)
        assert type(caught.value) is ShapeError
