"""The harvester's side of recordings (``harvester.api.recording``): what ``probe --record``
takes out of an exchange, how ``--scramble`` replaces measured values, and that the simulator's
own reader (``harvester.simulator.recording``) reads what it writes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import orjson

from harvester.api.recording import (
    EMAIL_PLACEHOLDER,
    PASSWORD_PLACEHOLDER,
    TEXT_PLACEHOLDER,
    TOKEN_PLACEHOLDER,
    USER_ID_PLACEHOLDER,
    Exchange,
    Identity,
    redact,
    scramble_numbers,
    write_recording,
)
from harvester.simulator import recording as simulator_recording

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJlbWFpbCI6ImFAYi5jIn0.c2ln+/="
EMAIL = "jane.doe+sensit@example.org"
USER_ID = "65a1b2c3d4e5f60718293a4b"
IDENTITY = Identity(tokens=(TOKEN,), emails=(EMAIL,), user_ids=(USER_ID,))
KEY = b"k" * 32


def exchange(body: object, request: object = None, **fields: Any) -> Exchange:
    """An exchange whose bodies are JSON-encoded unless bytes."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = b"" if request is None else orjson.dumps(request)
    base = Exchange("POST", "/x", (), sent, 200, (("Content-Type", "application/json"),), raw)
    return dataclasses.replace(base, **fields)


def test_a_sign_in_keeps_no_password_token_email_user_id_or_name() -> None:
    """The password field, the token, the e-mail, the user id and the display name are
    replaced by placeholders; role and status stay; the exchange is marked ``sign_in``."""
    answer = {
        "accessToken": TOKEN,
        "user": {
            "id": USER_ID,
            "role": "SystemAdministrator",
            "email": EMAIL,
            "displayName": "Jane Doe",
            "status": "Active",
        },
        "message": "Logged in successfully",
    }
    sent = {"email": EMAIL, "password": "hunter2"}
    redacted = redact(exchange(answer, sent), "sign-in", IDENTITY)
    assert redacted.sign_in
    assert orjson.loads(redacted.request_body) == {
        "email": EMAIL_PLACEHOLDER,
        "password": PASSWORD_PLACEHOLDER,
    }
    assert orjson.loads(redacted.body) == {
        "accessToken": TOKEN_PLACEHOLDER,
        "user": {
            "id": USER_ID_PLACEHOLDER,
            "role": "SystemAdministrator",
            "email": EMAIL_PLACEHOLDER,
            "displayName": TEXT_PLACEHOLDER,
            "status": "Active",
        },
        "message": "Logged in successfully",
    }


def test_identifying_texts_go_from_queries_headers_and_bodies_raw_or_encoded() -> None:
    """The user id in a query, a token echoed in a header (form-encoded) or an error body, and
    the credential headers: none survives."""
    echoed = exchange(
        {"message": f"token {TOKEN} of {EMAIL} refused"},
        method="GET",
        query=(("UserId", USER_ID), ("Role", "SystemAdministrator")),
        headers=(
            ("X-Echo", f"t={TOKEN.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}"),
            ("Set-Cookie", "session=abc"),
            ("Content-Type", "application/json"),
        ),
    )
    redacted = redact(echoed, "other", IDENTITY)
    assert redacted.query == (("UserId", USER_ID_PLACEHOLDER), ("Role", "SystemAdministrator"))
    assert redacted.headers == (
        ("X-Echo", f"t={TOKEN_PLACEHOLDER}"),
        ("Content-Type", "application/json"),
    )
    text = redacted.body.decode()
    assert TOKEN not in text
    assert EMAIL not in text


def test_a_device_list_loses_names_locations_pictures_and_keys() -> None:
    """Those fields become a placeholder; uuid and type (which replay and the judge need)
    stay, and empty fields stay empty."""
    entries = [
        {
            "uuid": "1041",
            "type": "SPOD",
            "name": "Acme refinery fence 3",
            "location": {"lat": 40.1, "long": -105.2},
            "picture": "",
            "key": "secret-key",
        }
    ]
    redacted = orjson.loads(redact(exchange(entries), "devices", IDENTITY).body)
    assert redacted == [
        {
            "uuid": "1041",
            "type": "SPOD",
            "name": TEXT_PLACEHOLDER,
            "location": TEXT_PLACEHOLDER,
            "picture": "",
            "key": TEXT_PLACEHOLDER,
        }
    ]


