"""PURE  ``harvester probe``'s findings into one row per assumption: PASS, DIFFERENT (what was
seen, what the harvester does about it, and whether ``run`` is still safe) or UNKNOWN (why it
could not be told).

Any DIFFERENT row makes the probe exit 1, safe or not: the service is not the one the
harvester was built against, and a recording of it is worth sending. ``safe`` says whether a
run would still store every record exactly once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from harvester.api.recording import TOKEN_PLACEHOLDER
from harvester.api.wire import jwt_claims, number
from harvester.plan.planner import estimate_seconds
from harvester.plan.windows import day_overlaps
from harvester.probe.findings import (
    DayEntry,
    Findings,
    Observed,
    Record,
    Window,
    listed_entries,
    read_days,
    read_sign_in,
    usable_device,
)

Outcome = Literal["PASS", "DIFFERENT", "UNKNOWN"]
PASS: Final = "PASS"
DIFFERENT: Final = "DIFFERENT"
UNKNOWN: Final = "UNKNOWN"

#: The documented token life: ``exp - iat`` of the vendor's sample token.
DOCUMENTED_TOKEN_S: Final = 28_800
#: The fields ``sensit-api.md`` lists for the sign-in answer's ``user`` and a device.
USER_FIELDS: Final = ("id", "role", "email", "displayName", "status")
DEVICE_FIELDS: Final = (
    "_id",
    "uuid",
    "key",
    "name",
    "location",
    "picture",
    "status",
    "type",
    "isUTCTimeZone",
    "isFirmwareUpdateRequire",
    "isCharging",
    "lastReceivedRecord",
    "battery",
)
WINDOWS_PER_DAY: Final = 12
_STYLES: Final = (
    ("2024-01-01T00:00:00.000Z", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")),
    ("2024-01-01T00:00:00Z", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")),
    ("2024-01-01 00:00:00", re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")),
)
_DOCUMENTED_STYLE: Final = _STYLES[0][0]
_RATE_HEADER: Final = re.compile(r"^(x-)?rate-?limit|^retry-after$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Row:
    """One assumption's verdict. ``safe``: whether ``run`` still stores every record exactly
    once (None when that could not be told)."""

    assumption: str
    outcome: Outcome
    seen: str
    harvester: str
    safe: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "assumption": self.assumption,
            "outcome": self.outcome,
            "seen": self.seen,
            "harvester": self.harvester,
            "run_safe": self.safe,
        }


@dataclass(frozen=True, slots=True)
class JudgeSettings:
    """The run options the rows speak of."""

    rps: float = 20.0
    concurrency: int = 16
    read_timeout_s: float = 60.0
    max_response_bytes: int = 32 << 20
    #: The UTC span of ``--since``/``--until`` (None: open), for the estimate.
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _pass(name: str, seen: str, harvester: str) -> Row:
    return Row(name, PASS, seen, harvester, True)


def _different(name: str, seen: str, harvester: str, *, safe: bool) -> Row:
    return Row(name, DIFFERENT, seen, harvester, safe)


def _unknown(name: str, why: str, harvester: str) -> Row:
    return Row(name, UNKNOWN, why, harvester, None)


# -- sign-in ----------------------------------------------------------------------------------

SIGN_IN: Final = "sign-in answer"
TOKEN: Final = "token lifetime"


def judge_sign_in(f: Findings) -> Row:
    does = "signs in once, again on a 401 or when the token nears its exp"
    if f.sign_in is None:
        return _unknown(SIGN_IN, "no sign-in was sent", does)
    failure = f.sign_in.failure()
    if failure:
        return _different(SIGN_IN, failure, "cannot sign in: nothing else works", safe=False)
    answer = read_sign_in(f.sign_in)
    if not answer.usable:
        got = ", ".join(answer.fields) or "no JSON object"
        return _different(
            SIGN_IN,
            f"no accessToken, user.id and user.role in the answer ({got})",
            "needs all three to sign in and list devices: a run stops",
            safe=False,
        )
    missing = [f"user.{name}" for name in USER_FIELDS if name not in answer.user_fields]
    missing += [] if "message" in answer.fields else ["message"]
    shown = f"accessToken, user {{{', '.join(answer.user_fields)}}}"
    if missing:
        return _different(
            SIGN_IN,
            f"{shown}; missing {', '.join(missing)}",
            "reads only accessToken, user.id and user.role",
            safe=True,
        )
    return _pass(SIGN_IN, f"{shown} and message, as documented", does)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def judge_token(f: Findings) -> Row:
    on_401 = "signs in again when a call answers 401"
    token = read_sign_in(f.sign_in).token
    if not token:
        return _unknown(TOKEN, "no token was received", on_401)
    if token == TOKEN_PLACEHOLDER:
        return _unknown(
            TOKEN, "the token is a recording's placeholder (a replayed session)", on_401
        )
    claims = jwt_claims(token)
    if claims is None:
        return _different(TOKEN, "an opaque token, not a JWT", on_401, safe=True)
    exp, iat = number(claims.get("exp")), number(claims.get("iat"))
    if exp is None:
        return _different(TOKEN, "a JWT without exp", on_401, safe=True)
    if iat is None:
        return _different(
            TOKEN,
            "a JWT with exp but no iat",
            f"counts the life from the local clock; {on_401}",
            safe=True,
        )
    life = exp - iat
    renews = "signs in again shortly before exp (at most 5 min, a fifth of the life), or on a 401"
    if life == DOCUMENTED_TOKEN_S:
        return _pass(TOKEN, "a JWT, exp - iat = 8 h, as documented", renews)
    if life <= 0:
        return _different(TOKEN, f"a JWT whose exp - iat is {life:g} s", on_401, safe=True)
    return _different(
        TOKEN, f"a JWT, exp - iat = {_duration(life)} (documented: 8 h)", renews, safe=True
    )


# -- devices and dates ------------------------------------------------------------------------

DEVICES: Final = "device list"
DATES: Final = "available dates"
TIMEZONE: Final = "days follow Timezone"


def judge_devices(f: Findings) -> Row:
    entries, problem = listed_entries(f.devices)
    if f.devices is None:
        return _unknown(DEVICES, "not asked: not signed in", "lists the devices first")
    if entries is None:
        return _different(
            DEVICES, problem, "stops: the device list must be a JSON array", safe=False
        )
    if not entries:
        return _unknown(DEVICES, "the account lists no device", "has nothing to harvest")
    usable = [device for device in map(usable_device, entries) if device is not None]
    kinds = Counter(device.type for device in usable)
    shown = f"{len(entries)} devices ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})"
    skipped = len(entries) - len(usable)
    if skipped:
        return _different(
            DEVICES,
            f"{shown}; {skipped} without a uuid or of a type other than FMD, SPOD, RAMP",
            "skips them with a device_skipped warning: their records are not harvested",
            safe=False,
        )
    notes, safe_notes = [], []
    missing = sorted(
        {name for e in entries if isinstance(e, dict) for name in DEVICE_FIELDS if name not in e}
    )
    if missing:
        safe_notes.append(f"missing {', '.join(missing)}")
    typed, typed_problem = listed_entries(f.devices_typed)
    kind = f.device.type if f.device is not None else ""
    if f.devices_typed is None or not kind:
        notes.append("DeviceType filter not asked")
    elif typed is None:
        safe_notes.append(f"DeviceType={kind}: {typed_problem}")
    else:
        wanted = {d.uuid for d in usable if d.type == kind}
        got = {d.uuid for d in map(usable_device, typed) if d is not None}
        others = sum(1 for d in map(usable_device, typed) if d is not None and d.type != kind)
        if got == wanted and not others:
            notes.append(f"DeviceType={kind} lists exactly the {len(wanted)} {kind} devices")
        else:
            safe_notes.append(
                f"DeviceType={kind} lists {len(got)} devices ({others} of other types) where "
                f"ALL lists {len(wanted)} {kind}"
            )
    if safe_notes:
        return _different(
            DEVICES,
            f"{shown}; {'; '.join(safe_notes)}",
            "reads uuid and type only, and asks with --device-type (a filter the server "
            "ignores would harvest every type)",
            safe=True,
        )
    return _pass(
        DEVICES,
        f"{shown}, every documented field; {'; '.join(notes)}",
        "reads uuid and type, asks with DeviceType, Role and UserId",
    )


def judge_dates(f: Findings) -> Row:
    days, problem = read_days(f.dates_utc)
    if f.dates_utc is None:
        return _unknown(DATES, f"not asked: {f.device_reason or 'no device'}", "")
    if days is None:
        return _different(
            DATES,
            problem,
            "lists the device as failed (exit 1) and harvests the others",
            safe=False,
        )
    if not days:
        return _pass(DATES, "an empty array: the device has no data", "plans nothing for it")
    shown = (
        f"{len(days)} days {days[0].day}…{days[-1].day}, "
        "each {_id: {year, month, day}, count, date}"
    )
    if any(a.day >= b.day for a, b in itertools.pairwise(days)):
        return _different(DATES, f"{shown}, not in ascending order", "sorts them by day", safe=True)
    return _pass(DATES, f"{shown}, ascending", "plans each listed UTC day's twelve windows")


def _local_day(entry: DayEntry, zone: ZoneInfo) -> dt.date | None:
    return None if entry.last_at is None else entry.last_at.astimezone(zone).date()


def judge_timezone(f: Findings) -> Row:
    utc_days, utc_problem = read_days(f.dates_utc)
    far_days, far_problem = read_days(f.dates_far)
    asks_utc = "asks in UTC (run, plan); verify and report ask in --timezone"
    if utc_days is None or far_days is None:
        return _unknown(TIMEZONE, f"an answer is missing: {utc_problem or far_problem}", asks_utc)
    if not utc_days or not far_days:
        return _unknown(TIMEZONE, "the device has no days to compare", asks_utc)
    if any(e.last_at is None for e in (*utc_days, *far_days)):
        return _unknown(TIMEZONE, "a day's date is not a timestamp", asks_utc)
    zone = ZoneInfo(f.far_zone)
    utc_off = [e for e in utc_days if _local_day(e, ZoneInfo("UTC")) != e.day]
    far_off = [e for e in far_days if _local_day(e, zone) != e.day]
    if utc_off:
        first = utc_off[0]
        return _different(
            TIMEZONE,
            f"asked in UTC, day {first.day}'s last record is {first.last} (another UTC day)",
            "plans the twelve windows of each listed UTC day: records of days that are not "
            "listed are never asked for (verify reports them)",
            safe=False,
        )
    if far_off:
        first = far_off[0]
        ignored = all(_local_day(e, ZoneInfo("UTC")) == e.day for e in far_days)
        seen = (
            f"Timezone is ignored: asked in {f.far_zone}, the days are UTC days"
            if ignored
            else f"asked in {f.far_zone}, day {first.day}'s last record is {first.last}"
        )
        return _different(
            TIMEZONE,
            seen,
            "run asks in UTC and is unaffected; verify --timezone other than UTC would "
            "compare local days with other days' counts",
            safe=True,
        )
    return _pass(
        TIMEZONE,
        f"asked in UTC and in {f.far_zone}, each day's last record falls on that day in the "
        "zone asked",
        asks_utc,
    )


# -- the day's windows ------------------------------------------------------------------------

COUNT: Final = "day count = records"
ENVELOPE: Final = "records envelope"
ORDER: Final = "record order"
DATE_FORMAT: Final = "date format"


def _failed_window(windows: Sequence[Window]) -> Window | None:
    return next((w for w in windows if w.answer.problem), None)


def _day_records(f: Findings) -> dict[str, Record]:
    """The distinct records of the day's windows that lie inside the day."""
    assert f.day is not None
    start = dt.datetime.combine(f.day.day, dt.time(), dt.UTC)
    end = start + dt.timedelta(days=1)
    return {
        r.id: r
        for w in f.windows
        for r in w.answer.records
        if r.at is not None and start <= r.at < end
    }


