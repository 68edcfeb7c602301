"""PURE  What ``harvester probe`` asked and was answered, kept by what each request was for, and
the decoding of answers that its choices and its judge share.

Decoding here is lenient on purpose: where the harvester's own readers refuse a body, the probe
wants to say what the body was instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from harvester.api.recording import Exchange
from harvester.api.wire import day_entry, is_int
from harvester.errors import ShapeError
from harvester.models import DEVICE_TYPES
from harvester.plan.windows import parse_iso_utc

#: Far from UTC and without daylight saving: its days start 14 hours before UTC's.
FAR_ZONE: Final = "Pacific/Kiritimati"
_EXCERPT: Final = 120
_SPACE: Final = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Observed:
    """One request the probe sent (``what``: method and path) and its exchange, or ``error``
    when no answer came."""

    what: str
    exchange: Exchange | None = None
    elapsed_s: float = 0.0
    error: str = ""

    @property
    def status(self) -> int | None:
        return None if self.exchange is None else self.exchange.status

    def header(self, name: str) -> str | None:
        """The first response header of that name (any case), or None."""
        if self.exchange is None:
            return None
        wanted = name.lower()
        return next((v for n, v in self.exchange.headers if n.lower() == wanted), None)

    def decoded(self) -> tuple[bool, Any]:
        """(True, the body's JSON value), or (False, None) for a body that is not JSON."""
        if self.exchange is None:
            return False, None
        try:
            return True, orjson.loads(self.exchange.body)
        except orjson.JSONDecodeError:
            return False, None

    def failure(self) -> str:
        """Why this is not a 200 answer ("" when it is): the error, or the status and an
        excerpt of the body."""
        if self.exchange is None:
            return f"no answer: {self.error}"
        if self.exchange.status == 200:
            return ""
        return f"HTTP {self.exchange.status}: {excerpt(self.exchange.body)}"


def excerpt(body: bytes) -> str:
    """A short one-line view of a body: the ``message`` of a JSON error, else its text."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        text = value["message"]
    else:
        text = body[: _EXCERPT * 4].decode("utf-8", errors="replace")
    text = _SPACE.sub(" ", text).strip() or "(empty body)"
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def parse_time(text: object) -> dt.datetime | None:
    """An API timestamp as aware UTC (unzoned read as UTC), or None."""
    if not isinstance(text, str):
        return None
    try:
        return parse_iso_utc(text)
    except ShapeError:
        return None


# -- sign-in ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignIn:
    """What a sign-in answer gave: the token, the user's id and role (empty when missing),
    the ``user`` object's fields and the answer's top-level fields."""

    token: str = ""
    user_id: str = ""
    role: str = ""
    email: str = ""
    user_fields: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        """Whether the client can sign in with such an answer."""
        return bool(self.token and self.user_id and self.role)


def read_sign_in(observed: Observed | None) -> SignIn:
    if observed is None or observed.status != 200:
        return SignIn()
    ok, answer = observed.decoded()
    if not ok or not isinstance(answer, dict):
        return SignIn()
    token, user = answer.get("accessToken"), answer.get("user")
    user = user if isinstance(user, dict) else {}
    user_id, role, email = user.get("id", user.get("_id")), user.get("role"), user.get("email")
    return SignIn(
        token=token if isinstance(token, str) else "",
        user_id=str(user_id) if isinstance(user_id, str | int) else "",
        role=role if isinstance(role, str) else "",
        email=email if isinstance(email, str) else "",
        user_fields=tuple(user),
        fields=tuple(answer),
    )


# -- devices ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListedDevice:
    """A device-list entry the harvester can ask about, with the time of its last record."""

    uuid: str
    type: str
    last_record: dt.datetime | None = None


def listed_entries(observed: Observed | None) -> tuple[list[Any] | None, str]:
    """The device list's entries, or None and why it is not a JSON array."""
    if observed is None:
        return None, "not asked"
    failure = observed.failure()
    if failure:
        return None, failure
    ok, value = observed.decoded()
    if not ok:
        return None, f"not JSON: {excerpt(observed.exchange.body if observed.exchange else b'')}"
    if not isinstance(value, list):
        return None, f"a JSON {type(value).__name__}, not an array"
    return value, ""


def usable_device(entry: object) -> ListedDevice | None:
    """The device an entry names, or None when the harvester would skip it."""
    if not isinstance(entry, dict):
        return None
    uuid, kind = entry.get("uuid"), entry.get("type")
    if isinstance(uuid, bool) or not isinstance(uuid, str | int) or not str(uuid):
        return None
    if kind not in DEVICE_TYPES:
        return None
    last = entry.get("lastReceivedRecord")
    when = parse_time(last.get("date")) if isinstance(last, dict) else None
    return ListedDevice(str(uuid), kind, when)


def listed_devices(observed: Observed | None) -> list[ListedDevice]:
    entries, _ = listed_entries(observed)
    found = (usable_device(entry) for entry in entries or [])
    return [device for device in found if device is not None]


# -- available dates --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayEntry:
    """One entry of an available-dates answer."""

    day: dt.date
    count: int
    last: str
    last_at: dt.datetime | None


def read_days(observed: Observed | None) -> tuple[list[DayEntry] | None, str]:
    """The entries of an available-dates answer in its order, or None and what is wrong."""
    if observed is None:
        return None, "not asked"
    failure = observed.failure()
    if failure:
        return None, failure
    ok, value = observed.decoded()
    if not ok:
        return None, "the body is not JSON"
    if not isinstance(value, list):
        return None, f"a JSON {type(value).__name__}, not an array"
    entries = []
    for item in value:
        if not isinstance(item, dict):
            return None, f"an entry that is not an object: {_short(item)}"
        try:
            ordinal, count, last = day_entry(item)
        except (TypeError, ValueError, OverflowError) as exc:
            return None, f"entry {_short(item)}: {exc}"
        entries.append(DayEntry(dt.date.fromordinal(ordinal), count, last, parse_time(last)))
    return entries, ""


def _short(value: object) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """A record as the probe looks at it: its id, its ``date`` as written and as a time."""

    id: str
    date: str
    at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RecordsAnswer:
    """A records call's answer: ``envelope`` is ``data`` (``{"data": [...]}``), ``bare`` (a
    JSON array) or ``""`` when the answer holds no records, and ``problem`` then says why."""

    envelope: str = ""
    records: tuple[Record, ...] = ()
    problem: str = ""

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(record.id for record in self.records)


def read_records(observed: Observed) -> RecordsAnswer:
    failure = observed.failure()
    if failure:
        return RecordsAnswer(problem=failure)
    ok, value = observed.decoded()
    if not ok:
        body = observed.exchange.body if observed.exchange else b""
        return RecordsAnswer(problem=f"not JSON ({len(body)} bytes): {excerpt(body)}")
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        envelope, items = "data", value["data"]
    elif isinstance(value, list):
        envelope, items = "bare", value
    elif isinstance(value, dict):
        keys = ", ".join(list(value)[:6])
        return RecordsAnswer(problem=f"a JSON object without a data array (keys: {keys})")
    else:
        return RecordsAnswer(problem=f"a JSON {type(value).__name__}, not records")
    records = []
    for item in items:
        record_id = item.get("_id") if isinstance(item, dict) else None
        date = item.get("date") if isinstance(item, dict) else None
        if not (isinstance(record_id, str) or is_int(record_id)) or not isinstance(date, str):
            return RecordsAnswer(envelope, problem=f"a record without _id or date: {_short(item)}")
        records.append(Record(str(record_id), date, parse_time(date)))
    return RecordsAnswer(envelope, tuple(records))


@dataclass(frozen=True, slots=True)
class Window:
    """A records call for ``[start, end]`` (UTC) and its decoded answer."""

    start: dt.datetime
    end: dt.datetime
    observed: Observed
    answer: RecordsAnswer

    @classmethod
    def of(cls, start: dt.datetime, end: dt.datetime, observed: Observed) -> Window:
        return cls(start, end, observed, read_records(observed))

    @property
    def label(self) -> str:
        """``HH:MM-HH:MM``, a window ending at the next midnight shown as ending at 24:00."""
        end = "24:00" if self.end.time() == dt.time() else f"{self.end:%H:%M}"
        return f"{self.start:%H:%M}-{end}"


# -- what was asked, by purpose ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EdgeProbe:
    """Two windows meeting at ``record``'s time T, a whole second seen strictly inside a
    window of the day: ``[T - 1 h, T]`` (``ends_on_it``) and ``[T, T + 1 h]``."""

    record: Record
    ends_on_it: Window
    starts_on_it: Window


@dataclass(frozen=True, slots=True)
class OverCap:
    """A 4-hour window spanning the day's windows ``first`` and ``first + 1``."""

    first: int
    window: Window


@dataclass(frozen=True, slots=True)
class Variant:
    """The day's window ``window`` asked again with one thing spelt otherwise (``sent``)."""

    name: str
    window: int
    sent: str
    answer: Window


@dataclass
class Findings:
    """Everything the probe asked, by purpose (``None`` or empty: not asked, and the matching
    ``*_reason`` may say why), and every request in the order sent (``every``)."""

    sign_in: Observed | None = None
    devices: Observed | None = None
    devices_typed: Observed | None = None
    selected_devices: int = 0
    device: ListedDevice | None = None
    device_reason: str = ""
    dates_utc: Observed | None = None
    far_zone: str = FAR_ZONE
    dates_far: Observed | None = None
    day: DayEntry | None = None
    day_is_last: bool = False
    day_reason: str = ""
    windows: tuple[Window, ...] = ()
    edge: EdgeProbe | None = None
    edge_reason: str = ""
    over_cap: OverCap | None = None
    over_cap_reason: str = ""
    variants: tuple[Variant, ...] = ()
    sampled: tuple[tuple[ListedDevice, Observed], ...] = ()
    every: tuple[Observed, ...] = ()
    stopped: str = ""
    paced_rps: float = 0.0
    budget: int = 0

    def records_calls(self) -> Iterable[Window]:
        """Every records call made, the day's windows first."""
        yield from self.windows
        if self.edge is not None:
            yield from (self.edge.ends_on_it, self.edge.starts_on_it)
        if self.over_cap is not None:
            yield self.over_cap.window
        yield from (variant.answer for variant in self.variants)
