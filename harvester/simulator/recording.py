"""Recorded sessions with the service (``docs/recording.md``): reading, writing, redacting.

A recording is a folder holding ``session.json`` (what it is) and ``exchanges.jsonl``, one
exchange a line in the order they happened. ``simulate --replay`` serves one; whatever records
the real service (``harvester probe --record``, ``scripts/record_fixture.py`` for the
simulator) writes one with ``write_recording`` after passing every exchange through
``redact``.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import orjson

from harvester.errors import ConfigError

FORMAT: Final = "sensit-recording"
VERSION: Final = 1
SESSION_FILE: Final = "session.json"
EXCHANGES_FILE: Final = "exchanges.jsonl"
#: Stands for the password wherever a recording would hold it.
PASSWORD_PLACEHOLDER: Final = "<redacted-password>"
#: Stands for an access token wherever a recording would hold one (the sign-in answer's
#: ``accessToken`` included), so replay serves it as the token.
TOKEN_PLACEHOLDER: Final = "<redacted-token>"
#: Response headers a recording never keeps: they carry credentials.
_SECRET_HEADERS: Final = frozenset({"set-cookie", "authorization", "cookie"})

Pairs = tuple[tuple[str, str], ...]
#: What a request is matched on: method, path, its query's pairs in order of name and value,
#: and its body as compared (``comparable_body``).
RequestKey = tuple[str, str, Pairs, bytes]


def comparable_body(body: bytes) -> bytes:
    """A request body as replay compares it: a JSON body by its value (key order and spacing
    are the client's business), any other body byte for byte."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return b"raw:" + body
    return b"json:" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def request_key(
    method: str, path: str, query: Iterable[tuple[str, str]], body: bytes
) -> RequestKey:
    """The key under which a request finds its recorded answer."""
    return method.upper(), path, tuple(sorted(query)), comparable_body(body)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and the answer it got. ``sign_in`` marks the sign-in, which replay matches
    on method and path alone (its body held the credentials)."""

    method: str
    path: str
    query: Pairs
    request_body: bytes
    status: int
    headers: Pairs
    body: bytes
    sign_in: bool = False

    @property
    def key(self) -> RequestKey:
        return request_key(self.method, self.path, self.query, self.request_body)

    def to_json(self) -> dict[str, Any]:
        """The exchange as one line of ``exchanges.jsonl``."""
        line: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "query": [list(pair) for pair in self.query],
        }
        try:
            line["request_json"] = orjson.loads(self.request_body)
        except orjson.JSONDecodeError:
            line.update(_text_or_base64("request", self.request_body))
        if self.sign_in:
            line["sign_in"] = True
        line["status"] = self.status
        line["headers"] = [list(pair) for pair in self.headers]
        line.update(_text_or_base64("body", self.body))
        return line

    @classmethod
    def from_json(cls, line: object) -> Exchange:
        """An exchange from one decoded line; ``ValueError`` naming what is wrong."""
        if not isinstance(line, dict):
            raise ValueError("not a JSON object")
        method, path, status = line.get("method"), line.get("path"), line.get("status")
        if not isinstance(method, str) or not method:
            raise ValueError("'method' must be a non-empty text")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("'path' must be a text starting with /")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("'status' must be an HTTP status code")
        if "request_json" in line:
            request_body = orjson.dumps(line["request_json"])
        else:
            request_body = _bytes_of(line, "request")
        return cls(
            method=method.upper(),
            path=path,
            query=_pairs(line.get("query", []), "query"),
            request_body=request_body,
            status=status,
            headers=_pairs(line.get("headers", []), "headers"),
            body=_bytes_of(line, "body"),
            sign_in=line.get("sign_in") is True,
        )


def _text_or_base64(name: str, data: bytes) -> dict[str, str]:
    # Bodies are kept exactly as sent: how the service writes numbers, dates and spacing is
    # what a recording is for.
    if name == "request" and not data:
        return {}
    text_field = "request_text" if name == "request" else name
    try:
        return {text_field: data.decode()}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode()}


def _bytes_of(line: Mapping[str, Any], name: str) -> bytes:
    text_field = "request_text" if name == "request" else name
    text, encoded = line.get(text_field), line.get(f"{name}_base64")
    if isinstance(text, str):
        return text.encode()
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError(f"'{name}_base64' is not base64") from None
    if name == "request" and text is None and encoded is None:
        return b""
    raise ValueError(f"'{text_field}' (or '{name}_base64') must be a text")


def _pairs(value: object, name: str) -> Pairs:
    if not isinstance(value, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        for pair in value
    ):
        raise ValueError(f"'{name}' must be a list of [name, value] texts")
    return tuple((pair[0], pair[1]) for pair in value)


def read_recording(folder: Path) -> list[Exchange]:
    """The exchanges of the recording in ``folder``; ``ConfigError`` naming the file (and
    line) that cannot be read."""
    session_path, exchanges_path = folder / SESSION_FILE, folder / EXCHANGES_FILE
    try:
        session = orjson.loads(session_path.read_bytes())
        lines = exchanges_path.read_bytes().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the recording {folder}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise ConfigError(f"{session_path} is not JSON") from None
    if not isinstance(session, dict) or session.get("format") != FORMAT:
        raise ConfigError(f"{session_path} does not describe a {FORMAT}")
    if session.get("version") != VERSION:
        raise ConfigError(
            f"{session_path}: version {session.get('version')!r} of the format; "
            f"this harvester reads version {VERSION}"
        )
    exchanges = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            exchanges.append(Exchange.from_json(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise ConfigError(f"{exchanges_path}, line {number}: {exc}") from None
    return exchanges


def write_recording(
    folder: Path, exchanges: Iterable[Exchange], session: Mapping[str, Any]
) -> None:
    """Write a recording into ``folder`` (created if need be); ``session`` adds free fields
    to ``session.json`` (where and when it was recorded, by what)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, **session}
    (folder / SESSION_FILE).write_bytes(orjson.dumps(header, option=orjson.OPT_INDENT_2) + b"\n")
    lines = [orjson.dumps(exchange.to_json()) + b"\n" for exchange in exchanges]
    (folder / EXCHANGES_FILE).write_bytes(b"".join(lines))


def redact(exchange: Exchange, tokens: Iterable[str]) -> Exchange:
    """The exchange with every occurrence of ``tokens`` replaced by ``TOKEN_PLACEHOLDER`` (as
    written raw or form-encoded), a sign-in's password by ``PASSWORD_PLACEHOLDER``, and
    without the response headers that carry credentials."""
    forms = {
        form.encode()
        for token in tokens
        if token
        for form in (token, urllib.parse.quote_plus(token))
    }

    def scrub(data: bytes) -> bytes:
        for form in forms:
            data = data.replace(form, TOKEN_PLACEHOLDER.encode())
        return data

    def scrub_text(text: str) -> str:
        return scrub(text.encode()).decode()

    request_body = exchange.request_body
    if exchange.sign_in:
        request_body = _without_password(request_body)
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
        body=scrub(exchange.body),
    )


def _without_password(body: bytes) -> bytes:
    """A sign-in body with its ``password`` field replaced; a body of another shape whole.

    Only the field is replaced, not the password's text wherever it occurs: a short password
    is often part of the e-mail address.
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