def judge_count(f: Findings) -> Row:
    does = "compares each day's records with its count: a day short is fetched again"
    if f.day is None:
        return _unknown(COUNT, f.day_reason or "no day was chosen", does)
    if len(f.windows) < WINDOWS_PER_DAY:
        return _unknown(COUNT, f"only {len(f.windows)} of the day's windows were asked", does)
    failed = _failed_window(f.windows)
    if failed is not None:
        return _unknown(COUNT, f"window {failed.label}: {failed.answer.problem}", does)
    distinct = _day_records(f)
    answered = sum(len(w.answer.records) for w in f.windows)
    count = f.day.count
    shown = (
        f"{f.day.day}: count {count}, its 12 windows {answered} records, {len(distinct)} "
        "distinct inside the day"
    )
    if len(distinct) == count:
        return _pass(COUNT, shown, "proves each day complete against its count")
    if f.day_is_last:
        return _unknown(COUNT, f"{shown}; the day may still be in progress", does)
    if len(distinct) < count:
        return _different(
            COUNT,
            f"{shown}: {count - len(distinct)} missing",
            "ends the run with exit 1 (SHORT) and fetches the day again next time, never "
            "getting them; verify lists the day",
            safe=False,
        )
    return _different(
        COUNT,
        f"{shown}: {len(distinct) - count} more than counted",
        "stores them all, but run (SHORT) and verify report the day on every run",
        safe=False,
    )