BODY = (
    b'{"data": [{"_id": "a1", "id": "1041", "date": "2024-01-01T02:00:00.000Z", '
    b'"temp": 12.50, "count": 7, "lat": 40.595312, "neg": -0.031, "big": 1.5e3, '
    b'"flag": true, "none": null, "nested": {"v": [1, 22]}},\n'
    b' {"_id": "a2", "id": "1041", "date": "2024-01-01T01:59:00.000Z", "temp": 12.50, '
    b'"count": 8, "lat": 40.595312, "neg": -0.031, "big": 1.5e3, "flag": false, "none": null, '
    b'"nested": {"v": [3, 4]}}], "total": 2}'
)


def _shape(body: bytes) -> bytes:
    """The body with every digit blanked: what scrambling must keep."""
    return re.sub(rb"\d", b"#", body)


def test_scrambling_replaces_every_record_number_by_one_of_the_same_shape() -> None:
    """Every number inside a record changes but keeps its sign, digits and exponent, so the
    text keeps its layout and an integer stays an integer; ids, dates, the device's id,
    booleans, nulls and numbers outside the records are left as they are."""
    scrambled = redact(exchange(BODY), "records", IDENTITY, KEY).body
    assert _shape(scrambled) == _shape(BODY)
    before, after = orjson.loads(BODY), orjson.loads(scrambled)
    assert after["total"] == 2
    for old, new in zip(before["data"], after["data"], strict=True):
        for name in ("_id", "id", "date", "flag", "none"):
            assert new[name] == old[name]
        for name in ("temp", "count", "lat", "neg", "big"):
            assert type(new[name]) is type(old[name])
        assert (new["temp"], new["lat"]) != (old["temp"], old["lat"])


def test_scrambling_is_consistent_within_a_key_and_differs_across_keys() -> None:
    """Equal values of a field scramble alike (a record answered by two windows stays one
    record), a bare array of records is scrambled like an enveloped one, and another key
    gives other values."""
    bare = BODY[len(b'{"data": ') : BODY.rindex(b', "total"')]
    once = scramble_numbers(bare, KEY, lambda path: len(path) >= 2 and path[0] == "")
    records = orjson.loads(once)
    assert records[0]["temp"] == records[1]["temp"]
    assert records[0]["lat"] == records[1]["lat"]
    again = redact(exchange(bare), "records", IDENTITY, KEY).body
    assert again == once
    other = redact(exchange(bare), "records", IDENTITY, b"o" * 32).body
    assert other != once


def test_scrambling_a_device_list_touches_only_battery_and_the_last_record() -> None:
    """In the device list only measured values change: a device's battery and its
    lastReceivedRecord's numbers."""
    entries = [
        {
            "uuid": "1",
            "type": "FMD",
            "isCharging": 0,
            "battery": 80,
            "lastReceivedRecord": {"temp": 1.5},
        }
    ]
    scrambled = orjson.loads(redact(exchange(entries), "devices", IDENTITY, KEY).body)[0]
    assert scrambled["uuid"] == "1"
    assert scrambled["isCharging"] == 0
    assert scrambled["battery"] != 80
    assert scrambled["lastReceivedRecord"]["temp"] != 1.5


def test_the_simulators_reader_reads_what_the_harvester_writes(tmp_path: Path) -> None:
    """Written by ``harvester.api.recording`` and read by the simulator's own code: the same
    method, path, query, bodies (JSON, text and binary), status, headers and sign-in mark."""
    written = [
        Exchange("POST", "/users/signin", (), b'{"a": 1}', 200, (("A", "b"),), b"{}", True),
        Exchange("GET", "/d", (("k", "v"),), b"", 404, (), b"<html>\xe9</html>"),
        Exchange("POST", "/f", (), b"x=1&y=2", 500, (("A", "1"), ("A", "2")), b"oops"),
    ]
    write_recording(tmp_path, written, {"recorder": "test"})
    read = simulator_recording.read_recording(tmp_path)
    assert [(e.method, e.path, e.query, e.status, e.headers, e.body, e.sign_in) for e in read] == [
        (e.method, e.path, e.query, e.status, e.headers, e.body, e.sign_in) for e in written
    ]
    assert [simulator_recording.comparable_body(e.request_body) for e in read] == [
        simulator_recording.comparable_body(e.request_body) for e in written
    ]
