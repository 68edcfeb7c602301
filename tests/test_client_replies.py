"""Tests of harvester.client_replies: replies and exceptions → models or HarvesterErrors,
without a session."""

from __future__ import annotations

import datetime as dt

import aiohttp
import orjson
import pytest

from harvester.client_replies import (
    Reply,
    available_days,
    device_list,
    excerpt,
    json_array,
    sign_in_answer,
    status_error,
    transport_error,
)
from harvester.errors import (
    FatalRemoteError,
    RateLimitedError,
    ServerError,
    ServerUnreachableError,
    ShapeError,
    TransportError,
)

WHAT = "records of SPOD 1041"


def _reply(status: int, body: object = b"", **headers: str) -> Reply:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Reply(
        status, raw, "application/json", headers.get("retry_after"), headers.get("location")
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, RateLimitedError),
        (500, ServerError),
        (503, ServerError),
        (302, FatalRemoteError),
        (403, FatalRemoteError),
        (204, ShapeError),
    ],
)
def test_each_status_becomes_its_error_class(status: int, kind: type[Exception]) -> None:
    """429 is retried after a pause, 5xx retried, 3xx/4xx fatal, another 2xx a shape error."""
    error = status_error(_reply(status, b"<html>down</html>"), WHAT, [])
    assert type(error) is kind
    assert str(error).startswith(f"{WHAT}: HTTP {status}")


def test_a_429_carries_its_retry_after() -> None:
    """Retry-After in seconds reaches the retry policy."""
    error = status_error(_reply(429, retry_after="7"), WHAT, [])
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 7.0
    assert "Retry-After 7" in str(error)


def test_excerpt_is_one_short_line_without_tags_or_secrets() -> None:
    """An error body is shown as a one-line excerpt, markup stripped, secrets masked."""
    body = b"<html>\n<body>bad token eyJsecret for pw hunter2</body>\n" + b"x" * 500
    shown = excerpt(body, ["eyJsecret", "hunter2", ""])
    assert "\n" not in shown
    assert "<" not in shown
    assert "eyJsecret" not in shown
    assert "hunter2" not in shown
    assert shown.startswith("bad token *** for pw ***")
    assert len(shown) == 201
    assert shown.endswith("…")
    assert excerpt(b"  <p></p> ", []) == "(empty body)"


def test_transport_errors_before_sign_in_are_start_up_errors() -> None:
    """Before the first sign-in a refused connection is one clear line; later it is retried."""
    refused = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
        ConnectionRefusedError(111, "refused"),
    )
    early = transport_error(refused, WHAT, "http://127.0.0.1:1", signed_in=False)
    assert isinstance(early, ServerUnreachableError)
    assert "connection refused" in str(early)
    later = transport_error(refused, WHAT, "http://127.0.0.1:1", signed_in=True)
    assert type(later) is TransportError
    assert isinstance(transport_error(TimeoutError(), WHAT, "u", signed_in=True), TransportError)


def test_json_array_refuses_what_is_not_an_array_of_objects() -> None:
    """A 200 must hold a JSON array of objects; anything else is a (retryable) shape error."""
    assert json_array(_reply(200, [{"a": 1}]), WHAT, []) == [{"a": 1}]
    for body in (b"<html>", {"data": []}, [1, 2]):
        with pytest.raises(ShapeError):
            json_array(_reply(200, body), WHAT, [])
    with pytest.raises(ServerError):
        json_array(_reply(502, b"bad gateway"), WHAT, [])


def test_device_list_skips_unknown_types_and_refuses_devices_without_uuid() -> None:
    """Known types become Devices (numeric uuids as text); unknown ones are skipped."""
    reply = _reply(200, [{"uuid": 1041, "type": "SPOD", "name": "pod"}, {"uuid": "9", "type": "X"}])
    assert [(d.uuid, d.type, d.name) for d in device_list(reply, WHAT, [])] == [
        ("1041", "SPOD", "pod")
    ]
    with pytest.raises(ShapeError, match="uuid"):
        device_list(_reply(200, [{"uuid": True, "type": "FMD"}]), WHAT, [])


def test_available_days_are_sorted_and_bad_entries_named() -> None:
    """Days come back sorted; an entry that is not a day names itself in the error."""

    def entry(day: int, count: int) -> dict[str, object]:
        key = {"year": 2024, "month": 1, "day": day}
        return {"_id": key, "count": count, "date": f"2024-01-0{day}T23:00:00.000Z"}

    days = available_days(_reply(200, [entry(2, 3), entry(1, 5)]), WHAT, [])
    assert [(d.day, d.count) for d in days] == [(dt.date(2024, 1, 1), 5), (dt.date(2024, 1, 2), 3)]
    with pytest.raises(ShapeError, match="bad entry"):
        available_days(_reply(200, [{**entry(1, 1), "count": -1}]), WHAT, [])


def test_sign_in_answer_reads_token_user_and_role_or_nothing() -> None:
    """The documented sign-in answer yields (token, user id, role); other bodies yield None."""
    good = {"accessToken": "t", "user": {"_id": 7, "role": "SystemAdministrator"}}
    assert sign_in_answer(orjson.dumps(good)) == ("t", "7", "SystemAdministrator")
    for body in (b"<html>", b"[]", orjson.dumps({"accessToken": "", "user": {}})):
        assert sign_in_answer(body) is None
