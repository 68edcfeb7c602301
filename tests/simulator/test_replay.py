"""``simulate --replay``: recordings read and written, secrets redacted, exchanges served."""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from harvester.cli import simulate
from harvester.errors import ConfigError
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.recording import (
    EXCHANGES_FILE,
    PASSWORD_PLACEHOLDER,
    SESSION_FILE,
    TOKEN_PLACEHOLDER,
    Exchange,
    read_recording,
    redact,
    write_recording,
)
from harvester.simulator.server import running_simulator

RECORDS = "/sensors-data/getFMDDeviceLogForGivenHour"
WINDOW = {"DeviceId": "1001", "DeviceType": "FMD", "StartDate": "a", "EndDate": "b"}
JSON = (("Content-Type", "application/json; charset=utf-8"),)


def _exchange(body: bytes, status: int = 200, **changes: Any) -> Exchange:
    window = Exchange("POST", RECORDS, (), orjson.dumps(WINDOW), status, JSON, body)
    return replace(window, **changes)


SIGN_IN = _exchange(
    b'{"accessToken":"<redacted-token>","user":{"id":"abc","role":"R"}}',
    path="/users/signin",
    request_body=b'{"email":"demo@example.com","password":"<redacted-password>"}',
    sign_in=True,
)
DEVICES = _exchange(
    b'[{"uuid":"1001","type":"FMD"}]',
    method="GET",
    path="/clients/getDevicesFromDeviceTypeAndRole",
    query=(("DeviceType", "ALL"), ("Role", "R"), ("UserId", "abc")),
    request_body=b"",
)
#: The same window asked twice: refused at first, then answered.
REFUSED = _exchange(b"<html>slow down</html>", 429, headers=(("Retry-After", "1"),))
ANSWERED = _exchange(
    b'{"data":[{"_id":"x","date":"2024-01-01T00:00:00.000Z","v":1.50}]}',
    headers=(*JSON, ("X-Served-By", "one"), ("X-Served-By", "two"), ("Content-Length", "1")),
)
BINARY = _exchange(b"\xff\xfe\x00", path="/binary", request_body=b"\x80raw")


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    folder = tmp_path / "session"
    exchanges = [SIGN_IN, DEVICES, REFUSED, ANSWERED, BINARY]
    write_recording(folder, exchanges, {"recorder": "tests"})
    return folder


