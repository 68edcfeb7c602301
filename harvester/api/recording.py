"""Recorded sessions, the harvester's side: writing what ``harvester probe --record`` saw in the
format of ``docs/recording.md``, with every secret and identifying text taken out first.

The simulator reads the format with its own code (``harvester.simulator.recording``): it stands
beside the harvester and neither imports the other, so each follows the document, and the tests
replay what this module writes (``tests/test_probe_cli.py``). Beyond what the document asks of
every recorder (the password field, the tokens, the credential headers), ``redact`` takes out
the account's e-mail and user id wherever they occur, the sign-in answer's other personal
texts, the device list's names, locations, pictures and keys, and, when asked, scrambles the
measured values (``scramble_numbers``). PURE apart from ``write_recording``.
"""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

import orjson

FORMAT: Final = "sensit-recording"
VERSION: Final = 1
SESSION_FILE: Final = "session.json"
EXCHANGES_FILE: Final = "exchanges.jsonl"
PASSWORD_PLACEHOLDER: Final = "<redacted-password>"
TOKEN_PLACEHOLDER: Final = "<redacted-token>"
EMAIL_PLACEHOLDER: Final = "<redacted-email>"
USER_ID_PLACEHOLDER: Final = "<redacted-user-id>"
#: Stands for any other identifying text (a name, a location, a picture's address).
TEXT_PLACEHOLDER: Final = "<redacted>"
#: Response headers a recording never keeps: they carry credentials.
_SECRET_HEADERS: Final = frozenset({"set-cookie", "authorization", "cookie"})
#: Fields of the sign-in answer's ``user`` that say nothing about the person.
_USER_FIELDS_KEPT: Final = frozenset({"role", "status"})
#: Fields of a device-list entry that name or place the device's owner or site.
_DEVICE_FIELDS_REDACTED: Final = ("name", "location", "picture", "key")

Pairs = tuple[tuple[str, str], ...]
#: What an exchange was for, which decides what in its bodies identifies someone.
Kind = Literal["sign-in", "devices", "dates", "records", "other"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and the answer it got, as ``docs/recording.md`` describes a line of
    ``exchanges.jsonl``; ``body`` is the response body decoded from any Content-Encoding."""

    method: str
    path: str
    query: Pairs
    request_body: bytes
    status: int
    headers: Pairs
    body: bytes
    sign_in: bool = False

    def to_json(self) -> dict[str, Any]:
        """The exchange as one line of ``exchanges.jsonl``."""
        line: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "query": [list(pair) for pair in self.query],
        }
        if self.request_body:
            try:
                line["request_json"] = orjson.loads(self.request_body)
            except orjson.JSONDecodeError:
                line.update(_text_or_base64("request_text", "request_base64", self.request_body))
        if self.sign_in:
            line["sign_in"] = True
        line["status"] = self.status
        line["headers"] = [list(pair) for pair in self.headers]
        line.update(_text_or_base64("body", "body_base64", self.body))
        return line


def _text_or_base64(text_field: str, base64_field: str, data: bytes) -> dict[str, str]:
    try:
        return {text_field: data.decode()}
    except UnicodeDecodeError:
        return {base64_field: base64.b64encode(data).decode()}


def write_recording(
    folder: Path, exchanges: Iterable[Exchange], session: Mapping[str, Any]
) -> None:
    """Write a recording into ``folder`` (created if need be); ``session`` adds free fields
    to ``session.json``. An earlier recording in the folder is replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, **session}
    (folder / SESSION_FILE).write_bytes(orjson.dumps(header, option=orjson.OPT_INDENT_2) + b"\n")
    lines = [orjson.dumps(exchange.to_json()) + b"\n" for exchange in exchanges]
    (folder / EXCHANGES_FILE).write_bytes(b"".join(lines))