def _answered(f: Findings) -> list[Window]:
    return [w for w in f.windows if not w.answer.problem]


_ENVELOPES: Final = {"data": '{"data": [...]}', "bare": "a bare JSON array"}


def judge_envelope(f: Findings) -> Row:
    does = 'reads {"data": [...]} and a bare array alike'
    failed = next((w for w in f.windows if w.answer.problem and w.observed.status == 200), None)
    if failed is not None:
        return _different(
            ENVELOPE,
            f"window {failed.label} answered 200 with {failed.answer.problem}",
            "retries such a window once, then records it as failed",
            safe=False,
        )
    envelopes = Counter(w.answer.envelope for w in _answered(f))
    if not envelopes:
        return _unknown(ENVELOPE, "no window answered", does)
    if set(envelopes) == {"data"}:
        return _pass(ENVELOPE, f'{{"data": [...]}} in {envelopes["data"]} windows', does)
    shown = ", ".join(f"{_ENVELOPES[e]} in {n} windows" for e, n in sorted(envelopes.items()))
    return _different(ENVELOPE, shown, does, safe=True)


def _order(records: Sequence[Record]) -> str | None:
    times = [r.at for r in records if r.at is not None]
    if len(set(times)) < 2:
        return None
    if all(a >= b for a, b in itertools.pairwise(times)):
        return "newest first"
    if all(a <= b for a, b in itertools.pairwise(times)):
        return "oldest first"
    return "in no order"