@pytest.fixture
async def replay(recording: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with (
        running_simulator(SimulatorOptions(replay=recording)) as url,
        aiohttp.ClientSession() as session,
    ):
        yield url, session


def test_a_recording_reads_back_as_written(recording: Path) -> None:
    """Every exchange comes back equal, bodies byte for byte (JSON request bodies by value),
    and the lines keep JSON request bodies readable."""
    exchanges = read_recording(recording)
    assert [e.key for e in exchanges] == [e.key for e in (SIGN_IN, DEVICES, REFUSED, ANSWERED)] + [
        BINARY.key
    ]
    assert exchanges[3] == ANSWERED
    assert exchanges[4].body == BINARY.body
    assert exchanges[4].request_body == BINARY.request_body
    lines = (recording / EXCHANGES_FILE).read_text().splitlines()
    assert json.loads(lines[2])["request_json"] == WINDOW
    assert json.loads(lines[4])["body_base64"] == base64.b64encode(BINARY.body).decode()
    assert json.loads((recording / SESSION_FILE).read_text())["recorder"] == "tests"


async def test_replay_serves_the_recorded_status_headers_and_body(
    replay: tuple[str, aiohttp.ClientSession],
) -> None:
    """A request answered twice gets its recorded answers in turn, then the last again; a
    JSON body matches whatever its key order and spacing, a query whatever its order."""
    url, session = replay
    spaced = json.dumps(dict(reversed(WINDOW.items())), indent=2)
    answers = []
    for _ in range(3):
        async with session.post(url + RECORDS, data=spaced) as response:
            answers.append((response.status, await response.read(), response.headers))
    assert [status for status, _, _ in answers] == [429, 200, 200]
    assert answers[0][2]["Retry-After"] == "1"
    assert answers[1][1] == answers[2][1] == ANSWERED.body
    assert answers[1][2].getall("X-Served-By") == ["one", "two"]
    assert answers[1][2]["Content-Type"] == "application/json; charset=utf-8"
    query = {"UserId": "abc", "Role": "R", "DeviceType": "ALL"}
    async with session.get(url + DEVICES.path, params=query) as response:
        assert (response.status, await response.read()) == (200, DEVICES.body)
    async with session.post(url + "/binary", data=b"\x80raw") as response:
        assert await response.read() == BINARY.body


@pytest.mark.parametrize(
    "request_args",
    [
        {"json": {"email": "demo@example.com", "password": "the real one"}},
        {"data": {"email": "someone@example.com", "password": "x"}},
        {"data": b"not even a body"},
    ],
)
async def test_replay_answers_a_sign_in_whatever_it_sends(
    replay: tuple[str, aiohttp.ClientSession], request_args: dict[str, Any]
) -> None:
    """The recorded sign-in answer (its token a placeholder) comes back for any credentials,
    and later calls are served whatever bearer token they carry."""
    url, session = replay
    async with session.post(url + "/users/signin", **request_args) as response:
        assert response.status == 200
        assert (await response.json())["accessToken"] == TOKEN_PLACEHOLDER
    headers = {"Authorization": "Bearer anything-at-all"}
    query = {"DeviceType": "ALL", "Role": "R", "UserId": "abc"}
    async with session.get(url + DEVICES.path, params=query, headers=headers) as response:
        assert response.status == 200


async def test_an_unrecorded_request_gets_a_404_naming_it(
    replay: tuple[str, aiohttp.ClientSession],
) -> None:
    """Another body, query or path is not answered from the recording: a JSON 404 names the
    request, and the stats count it."""
    url, session = replay
    other = {**WINDOW, "EndDate": "c"}
    async with session.post(url + RECORDS, json=other) as response:
        assert response.status == 404
        answer = await response.json()
    assert answer["request"] == {"method": "POST", "path": RECORDS, "query": [], "body": other}
    assert RECORDS in answer["message"]
    async with session.get(url + DEVICES.path, params={"DeviceType": "FMD"}) as response:
        assert response.status == 404
        assert (await response.json())["request"]["query"] == [["DeviceType", "FMD"]]
    async with session.get(url + "/__sim/stats") as response:
        stats = await response.json()
    assert stats["requests"][RECORDS] == {"404": 1}


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda d: (d / EXCHANGES_FILE).write_text('{"method": "GET"}\n'), "line 1: 'path'"),
        (lambda d: (d / EXCHANGES_FILE).write_text("[1,\n"), "line 1"),
        (lambda d: (d / SESSION_FILE).write_text('{"format": "other"}'), "does not describe"),
        (
            lambda d: (d / SESSION_FILE).write_text('{"format": "sensit-recording", "version": 9}'),
            "version 9",
        ),
        (lambda d: (d / SESSION_FILE).unlink(), "cannot read the recording"),
    ],
)
def test_a_recording_that_cannot_be_read_is_a_config_error_naming_it(
    recording: Path, damage: Callable[[Path], object], fragment: str
) -> None:
    """A missing or malformed file, or another format, is refused with its place named."""
    damage(recording)
    with pytest.raises(ConfigError, match=fragment):
        read_recording(recording)


def test_redaction_replaces_tokens_everywhere_and_the_sign_in_password() -> None:
    """Tokens go wherever they occur; the password only as the sign-in's field (a short one
    is often part of the e-mail); credential headers are dropped."""
    token = "eyJhbGciOi.payload.signature"
    sign_in = Exchange(
        "POST",
        "/users/signin",
        (),
        b'{"email":"demo@example.com","password":"demo"}',
        200,
        (("Set-Cookie", "session=1"), ("X-Token", token)),
        orjson.dumps({"accessToken": token, "user": {"email": "demo@example.com"}}),
        sign_in=True,
    )
    redacted = redact(sign_in, [token])
    assert orjson.loads(redacted.request_body) == {
        "email": "demo@example.com",
        "password": PASSWORD_PLACEHOLDER,
    }
    assert orjson.loads(redacted.body)["accessToken"] == TOKEN_PLACEHOLDER
    assert redacted.headers == (("X-Token", TOKEN_PLACEHOLDER),)
    form = redact(
        Exchange("POST", "/users/signin", (), b"email=a%40b&password=p%26w", 401, (), b"", True),
        [],
    )
    assert form.request_body == b"email=a%40b&password=%3Credacted-password%3E"
    opaque = redact(Exchange("POST", "/users/signin", (), b"secret", 401, (), b"", True), [])
    assert opaque.request_body == PASSWORD_PLACEHOLDER.encode()
    echoed = redact(_exchange(b"", path="/x", query=(("t", token),)), [token])
    assert echoed.query == (("t", TOKEN_PLACEHOLDER),)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--order", "oldest"], "drop --order"),
        (["--fault-rate", "0.1"], "drop --fault-rate"),
        ([], "cannot read the recording"),
    ],
)
def test_replay_is_refused_with_a_usage_error_when_it_cannot_serve(
    tmp_path: Path, flags: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--replay`` with a switch or faults it could not honour, or of a folder without a
    recording, exits 2 with one error line."""
    parser = argparse.ArgumentParser(prog="harvester")
    simulate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", "--replay", str(tmp_path), *flags])
    with pytest.raises(SystemExit) as stopped:
        args.handler(args)
    assert stopped.value.code == 2
    assert fragment in capsys.readouterr().err
