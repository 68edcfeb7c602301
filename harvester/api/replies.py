"""What a SENSIT Connect call's outcome means: plain values, or a ``HarvesterError``.

Part of the client's aiohttp boundary: :class:`harvester.api.client.SensitClient` sends, and the
functions here turn what came back into models or errors. Every aiohttp, OS and timeout
exception, every HTTP status other than success and every body that is not the documented
shape becomes a class of :mod:`harvester.errors` here; together with :mod:`harvester.api.client`
and :mod:`harvester.api.network` this is the one place that translation happens. They are
plain functions of the reply (or the exception), so they are tested without a session; the
client counts the errors they make in its stats. An error body is shown only as a short
excerpt with the caller's secrets masked.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import numpy as np
import orjson
import structlog

from harvester.api.wire import day_entry, last_records_ms, parse_retry_after, short_json
from harvester.errors import (
    FatalRemoteError,
    MalformedReplyError,
    RateLimitedError,
    RemoteError,
    ServerError,
    ServerUnreachableError,
    ShapeError,
    TransportError,
)
from harvester.models import DEVICE_TYPES, Device, DeviceDays

log = structlog.get_logger(__name__)

_EXCERPT_CHARS: Final = 200
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Reply:
    """One HTTP answer as read off the wire: status, whole body and the headers we use."""

    status: int
    body: bytes
    content_type: str
    retry_after: str | None
    location: str | None


def transport_error(
    exc: BaseException, what: str, shown_url: str, *, signed_in: bool
) -> RemoteError:
    """Connect failures before the first sign-in are start-up errors with one clear line."""
    if not signed_in and isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return ServerUnreachableError(
                f"TLS certificate verification failed for {shown_url} "
                f"({exc.certificate_error}): pass --ca-bundle FILE with the CA that signed "
                "the server's certificate"
            )
        if isinstance(exc, aiohttp.ClientSSLError):
            return ServerUnreachableError(f"TLS handshake with {shown_url} failed: {exc.os_error}")
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return ServerUnreachableError(
                f"cannot resolve host {exc.host!r} of {shown_url}: check --base-url "
                "(and your DNS or proxy settings)"
            )
        reason = (
            "connection refused"
            if isinstance(exc.os_error, ConnectionRefusedError)
            else (exc.os_error.strerror or str(exc.os_error))
        )
        return ServerUnreachableError(
            f"cannot connect to {shown_url}: {reason} — is the server running and --base-url right?"
        )
    if isinstance(exc, TimeoutError):
        return TransportError(f"{what}: timed out ({type(exc).__name__})")
    detail = str(exc) or type(exc).__name__
    return TransportError(f"{what}: {type(exc).__name__}: {detail[:_EXCERPT_CHARS]}")


def status_error(reply: Reply, what: str, secrets: Iterable[str]) -> RemoteError:
    """The error for a reply whose status is not the success ``what`` needed."""
    status = reply.status
    if status == 429:
        retry_after = parse_retry_after(reply.retry_after, dt.datetime.now(dt.UTC))
        hint = f", Retry-After {reply.retry_after}" if reply.retry_after is not None else ""
        return RateLimitedError(f"{what}: HTTP 429 rate limited{hint}", retry_after)
    shown = excerpt(reply.body, secrets)
    if status >= 500:
        return ServerError(f"{what}: HTTP {status}: {shown}", status)
    if 300 <= status < 400:
        return FatalRemoteError(
            f"{what}: HTTP {status} redirect to {reply.location}: check --base-url", status
        )
    if 400 <= status < 500:
        return FatalRemoteError(f"{what}: HTTP {status}: {shown}", status)
    return ShapeError(f"{what}: HTTP {status} where 200 with a body was expected")


def excerpt(body: bytes, secrets: Iterable[str]) -> str:
    """A short one-line view of an error body, tags stripped and ``secrets`` masked."""
    text = body[: _EXCERPT_CHARS * 8].decode("utf-8", errors="replace")
    text = _SPACE.sub(" ", _TAG.sub(" ", text)).strip()
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if not text:
        return "(empty body)"
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


def json_array(reply: Reply, what: str, secrets: Iterable[str]) -> list[dict[str, Any]]:
    """The body of a 200 that must be a JSON array of objects."""
    items = _json_list(reply, what, secrets)
    if not all(isinstance(i, dict) for i in items):
        raise MalformedReplyError(
            f"{what}: expected a JSON array of objects, got {short_json(items)}"
        )
    return items


def _json_list(reply: Reply, what: str, secrets: Iterable[str]) -> list[Any]:
    """The body of a 200 that must be a JSON array. A body that is not JSON (cut off, say)
    may come whole next time: a ``ShapeError``; JSON of another shape will not."""
    if reply.status != 200:
        raise status_error(reply, what, secrets)
    try:
        items = orjson.loads(reply.body)
    except orjson.JSONDecodeError as exc:
        raise ShapeError(
            f"{what}: body is not JSON ({reply.content_type}, {len(reply.body)} bytes: {exc})"
        ) from None
    if not isinstance(items, list):
        raise MalformedReplyError(f"{what}: expected a JSON array, got {short_json(items)}")
    return items


def device_list(reply: Reply, what: str, secrets: Iterable[str]) -> list[Device]:
    """The usable devices of a device-list reply, in its order.

    Only a reply that is not a JSON array fails. Each entry that names no device we can ask
    for (not an object; a uuid that is missing, empty or not text; a type other than FMD,
    SPOD and RAMP; a uuid listed before) is skipped with one warning. A real device whose
    uuid is too long to name a folder is kept: discovery reports it as a failed device, since
    its data exists and is not harvested.
    """
    devices: dict[str, Device] = {}
    for item in _json_list(reply, what, secrets):
        found = _device(item)
        if isinstance(found, Device) and found.uuid in devices:
            found = f"duplicate uuid, listed before as {devices[found.uuid].type}"
        if isinstance(found, str):
            uuid = item.get("uuid") if isinstance(item, dict) else None
            shown = uuid[:_EXCERPT_CHARS] if isinstance(uuid, str) else short_json(uuid)
            log.warning("device_skipped", uuid=shown, reason=found)
            continue
        devices[found.uuid] = found
    return list(devices.values())


def _device(item: object) -> Device | str:
    """The device an entry of the device list describes, or why it cannot be harvested."""
    if not isinstance(item, dict):
        return f"entry is not an object: {short_json(item)}"
    uuid, kind, name = item.get("uuid"), item.get("type"), item.get("name")
    if uuid is None:
        return "no uuid"
    # Numbers name a device as plainly as texts do; only booleans and containers do not.
    if isinstance(uuid, bool) or not isinstance(uuid, str | int):
        return f"uuid is a JSON {type(uuid).__name__}, not text"
    if not str(uuid):
        return "empty uuid"
    if kind not in DEVICE_TYPES:
        return f"unknown type {short_json(kind)}, not one of {', '.join(DEVICE_TYPES)}"
    return Device(str(uuid), kind, name if isinstance(name, str) else "")


def available_days(reply: Reply, what: str, secrets: Iterable[str]) -> DeviceDays:
    """The days of an available-dates reply, sorted by day."""
    entries = [_available_day(item, what) for item in json_array(reply, what, secrets)]
    if not entries:
        return DeviceDays.of(())
    days, counts, lasts = zip(*entries, strict=True)
    try:
        last_ms = last_records_ms(lasts)
    except ShapeError as exc:
        raise MalformedReplyError(f"{what}: bad entry: {exc}") from None
    order = np.argsort(np.array(days, np.int32), kind="stable")
    return DeviceDays(
        np.array(days, np.int32)[order], np.array(counts, np.int64)[order], last_ms[order]
    )


def _available_day(item: Mapping[str, Any], what: str) -> tuple[int, int, str]:
    try:
        return day_entry(item)
    except (TypeError, ValueError, OverflowError) as exc:
        raise MalformedReplyError(f"{what}: bad entry {short_json(item)}: {exc}") from None


def sign_in_answer(body: bytes) -> tuple[str, str, str] | None:
    """``(token, user id, role)`` from a sign-in body, or None if it is not the API's answer."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict):
        return None
    token, user = answer.get("accessToken"), answer.get("user")
    if not isinstance(token, str) or not token or not isinstance(user, dict):
        return None
    user_id, role = user.get("id", user.get("_id")), user.get("role")
    if not isinstance(user_id, str | int) or not isinstance(role, str):
        return None
    return token, str(user_id), role


def sign_in_refusal(body: bytes, secrets: Iterable[str]) -> str | None:
    """Why a sign-in answer of the API's own shape (a JSON object with ``message`` or
    ``user``) carries no token; None for any other body, or one with a token. Some services
    answer refused credentials with a 200 and a message: an authentication failure, not a
    wrong URL.
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict) or not ("message" in answer or "user" in answer):
        return None
    if answer.get("accessToken"):
        return None
    message = answer.get("message")
    said = f": {excerpt(message.encode(), secrets)}" if isinstance(message, str) else ""
    return f"the sign-in answer holds no accessToken{said}"