@dataclass(frozen=True)
class Identity:
    """The texts that identify the account, taken out wherever they occur: the access tokens
    it was given, its e-mail addresses (as typed, and as the server spells it) and user ids."""

    tokens: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()

    def replacements(self) -> list[tuple[bytes, bytes]]:
        """(text, placeholder) pairs, raw and form-encoded, longest text first: an e-mail
        that holds a user id is replaced whole."""
        found: dict[bytes, bytes] = {}
        for texts, placeholder in (
            (self.tokens, TOKEN_PLACEHOLDER),
            (self.emails, EMAIL_PLACEHOLDER),
            (self.user_ids, USER_ID_PLACEHOLDER),
        ):
            for text in texts:
                if text:
                    for form in {text, urllib.parse.quote_plus(text), urllib.parse.quote(text)}:
                        found.setdefault(form.encode(), placeholder.encode())
        return sorted(found.items(), key=lambda pair: -len(pair[0]))


def redact(
    exchange: Exchange, kind: Kind, identity: Identity, scramble_key: bytes | None = None
) -> Exchange:
    """The exchange fit to share: the sign-in's password field and personal texts, the device
    list's identifying fields, every token, e-mail and user id of ``identity`` and the
    credential headers taken out; with a ``scramble_key``, every number of every record (and
    of the device list's ``lastReceivedRecord`` and ``battery``) replaced by ``scramble_numbers``.
    """
    request_body, body = exchange.request_body, exchange.body
    if kind == "sign-in":
        request_body = _without_password(request_body)
        body = _without_personal_texts(body)
    elif kind == "devices":
        body = _without_device_identity(body)
    if scramble_key is not None and kind in ("records", "devices"):
        body = scramble_numbers(body, scramble_key, _in_record if kind == "records" else _in_device)
    replacements = identity.replacements()

    def scrub(data: bytes) -> bytes:
        for text, placeholder in replacements:
            data = data.replace(text, placeholder)
        return data

    def scrub_text(text: str) -> str:
        return scrub(text.encode()).decode()

    return replace(
        exchange,
        path=scrub_text(exchange.path),
        query=tuple((name, scrub_text(value)) for name, value in exchange.query),
        request_body=scrub(request_body),
        headers=tuple(
            (name, scrub_text(value))
            for name, value in exchange.headers
            if name.lower() not in _SECRET_HEADERS
        ),
        body=scrub(body),
        sign_in=kind == "sign-in",
    )


def _without_password(body: bytes) -> bytes:
    """A sign-in body with its ``password`` field replaced; a body of another shape whole.

    Only the field: a short password is often part of the e-mail address, which is taken out
    on its own.
    """
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError:
        fields = None
    if isinstance(fields, dict) and "password" in fields:
        return orjson.dumps({**fields, "password": PASSWORD_PLACEHOLDER})
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        pairs = []
    if any(name == "password" for name, _ in pairs):
        redacted = [(n, PASSWORD_PLACEHOLDER if n == "password" else v) for n, v in pairs]
        return urllib.parse.urlencode(redacted).encode()
    return PASSWORD_PLACEHOLDER.encode()


def _without_personal_texts(body: bytes) -> bytes:
    """A sign-in answer whose ``user`` keeps only its role and status as they were: every other
    text (a display name, a phone number) becomes a placeholder. The id and the e-mail are
    replaced everywhere by ``Identity``; replacing them here too would hide them from it."""
    answer = _json_or_none(body)
    user = answer.get("user") if isinstance(answer, dict) else None
    if not isinstance(answer, dict) or not isinstance(user, dict):
        return body
    kept = {
        key: value
        if key in _USER_FIELDS_KEPT | {"id", "_id", "email"} or not isinstance(value, str)
        else TEXT_PLACEHOLDER
        for key, value in user.items()
    }
    return body if kept == user else orjson.dumps({**answer, "user": kept})


