"""Tests of harvester.api.replies: replies and exceptions → models or HarvesterErrors,
without a session."""

from __future__ import annotations

import datetime as dt

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from harvester.api.replies import (
    Reply,
    available_days,
    device_list,
    excerpt,
    json_array,
    sign_in_answer,
    sign_in_refusal,
    status_error,
    transport_error,
)
from harvester.errors import (
    FatalRemoteError,
    MalformedReplyError,
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
    """A 200 must hold a JSON array of objects. A body that is not JSON (cut off) is a plain
    shape error, worth the usual retries; whole JSON of another shape is a malformed reply."""
    assert json_array(_reply(200, [{"a": 1}]), WHAT, []) == [{"a": 1}]
    for body in (b"<html>", b'[{"a": 1}, {"a"'):
        with pytest.raises(ShapeError) as caught:
            json_array(_reply(200, body), WHAT, [])
        assert type(caught.value) is ShapeError
    for body in ({"data": []}, [1, 2], None):
        with pytest.raises(MalformedReplyError):
            json_array(_reply(200, body), WHAT, [])
    with pytest.raises(ServerError):
        json_array(_reply(502, b"bad gateway"), WHAT, [])


def test_device_list_keeps_usable_devices_and_skips_each_other_entry_once() -> None:
    """Known types become Devices (numeric uuids as text, hostile text kept raw); every entry
    that cannot be harvested is skipped with one device_skipped warning naming it."""
    body = [
        {"uuid": 1041, "type": "SPOD", "name": "pod"},
        {"uuid": "9", "type": "X"},
        {"uuid": "", "type": "FMD"},
        {"uuid": None, "type": "FMD"},
        {"type": "FMD"},
        {"uuid": True, "type": "FMD"},
        {"uuid": ["1"], "type": "FMD"},
        {"uuid": "8"},
        {"uuid": "x" * 201, "type": "FMD"},
        "1042",
        {"uuid": "../../../../../escape", "type": "RAMP"},
        {"uuid": "1041", "type": "FMD"},
    ]
    with capture_logs() as logs:
        devices = device_list(_reply(200, body), WHAT, [])
    # A uuid too long for a folder names a real device: kept, discovery reports it failed.
    assert [(d.uuid, d.type, d.name) for d in devices] == [
        ("1041", "SPOD", "pod"),
        ("x" * 201, "FMD", ""),
        ("../../../../../escape", "RAMP", ""),
    ]
    skipped = [(e["event"], e["uuid"], e["reason"]) for e in logs]
    assert [uuid for _, uuid, _ in skipped] == [
        "9", "", "null", "null", "true", '["1"]', "8", "null", "1041"
    ]  # fmt: skip
    assert {event for event, _, _ in skipped} == {"device_skipped"}
    expected = ["unknown type", "empty uuid", "no uuid", "no uuid", "not text", "not text"]
    expected += ["unknown type null", "not an object", "duplicate"]
    for (_, _, reason), part in zip(skipped, expected, strict=True):
        assert part in reason


def test_a_device_list_that_is_not_an_array_fails() -> None:
    """Only a device list that is not a JSON array fails the call."""
    with pytest.raises(MalformedReplyError):
        device_list(_reply(200, {"devices": []}), WHAT, [])
    assert device_list(_reply(200, []), WHAT, []) == []


def test_available_days_are_sorted_and_bad_entries_named() -> None:
    """Days come back sorted; an entry that is not a day (no _id, an impossible day, a
    negative or textual count) names itself in a malformed-reply error."""

    def entry(day: int, count: object) -> dict[str, object]:
        key = {"year": 2024, "month": 1, "day": day}
        return {"_id": key, "count": count, "date": f"2024-01-0{day}T23:00:00.000Z"}

    days = available_days(_reply(200, [entry(2, 3), entry(1, 5)]), WHAT, [])
    assert [(d.day, d.count) for d in days] == [(dt.date(2024, 1, 1), 5), (dt.date(2024, 1, 2), 3)]
    impossible = {**entry(1, 1), "_id": {"year": 2024, "month": 2, "day": 30}}
    no_id = {"count": 1, "date": "2024-01-01T23:00:00.000Z"}
    for bad in (entry(1, -1), entry(1, "5"), impossible, no_id):
        with pytest.raises(MalformedReplyError, match="bad entry"):
            available_days(_reply(200, [entry(2, 3), bad]), WHAT, [])


def test_sign_in_answer_reads_token_user_and_role_or_nothing() -> None:
    """The documented sign-in answer yields (token, user id, role); other bodies yield None."""
    good = {"accessToken": "t", "user": {"_id": 7, "role": "SystemAdministrator"}}
    assert sign_in_answer(orjson.dumps(good)) == ("t", "7", "SystemAdministrator")
    for body in (b"<html>", b"[]", orjson.dumps({"accessToken": "", "user": {}})):
        assert sign_in_answer(body) is None


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b'{"message": "Invalid password hunter2", "user": null}', True),
        (b'{"user": {"id": "7", "role": "r"}, "message": "ok"}', True),
        (b'{"accessToken": "", "message": "no"}', True),
        (b'{"accessToken": "t", "user": {"role": "r"}}', False),
        (b"<html>login</html>", False),
        (b'{"status": "up"}', False),
        (b"[1, 2]", False),
    ],
)
def test_a_sign_in_answer_of_the_apis_shape_without_a_token_is_a_refusal(
    body: bytes, refused: bool
) -> None:
    """A JSON object with ``message`` or ``user`` and no token is a refusal (authentication
    failed, exit 3), its message shown with secrets masked; an HTML page, another JSON shape
    or an answer that has a token (but, say, no user id) is not."""
    refusal = sign_in_refusal(body, ["hunter2"])
    assert (refusal is not None) is refused
    assert "hunter2" not in (refusal or "")