def judge_order(f: Findings) -> Row:
    does = "sorts each day by date, whatever the order"
    orders = Counter(o for w in _answered(f) if (o := _order(w.answer.records)) is not None)
    if not orders:
        return _unknown(ORDER, "no window returned two records of different times", does)
    shown = ", ".join(f"{o} in {n} windows" for o, n in orders.most_common())
    if set(orders) == {"newest first"}:
        return _pass(ORDER, f"{shown}, as documented", does)
    return _different(ORDER, f"{shown} (documented: newest first)", does, safe=True)


def _style(text: str) -> str:
    for name, pattern in _STYLES:
        if pattern.fullmatch(text):
            return name
    return "other"


def judge_date_format(f: Findings) -> Row:
    does = "reads ISO-8601 with or without milliseconds, Z or an offset; an unzoned time as UTC"
    records = [r for w in _answered(f) for r in w.answer.records]
    days, _ = read_days(f.dates_utc)
    texts = [r.date for r in records] + [d.last for d in days or []]
    if not texts:
        return _unknown(DATE_FORMAT, "no record and no day was answered", does)
    unreadable = next((r for r in records if r.at is None), None)
    if unreadable is not None:
        return _different(
            DATE_FORMAT,
            f'a record\'s date "{unreadable.date}" is not an ISO-8601 time',
            "refuses such a window as a shape error: its records are not stored",
            safe=False,
        )
    styles = Counter(_style(text) for text in texts)
    examples: dict[str, str] = {}
    for text in texts:
        examples.setdefault(_style(text), text)
    fractions = {r.at.microsecond for r in records if r.at is not None}
    precision = (
        "milliseconds vary"
        if fractions - {0}
        else "whole seconds"
        if records
        else "no record to tell the precision"
    )
    shown = ", ".join(
        f'"{examples[s]}"' + ("" if len(styles) == 1 else f" ({n})") for s, n in styles.items()
    )
    if set(styles) == {_DOCUMENTED_STYLE}:
        return _pass(DATE_FORMAT, f"{shown}; {precision}", does)
    outside = [
        r
        for w in _answered(f)
        for r in w.answer.records
        if r.at is not None and not w.start <= r.at <= w.end
    ]
    if any(not text.endswith("Z") and "+" not in text[10:] for text in texts) and outside:
        return _different(
            DATE_FORMAT,
            f"{shown}; {len(outside)} records lie outside the UTC window asked: local times?",
            "reads an unzoned time as UTC and keeps only records inside each window",
            safe=False,
        )
    zoneless = (
        " (no zone, and every record lies inside its UTC window: UTC)"
        if any(not text.endswith("Z") for text in texts)
        else ""
    )
    return _different(
        DATE_FORMAT,
        f"{shown}{zoneless}; {precision} (documented: {_DOCUMENTED_STYLE})",
        does,
        safe=True,
    )