def _without_device_identity(body: bytes) -> bytes:
    """A device list whose entries' names, locations, pictures and keys are placeholders."""
    entries = _json_or_none(body)
    if not isinstance(entries, list):
        return body
    changed = False
    for entry in entries:
        if isinstance(entry, dict):
            for name in _DEVICE_FIELDS_REDACTED:
                if entry.get(name) not in (None, ""):
                    entry[name] = TEXT_PLACEHOLDER
                    changed = True
    return orjson.dumps(entries) if changed else body


def _json_or_none(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


# -- scrambling measured values ---------------------------------------------------------------

#: A JSON string, a number or a structural character; whitespace and literals fall between.
_TOKEN: Final = re.compile(
    rb'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[{}\[\]:,]', re.DOTALL
)
_NUMBER_START: Final = frozenset(b"-0123456789")
#: The path of a value inside a body: object keys, and ``ARRAY`` for an array's elements.
ARRAY: Final = ""
JsonPath = tuple[str, ...]


def _in_record(path: JsonPath) -> bool:
    """A value inside a record of ``{"data": [record, ...]}`` or of a bare array of records."""
    return (len(path) >= 3 and path[:2] == ("data", ARRAY)) or (len(path) >= 2 and path[0] == ARRAY)


def _in_device(path: JsonPath) -> bool:
    """A measured value of a device-list entry: its battery and its last record."""
    return len(path) >= 2 and path[0] == ARRAY and path[1] in ("battery", "lastReceivedRecord")


def scramble_numbers(body: bytes, key: bytes, inside: Callable[[JsonPath], bool]) -> bytes:
    """``body`` with every JSON number at a path ``inside`` accepts replaced by another of the
    same shape: the same sign, digits before and after the point and exponent, so an integer
    stays an integer and the text keeps its length and layout. The digits come from a keyed
    hash of the field's name and the number's text: equal values of a field stay equal across
    the recording (a record answered in two windows is scrambled alike), and without the key,
    which is not kept, nothing leads back. Texts, dates and ids are left as they are."""
    pieces: list[bytes] = []
    stack: list[list[str]] = []  # per open container: [kind, current key]
    expect_key = False
    done = 0
    for match in _TOKEN.finditer(body):
        token = match.group()
        first = token[0]
        if first == ord("{"):
            stack.append(["{", ""])
            expect_key = True
        elif first == ord("["):
            stack.append(["[", ARRAY])
            expect_key = False
        elif first in (ord("}"), ord("]")):
            if stack:
                stack.pop()
            expect_key = False
        elif first == ord(","):
            expect_key = bool(stack) and stack[-1][0] == "{"
        elif first == ord('"'):
            if expect_key and stack:
                stack[-1][1] = token[1:-1].decode(errors="replace")
                expect_key = False
        elif first in _NUMBER_START:
            path = tuple(frame[1] for frame in stack)
            if inside(path):
                field = next((name for name in reversed(path) if name != ARRAY), "")
                pieces += [body[done : match.start()], _scrambled(token, field, key)]
                done = match.end()
    pieces.append(body[done:])
    return b"".join(pieces)


def _scrambled(number: bytes, field: str, key: bytes) -> bytes:
    digest = hashlib.blake2b(field.encode() + b"\0" + number, key=key[:64]).digest()
    mantissa, exponent = number, b""
    for index, char in enumerate(number):
        if char in b"eE":
            mantissa, exponent = number[:index], number[index:]
            break
    integer_digits = len(mantissa.lstrip(b"-").split(b".")[0])
    draws = iter(digest * (1 + len(number) // len(digest)))
    out = bytearray()
    digits = 0
    for char in mantissa:
        if char in b"-.":
            out.append(char)
            continue
        # A number of several integer digits keeps a non-zero first one: 0 cannot lead.
        leading = digits == 0 and integer_digits > 1
        out += str(1 + next(draws) % 9 if leading else next(draws) % 10).encode()
        digits += 1
    return bytes(out) + exponent