# -- window edges, the cap and the vendor's spellings -----------------------------------------

BOUNDS: Final = "window bounds"
OVER_CAP: Final = "window over 2 h"
VARIANT_ROWS: Final = {
    "24:00:00": ("24:00:00 accepted", "ends a day's last window at the next day's 00:00:00"),
    "unpadded": ("unpadded dates accepted", "sends zero-padded YYYY-MM-DD HH:MM:SS"),
    "DeviceID": ("DeviceID accepted", "sends DeviceId"),
}


def judge_bounds(f: Findings) -> Row:
    does = "keeps [start, end) of each window, once per _id"
    edge = f.edge
    if edge is None:
        return _unknown(BOUNDS, f.edge_reason or "no window was asked", does)
    for window in (edge.ends_on_it, edge.starts_on_it):
        if window.answer.problem:
            return _unknown(BOUNDS, f"window {window.label}: {window.answer.problem}", does)
    at = f"{edge.record.at:%H:%M:%S}" if edge.record.at else edge.record.date
    start = edge.record.id in edge.starts_on_it.answer.ids
    end = edge.record.id in edge.ends_on_it.answer.ids
    returned = {
        (True, True): "by the window ending on it and by the one starting on it",
        (False, True): "by the window starting on it, NOT by the one ending on it",
        (True, False): "by the window ending on it, NOT by the one starting on it",
        (False, False): "by NEITHER the window ending on it NOR the one starting on it",
    }
    shown = f"a record at {at} is returned {returned[end, start]}"
    if start and end:
        return _pass(BOUNDS, f"[start, end]: {shown}, as documented", does)
    if start:
        return _different(BOUNDS, f"[start, end): {shown}", f"{does}: nothing is lost", safe=True)
    lost = (
        "records on a window's start (every even hour, to the second) are dropped as they come "
        "back only in the window they end; run reports those days SHORT and verify lists them"
        if end
        else "records on a window edge (every even hour, to the second) come back in no "
        "window and are lost; run reports those days SHORT and verify lists them"
    )
    kind = "(start, end]" if end else "(start, end)"
    return _different(BOUNDS, f"{kind}: {shown}", lost, safe=False)


def judge_over_cap(f: Findings) -> Row:
    does = "never asks for more than 2 hours"
    over = f.over_cap
    if over is None:
        return _unknown(OVER_CAP, f.over_cap_reason or "not asked", does)
    answer, status = over.window.answer, over.window.observed.status
    if status is None or status >= 500:
        return _unknown(OVER_CAP, f"a 4-hour window: {over.window.observed.failure()}", does)
    if 400 <= status < 500:
        refused = over.window.observed.failure()
        return _pass(OVER_CAP, f"a 4-hour window is refused: {refused}", does)
    if answer.problem:
        return _different(OVER_CAP, f"a 4-hour window answered {answer.problem}", does, safe=True)
    first, second = f.windows[over.first].answer.ids, f.windows[over.first + 1].answer.ids
    got = answer.ids
    whole = len(first | second)
    seen = f"a 4-hour window answered 200 with {len(got)} records (its two 2-hour windows: {whole})"
    if got >= first | second:
        return _different(
            OVER_CAP, f"{seen}: the cap is not enforced", f"{does} all the same", safe=True
        )
    if got >= first:
        return _different(
            OVER_CAP,
            f"{seen}: silently cut to its first 2 hours",
            f"{does}: nothing is cut",
            safe=True,
        )
    if got >= second:
        return _different(
            OVER_CAP,
            f"{seen}: silently cut to its last 2 hours",
            f"{does}: nothing is cut",
            safe=True,
        )
    return _different(
        OVER_CAP,
        f"{seen}: silently cut to less than 2 hours",
        "asks 2-hour windows, which would be cut too (see the day count)",
        safe=False,
    )


def judge_variant(f: Findings, name: str) -> Row:
    title, does = VARIANT_ROWS[name]
    variant = next((v for v in f.variants if v.name == name), None)
    if variant is None:
        return _unknown(title, f.day_reason or "no window to repeat", does)
    canonical = f.windows[variant.window]
    if canonical.answer.problem:
        return _unknown(title, f"window {canonical.label}: {canonical.answer.problem}", does)
    observed, answer = variant.answer.observed, variant.answer.answer
    status = observed.status
    sent = f"{variant.sent} for window {canonical.label}"
    if status is None or status >= 500:
        return _unknown(title, f"{sent}: {observed.failure()}", does)
    if status != 200:
        return _different(title, f"{sent}: refused, {observed.failure()}", does, safe=True)
    if answer.problem:
        return _different(title, f"{sent}: answered {answer.problem}", does, safe=True)
    expected = canonical.answer.ids
    if answer.ids != expected:
        return _different(
            title,
            f"{sent}: {len(answer.ids)} records where the documented spelling gets {len(expected)}",
            does,
            safe=True,
        )
    if not expected:
        return _unknown(title, f"{sent}: accepted, but the window holds no records", does)
    return _pass(title, f"{sent}: the same {len(expected)} records", does)


# -- the service at large ---------------------------------------------------------------------

RATE_LIMIT: Final = "rate limit"
COMPRESSION: Final = "compression"
LATENCY: Final = "latency"
ESTIMATE: Final = "back-fill estimate"


def _answered_calls(f: Findings) -> list[Observed]:
    return [o for o in f.every if o.exchange is not None]


def judge_rate_limit(f: Findings, settings: JudgeSettings) -> Row:
    does = f"paces at --rps {settings.rps:g}, lowers the rate on any 429 and waits Retry-After"
    calls = _answered_calls(f)
    limited = [o for o in calls if o.status == 429]
    headers = sorted(
        {
            f"{name}: {value}"
            for o in calls
            if o.exchange is not None
            for name, value in o.exchange.headers
            if _RATE_HEADER.match(name) and name.lower() != "retry-after"
        }
    )
    pace = f"at {f.paced_rps:g} requests/s" if f.paced_rps else ""
    if limited:
        hinted = sum(1 for o in limited if o.header("Retry-After") is not None)
        return _pass(
            RATE_LIMIT,
            f"{len(limited)} answers 429 in {len(calls)} requests {pace}, {hinted} with Retry-After"
            + (f"; {', '.join(headers[:4])}" if headers else "")
            + ": the account's limit is low, try a low --rps",
            does,
        )
    if headers:
        return _pass(
            RATE_LIMIT, f"no 429 in {len(calls)} requests {pace}; {', '.join(headers[:4])}", does
        )
    return _unknown(
        RATE_LIMIT,
        f"no 429 and no rate-limit header in {len(calls)} requests {pace}: the limit is unknown",
        does,
    )


def judge_compression(f: Findings) -> Row:
    does = "asks for gzip or deflate and reads either, or none"
    answered = [w.observed for w in f.records_calls() if w.observed.status == 200]
    if not answered:
        return _unknown(COMPRESSION, "no records call answered", does)
    encodings = Counter((o.header("Content-Encoding") or "none").lower() for o in answered)
    shown = ", ".join(f"{e} in {n}" for e, n in encodings.most_common())
    note = (
        ": records travel uncompressed (a 2-hour 1 Hz window is ~2.6 MB)"
        if set(encodings) == {"none"}
        else ""
    )
    return _pass(COMPRESSION, f"Content-Encoding {shown} of {len(answered)} answers{note}", does)


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.0f} s"


def judge_latency(f: Findings, settings: JudgeSettings) -> Row:
    does = f"times out a read after --read-timeout-s {settings.read_timeout_s:g}"
    times = [o.elapsed_s for o in _answered_calls(f)]
    if not times:
        return _unknown(LATENCY, "nothing was answered", does)
    shown = (
        f"p50 {_ms(_percentile(times, 0.5))}, p90 {_ms(_percentile(times, 0.9))}, "
        f"max {_ms(max(times))} over {len(times)} requests"
    )
    if max(times) > settings.read_timeout_s / 2:
        return _different(
            LATENCY,
            f"{shown}: within a factor 2 of --read-timeout-s",
            f"{does}: raise it, or windows will time out and be retried",
            safe=True,
        )
    return _pass(LATENCY, shown, does)


def _size(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def _days_in_range(days: Sequence[DayEntry], settings: JudgeSettings) -> list[DayEntry]:
    return [d for d in days if day_overlaps(d.day, settings.since, settings.until)]


def judge_estimate(f: Findings, settings: JudgeSettings) -> Row:
    does = "fetches every day's twelve windows once; a finished archive costs no record request"
    windows = [w for w in _answered(f) if w.answer.records]
    if not windows:
        return _unknown(ESTIMATE, "no window returned records to measure", does)
    body_bytes = sum(len(w.observed.exchange.body) for w in windows if w.observed.exchange)
    per_record = body_bytes / sum(len(w.answer.records) for w in windows)
    sampled: list[list[DayEntry]] = []
    for observed in (f.dates_utc, *(o for _, o in f.sampled)):
        days, _ = read_days(observed)
        if days is not None:
            sampled.append(_days_in_range(days, settings))
    if not sampled:
        return _unknown(ESTIMATE, "no available dates were read", does)
    devices = max(f.selected_devices, len(sampled))
    scale = devices / len(sampled)
    day_total = sum(len(days) for days in sampled) * scale
    record_total = sum(d.count for days in sampled for d in days) * scale
    window_total = round(day_total * WINDOWS_PER_DAY)
    latencies = [w.observed.elapsed_s for w in windows]
    seconds = estimate_seconds(
        window_total, settings.rps, settings.concurrency, _percentile(latencies, 0.5)
    )
    largest_day = max((d.count for days in sampled for d in days), default=0)
    largest_window = largest_day / WINDOWS_PER_DAY * per_record
    basis = (
        "every device's days"
        if len(sampled) >= devices
        else f"days of {len(sampled)} devices, scaled to {devices}"
    )
    shown = (
        f"{devices} devices, ~{day_total:,.0f} days: {window_total:,} windows, "
        f"~{record_total:,.0f} records ({per_record:,.0f} B a record, "
        f"~{_size(record_total * per_record)}); "
        f"about {_duration(seconds)} at --rps {settings.rps:g}, --concurrency "
        f"{settings.concurrency} ({basis})"
    )
    if largest_window > settings.max_response_bytes:
        return _different(
            ESTIMATE,
            f"{shown}; a 2-hour window of the busiest day is ~{_size(largest_window)}",
            "refuses a body over --max-response-mb: raise it above that",
            safe=False,
        )
    return _pass(ESTIMATE, shown, does)


# -- all rows ---------------------------------------------------------------------------------


def judge(f: Findings, settings: JudgeSettings) -> list[Row]:
    """Every row, in the order they are shown."""
    return [
        judge_sign_in(f),
        judge_token(f),
        judge_devices(f),
        judge_dates(f),
        judge_timezone(f),
        judge_count(f),
        judge_envelope(f),
        judge_order(f),
        judge_date_format(f),
        judge_bounds(f),
        judge_over_cap(f),
        *(judge_variant(f, name) for name in VARIANT_ROWS),
        judge_rate_limit(f, settings),
        judge_compression(f),
        judge_latency(f, settings),
        judge_estimate(f, settings),
    ]


def exit_code(rows: Sequence[Row]) -> int:
    """0 when every assumption holds (or could not be told), 1 when one differs."""
    return 1 if any(row.outcome == DIFFERENT for row in rows) else 0


def verdict(rows: Sequence[Row]) -> str:
    """One line: the rows by outcome, and whether ``run`` is safe on this service."""
    counts = Counter(row.outcome for row in rows)
    totals = ", ".join(f"{counts[o]} {o}" for o in (PASS, DIFFERENT, UNKNOWN) if counts[o])
    unsafe = [row.assumption for row in rows if row.safe is False]
    different = [row.assumption for row in rows if row.outcome == DIFFERENT]
    if unsafe:
        return f"{totals}: run is NOT safe on this service ({', '.join(unsafe)})"
    if different:
        return f"{totals}: the service differs ({', '.join(different)}) but run is still safe"
    return f"{totals}: every assumption that could be checked holds"
