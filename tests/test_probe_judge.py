"""``harvester probe``'s judge and choices on crafted exchanges: no server, no event loop.

A small model of the service (``Service``) answers the probe's requests in memory, with one
knob per assumption; each test flips one and reads the row it must change.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from harvester.api.recording import TOKEN_PLACEHOLDER, Exchange
from harvester.errors import ConfigError
from harvester.plan.windows import grid_slots
from harvester.probe import choices
from harvester.probe.findings import (
    DayEntry,
    EdgeProbe,
    Findings,
    ListedDevice,
    Observed,
    OverCap,
    Variant,
    Window,
    read_days,
)
from harvester.probe.judge import (
    BOUNDS,
    COMPRESSION,
    COUNT,
    DATE_FORMAT,
    DATES,
    DEVICE_FIELDS,
    DEVICES,
    DIFFERENT,
    ENVELOPE,
    ESTIMATE,
    LATENCY,
    ORDER,
    OVER_CAP,
    PASS,
    RATE_LIMIT,
    SIGN_IN,
    TIMEZONE,
    TOKEN,
    UNKNOWN,
    JudgeSettings,
    Row,
    exit_code,
    judge,
    verdict,
)

UTC = dt.UTC
DAY = dt.date(2024, 1, 2)
MIDNIGHT = dt.datetime(2024, 1, 2, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)
STYLES = {
    "iso-ms": "%Y-%m-%dT%H:%M:%S.000Z",
    "iso-s": "%Y-%m-%dT%H:%M:%SZ",
    "space": "%Y-%m-%d %H:%M:%S",
}


def observed(
    body: object,
    status: int = 200,
    headers: Sequence[tuple[str, str]] = (("Content-Type", "application/json"),),
    elapsed_s: float = 0.01,
) -> Observed:
    """An answered request; ``body`` is JSON-encoded unless it is bytes."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    exchange = Exchange("POST", "/x", (), b"", status, tuple(headers), raw)
    return Observed("POST /x", exchange, elapsed_s)


def jwt(life_s: int, iat: int = 1_700_000_000) -> str:
    """An HS256-shaped token whose payload holds ``iat`` and ``exp = iat + life_s``."""

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part({'iat': iat, 'exp': iat + life_s})}.c2ln"


@dataclass
class Service:
    """The service as the vendor documents it; each field flips one assumption."""

    bounds: str = "inclusive"  # or half-open, exclusive, end-only
    order: str = "newest"  # or oldest, shuffled
    envelope: str = "data"  # or bare
    style: str = "iso-ms"
    over_cap: str = "reject"  # or truncate, whole, last, short
    minutes: int = 30  # between records
    local_offset_h: int = 0  # dates written in a local time, not UTC

    def times(self) -> list[dt.datetime]:
        """Every record time from the day before to the day after (all on whole minutes)."""
        first = MIDNIGHT - dt.timedelta(days=1)
        step = dt.timedelta(minutes=self.minutes)
        return [first + i * step for i in range(int(3 * 24 * 60 / self.minutes) + 1)]

    def record(self, at: dt.datetime) -> dict[str, Any]:
        shown = at + self.local_offset_h * HOUR
        return {
            "_id": f"r{int(at.timestamp())}",
            "id": "1001",
            "date": shown.strftime(STYLES[self.style]),
            "temp": 1.25,
        }

    def records(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        low = self.bounds in ("inclusive", "half-open")
        high = self.bounds in ("inclusive", "end-only")
        chosen = [
            t
            for t in self.times()
            if (start <= t if low else start < t) and (t <= end if high else t < end)
        ]
        if self.order == "newest":
            chosen.reverse()
        elif self.order == "shuffled":
            chosen = chosen[1::2] + chosen[::2]
        return [self.record(t) for t in chosen]

    def answer(self, start: dt.datetime, end: dt.datetime) -> Observed:
        records = self.records(start, end)
        return observed(records if self.envelope == "bare" else {"data": records})

    def window(self, start: dt.datetime, end: dt.datetime) -> Window:
        return Window.of(start, end, self.answer(start, end))

    def over(self, start: dt.datetime, end: dt.datetime) -> Window:
        cut = {
            "truncate": (start, start + 2 * HOUR),
            "whole": (start, end),
            "last": (end - 2 * HOUR, end),
            "short": (start, start + HOUR),
        }
        if self.over_cap == "reject":
            return Window.of(start, end, observed({"message": "at most 2 h"}, 400))
        return Window.of(start, end, self.answer(*cut[self.over_cap]))

    def days(self, zone_offset_h: int = 0) -> list[dict[str, Any]]:
        """Available dates: the middle day's local days in a zone ``zone_offset_h`` east."""
        entries = []
        for day in (DAY - dt.timedelta(days=1), DAY):
            local = dt.datetime.combine(day, dt.time(), UTC) - zone_offset_h * HOUR
            inside = [t for t in self.times() if local <= t < local + 24 * HOUR]
            entries.append(
                {
                    "_id": {"year": day.year, "month": day.month, "day": day.day},
                    "count": len(inside),
                    "date": max(inside).strftime(STYLES[self.style]),
                }
            )
        return entries


DEVICE = ListedDevice("1001", "FMD", MIDNIGHT)


def device_entry(uuid: str = "1001", kind: str = "FMD") -> dict[str, Any]:
    entry: dict[str, Any] = dict.fromkeys(DEVICE_FIELDS, "")
    return {**entry, "uuid": uuid, "type": kind, "lastReceivedRecord": {"date": "2024-01-03"}}


def findings(service: Service | None = None, **changes: Any) -> Findings:
    """What the probe would gather from ``service``; ``changes`` replace fields."""
    s = service or Service()
    windows = tuple(s.window(start, end) for start, end in grid_slots(DAY))
    record, edge_reason = choices.choose_edge_record(windows)
    edge = None
    if record is not None and record.at is not None:
        (before, at), (_, after) = choices.edge_windows(record.at)
        edge = EdgeProbe(record, s.window(before, at), s.window(at, after))
    variants = tuple(
        Variant(name, index, sent, s.window(windows[index].start, windows[index].end))
        for name, index, sent, _ in choices.variant_requests(DEVICE, windows)
    )
    sign_in = observed(
        {
            "accessToken": jwt(28_800),
            "user": {
                "id": "65a1b2c3d4e5f60718293a4b",
                "role": "SystemAdministrator",
                "email": "a@b.c",
                "displayName": "A",
                "status": "Active",
            },
            "message": "Logged in successfully",
        }
    )
    devices = observed([device_entry("1001"), device_entry("1002", "SPOD")])
    found = Findings(
        sign_in=sign_in,
        devices=devices,
        devices_typed=observed([device_entry("1001")]),
        selected_devices=2,
        device=DEVICE,
        device_reason="--device",
        dates_utc=observed(s.days()),
        dates_far=observed(s.days(zone_offset_h=14)),
        far_zone="Pacific/Kiritimati",
        windows=windows,
        edge=edge,
        edge_reason=edge_reason,
        over_cap=OverCap(0, s.over(windows[0].start, windows[1].end)),
        variants=variants,
        sampled=((ListedDevice("1002", "SPOD"), observed(s.days())),),
        paced_rps=2.0,
        budget=40,
    )
    days, _ = read_days(found.dates_utc)
    assert days is not None
    found.day = next(entry for entry in days if entry.day == DAY)
    found.every = (sign_in, devices, *(w.observed for w in found.records_calls()))
    for name, value in changes.items():
        setattr(found, name, value)
    return found


def row(f: Findings, name: str, settings: JudgeSettings | None = None) -> Row:
    return next(r for r in judge(f, settings or JudgeSettings()) if r.assumption == name)


def test_the_documented_service_passes_every_row_but_the_rate_limit_it_cannot_see() -> None:
    """Against the service as documented every row passes, except the rate limit, which is
    UNKNOWN with its reason (no 429 and no header); the exit code is 0."""
    rows = judge(findings(), JudgeSettings())
    assert len(rows) == 18
    assert {r.assumption: r.outcome for r in rows if r.outcome != PASS} == {RATE_LIMIT: UNKNOWN}
    assert all(r.seen for r in rows)
    assert exit_code(rows) == 0
    assert "every assumption that could be checked holds" in verdict(rows)


# -- sign-in and token ------------------------------------------------------------------------


def _sign_in(answer: object, status: int = 200) -> Findings:
    return findings(sign_in=observed(answer, status))


def test_a_sign_in_answer_without_documented_user_fields_differs_but_is_safe() -> None:
    """Missing displayName and message: DIFFERENT, run safe (it reads token, id and role)."""
    f = _sign_in({"accessToken": "t", "user": {"id": 1, "role": "r", "email": "e", "status": "s"}})
    r = row(f, SIGN_IN)
    assert (r.outcome, r.safe) == (DIFFERENT, True)
    assert "user.displayName" in r.seen
    assert "message" in r.seen


@pytest.mark.parametrize(
    ("answer", "status", "seen"),
    [
        ({"token": "t", "user": {"id": "1", "role": "r"}}, 200, "no accessToken"),
        ({"message": "down"}, 503, "HTTP 503: down"),
    ],
)
def test_a_sign_in_the_client_cannot_use_is_not_safe(
    answer: object, status: int, seen: str
) -> None:
    """No usable token, or an error status: DIFFERENT and run is not safe."""
    r = row(_sign_in(answer, status), SIGN_IN)
    assert (r.outcome, r.safe) == (DIFFERENT, False)
    assert seen in r.seen


@pytest.mark.parametrize(
    ("token", "outcome", "seen"),
    [
        (jwt(3600), DIFFERENT, "exp - iat = 1 h 00 min"),
        ("opaque-token", DIFFERENT, "opaque token"),
        (TOKEN_PLACEHOLDER, UNKNOWN, "placeholder"),
    ],
)
def test_the_token_lifetime_row(token: str, outcome: str, seen: str) -> None:
    """A JWT of another life or an opaque token differs (safe: 401s renew it); a recording's
    placeholder tells nothing."""
    user = {"id": "1", "role": "r", "email": "e", "displayName": "d", "status": "s"}
    r = row(_sign_in({"accessToken": token, "user": user, "message": "ok"}), TOKEN)
    assert r.outcome == outcome
    assert seen in r.seen
    assert r.safe is (None if outcome == UNKNOWN else True)


# -- devices, dates, time zones ---------------------------------------------------------------


def test_device_list_rows() -> None:
    """Missing documented fields or a DeviceType filter the server ignores differ safely; an
    entry of an unknown type (skipped by run) or a list that is not an array is not safe; an
    empty list is UNKNOWN."""
    bare = [{"uuid": "1001", "type": "FMD"}]
    assert row(findings(devices=observed(bare)), DEVICES).safe is True
    ignored = findings(devices_typed=observed([device_entry("1001"), device_entry("1002", "SPOD")]))
    r = row(ignored, DEVICES)
    assert (r.outcome, r.safe) == (DIFFERENT, True)
    assert "1 of other types" in r.seen
    odd = findings(devices=observed([device_entry("1001"), device_entry("9", "XYZ")]))
    assert (row(odd, DEVICES).outcome, row(odd, DEVICES).safe) == (DIFFERENT, False)
    assert row(findings(devices=observed({"data": []})), DEVICES).safe is False
    assert row(findings(devices=observed([])), DEVICES).outcome == UNKNOWN


def test_available_dates_rows() -> None:
    """Descending days differ safely (the harvester sorts); a body that is not an array of
    day entries is not safe (the device fails)."""
    days = Service().days()
    r = row(findings(dates_utc=observed(days[::-1])), DATES)
    assert (r.outcome, r.safe) == (DIFFERENT, True)
    bad = row(findings(dates_utc=observed([{"_id": {"year": 2024}, "count": 1}])), DATES)
    assert (bad.outcome, bad.safe) == (DIFFERENT, False)


def test_days_that_ignore_the_timezone_differ_but_run_asks_in_utc() -> None:
    """The far zone answered with UTC days: Timezone is ignored, run (which asks in UTC) is
    safe; UTC days that are not UTC days are not safe; a missing answer is UNKNOWN."""
    utc_days = observed(Service().days())
    r = row(findings(dates_far=utc_days), TIMEZONE)
    assert (r.outcome, r.safe) == (DIFFERENT, True)
    assert "Timezone is ignored" in r.seen
    shifted = row(findings(dates_utc=observed(Service().days(zone_offset_h=-6))), TIMEZONE)
    assert (shifted.outcome, shifted.safe) == (DIFFERENT, False)
    assert row(findings(dates_far=observed({"message": "x"}, 500)), TIMEZONE).outcome == UNKNOWN


# -- a day's windows --------------------------------------------------------------------------


def test_exclusive_bounds_lose_the_records_on_window_edges() -> None:
    """Under (start, end) the day's windows miss the records on even hours: the count row and
    the bounds row differ, run is not safe, and the exit code is 1."""
    f = findings(Service(bounds="exclusive"))
    count, bounds = row(f, COUNT), row(f, BOUNDS)
    assert (count.outcome, count.safe) == (DIFFERENT, False)
    assert "12 missing" in count.seen  # the day's twelve even hours, midnight included
    assert (bounds.outcome, bounds.safe) == (DIFFERENT, False)
    assert bounds.seen.startswith("(start, end)")
    rows = judge(f, JudgeSettings())
    assert exit_code(rows) == 1
    assert "run is NOT safe" in verdict(rows)


@pytest.mark.parametrize(
    ("bounds", "outcome", "safe", "kind"),
    [
        ("inclusive", PASS, True, "[start, end]"),
        ("half-open", DIFFERENT, True, "[start, end)"),
        ("end-only", DIFFERENT, False, "(start, end]"),
    ],
)
def test_the_bounds_row_names_each_end(bounds: str, outcome: str, safe: bool, kind: str) -> None:
    """Only a window's start matters to the harvester, which keeps [start, end) of each."""
    r = row(findings(Service(bounds=bounds)), BOUNDS)
    assert (r.outcome, r.safe) == (outcome, safe)
    assert r.seen.startswith(kind)


def test_bounds_cannot_be_told_without_a_record_on_a_whole_second() -> None:
    """No edge probe: UNKNOWN with the reason the choice gave."""
    r = row(findings(edge=None, edge_reason="no record lies on a whole second"), BOUNDS)
    assert (r.outcome, r.seen) == (UNKNOWN, "no record lies on a whole second")


def test_the_count_row_when_windows_fail_or_the_day_is_in_progress() -> None:
    """A failed window makes the count UNKNOWN; so does a mismatch on the day in progress;
    more records than counted is a difference."""
    f = findings()
    broken = (*f.windows[:3], Window.of(f.windows[3].start, f.windows[3].end, observed({}, 500)))
    assert row(findings(windows=(*broken, *f.windows[4:])), COUNT).outcome == UNKNOWN
    assert f.day is not None
    short = dataclasses.replace(f.day, count=f.day.count + 5)
    assert row(findings(day=short, day_is_last=True), COUNT).outcome == UNKNOWN
    many = row(findings(day=dataclasses.replace(f.day, count=3)), COUNT)
    assert many.outcome == DIFFERENT
    assert "more than counted" in many.seen


def test_envelope_rows() -> None:
    """A bare array differs safely; a 200 without records is not safe."""
    r = row(findings(Service(envelope="bare")), ENVELOPE)
    assert (r.outcome, r.safe, r.seen) == (DIFFERENT, True, "a bare JSON array in 12 windows")
    f = findings()
    odd = Window.of(f.windows[0].start, f.windows[0].end, observed({"message": "ok"}))
    r = row(findings(windows=(odd, *f.windows[1:])), ENVELOPE)
    assert (r.outcome, r.safe) == (DIFFERENT, False)
    assert "without a data array" in r.seen


@pytest.mark.parametrize(("order", "seen"), [("oldest", "oldest first"), ("shuffled", "no order")])
def test_an_order_other_than_newest_first_differs_safely(order: str, seen: str) -> None:
    """The harvester sorts each day: any order is safe, but not the documented one."""
    r = row(findings(Service(order=order)), ORDER)
    assert (r.outcome, r.safe) == (DIFFERENT, True)
    assert seen in r.seen


def test_order_is_unknown_without_two_records_in_a_window() -> None:
    """Windows of one record each cannot show an order."""
    r = row(findings(Service(minutes=180)), ORDER)
    assert r.outcome == UNKNOWN


@pytest.mark.parametrize(
    ("style", "example"),
    [("iso-s", '"2024-01-02T02:00:00Z"'), ("space", '"2024-01-02 02:00:00" (no zone')],
)
def test_other_date_styles_differ_safely(style: str, example: str) -> None:
    """Without milliseconds, or unzoned UTC times: read alike, so safe; the row shows one."""
    r = row(findings(Service(style=style)), DATE_FORMAT)
    assert (r.outcome, r.safe) == (DIFFERENT, True)
    assert example in r.seen


def test_unzoned_local_times_are_not_safe() -> None:
    """Unzoned dates that fall outside the UTC window asked are local times: not safe."""
    r = row(findings(Service(style="space", local_offset_h=-6)), DATE_FORMAT)
    assert (r.outcome, r.safe) == (DIFFERENT, False)
    assert "local times" in r.seen


def test_the_documented_date_format_passes_with_its_precision() -> None:
    """Milliseconds always .000: the row says whole seconds."""
    assert row(findings(), DATE_FORMAT).seen.endswith("; whole seconds")


# -- over the cap and the vendor's spellings --------------------------------------------------


@pytest.mark.parametrize(
    ("over_cap", "outcome", "safe", "seen"),
    [
        ("reject", PASS, True, "refused: HTTP 400: at most 2 h"),
        ("truncate", DIFFERENT, True, "cut to its first 2 hours"),
        ("last", DIFFERENT, True, "cut to its last 2 hours"),
        ("whole", DIFFERENT, True, "the cap is not enforced"),
        ("short", DIFFERENT, False, "less than 2 hours"),
    ],
)
def test_the_over_cap_row(over_cap: str, outcome: str, safe: bool, seen: str) -> None:
    """A 4-hour window compared with its two 2-hour halves."""
    r = row(findings(Service(over_cap=over_cap)), OVER_CAP)
    assert (r.outcome, r.safe) == (outcome, safe)
    assert seen in r.seen


def _variant(f: Findings, name: str, answer: Observed) -> Findings:
    variants = tuple(
        dataclasses.replace(v, answer=Window.of(v.answer.start, v.answer.end, answer))
        if v.name == name
        else v
        for v in f.variants
    )
    return findings(variants=variants)


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("24:00:00", "24:00:00 accepted"),
        ("unpadded", "unpadded dates accepted"),
        ("DeviceID", "DeviceID accepted"),
    ],
)
def test_the_vendors_spellings(name: str, title: str) -> None:
    """Each spelling passes when it gets the same records, differs safely when refused or
    answered otherwise (the harvester never sends it)."""
    f = findings()
    assert row(f, title).outcome == PASS
    refused = row(_variant(f, name, observed({"message": "bad date"}, 400)), title)
    assert (refused.outcome, refused.safe) == (DIFFERENT, True)
    assert "refused, HTTP 400: bad date" in refused.seen
    empty = row(_variant(f, name, observed({"data": []})), title)
    assert (empty.outcome, empty.safe) == (DIFFERENT, True)


def test_the_variants_are_spelt_as_the_vendors_examples() -> None:
    """24:00:00 ends the last window; unpadded strips every leading zero; DeviceID renames."""
    windows = findings().windows
    sent = {name: body for name, _, _, body in choices.variant_requests(DEVICE, windows)}
    assert sent["24:00:00"]["EndDate"] == "2024-01-02 24:00:00"
    assert (sent["unpadded"]["StartDate"], sent["unpadded"]["EndDate"]) == (
        "2024-1-2 0:00:00",
        "2024-1-2 2:00:00",
    )
    assert "DeviceID" in sent["DeviceID"]
    assert "DeviceId" not in sent["DeviceID"]


# -- the service at large ---------------------------------------------------------------------


def test_rate_limit_rows() -> None:
    """A 429 (with or without Retry-After) or rate-limit headers pass and are shown."""
    f = findings()
    limited = observed({"message": "slow"}, 429, (("Retry-After", "2"),))
    r = row(findings(every=(*f.every, limited)), RATE_LIMIT)
    assert r.outcome == PASS
    assert "1 answers 429" in r.seen
    assert "1 with Retry-After" in r.seen
    headed = observed({}, 200, (("X-RateLimit-Limit", "100"),))
    r = row(findings(every=(*f.every, headed)), RATE_LIMIT)
    assert r.outcome == PASS
    assert "X-RateLimit-Limit: 100" in r.seen


def test_compression_latency_and_estimate_rows() -> None:
    """Compression is shown; a latency near the read timeout differs safely; the estimate
    scales the sampled devices' days to the selection and fails a window over the cap."""
    f = findings()
    first = f.windows[0]
    assert first.observed.exchange is not None
    gzipped = dataclasses.replace(first.observed.exchange, headers=(("Content-Encoding", "gzip"),))
    answer = Window.of(first.start, first.end, Observed("POST /x", gzipped))
    r = row(findings(windows=(answer, *f.windows[1:])), COMPRESSION)
    assert r.outcome == PASS
    assert "gzip in 1" in r.seen
    slow = row(f, LATENCY, JudgeSettings(read_timeout_s=0.01))
    assert (slow.outcome, slow.safe) == (DIFFERENT, True)
    r = row(findings(selected_devices=20), ESTIMATE)
    assert r.outcome == PASS
    assert "20 devices, ~40 days: 480 windows" in r.seen
    assert "scaled to 20" in r.seen
    capped = row(f, ESTIMATE, JudgeSettings(max_response_bytes=100))
    assert (capped.outcome, capped.safe) == (DIFFERENT, False)


def test_nothing_asked_makes_every_row_unknown_or_different_without_crashing() -> None:
    """A sign-in that failed (HTTP 404): that row is DIFFERENT and not safe, every other row
    UNKNOWN or derived from nothing, and the exit code is 1."""
    f = Findings(sign_in=observed(b"<html>not found</html>", 404), device_reason="not signed in")
    f.every = (f.sign_in,) if f.sign_in else ()
    rows = judge(f, JudgeSettings())
    assert rows[0].outcome == DIFFERENT
    assert rows[0].safe is False
    assert {r.outcome for r in rows[1:]} <= {UNKNOWN, PASS}
    assert exit_code(rows) == 1


# -- choices ----------------------------------------------------------------------------------


def test_the_default_device_is_the_one_with_the_newest_data() -> None:
    """Newest lastReceivedRecord wins (first of equals); --device picks, or is refused."""
    old = ListedDevice("1", "FMD", MIDNIGHT)
    new = ListedDevice("2", "SPOD", MIDNIGHT + HOUR)
    assert choices.choose_device([old, new], None)[0] == new
    assert choices.choose_device([old, new], "1") == (old, "--device")
    with pytest.raises(ConfigError, match="--device 9"):
        choices.choose_device([old, new], "9")
    assert choices.choose_device([], None)[0] is None


def test_the_day_chosen_is_small_finished_and_has_records_in_its_last_window() -> None:
    """Among finished days the smallest with a record after 22:00; the last day only when
    alone."""

    def entry(day: int, count: int, hour: int) -> DayEntry:
        at = dt.datetime(2024, 1, day, hour, tzinfo=UTC)
        return DayEntry(at.date(), count, at.isoformat(), at)

    days = [entry(1, 10, 12), entry(2, 50, 23), entry(3, 40, 23), entry(4, 5, 14)]
    chosen, last, why = choices.choose_day(days)
    assert chosen == days[2]
    assert not last
    assert "last window" in why
    alone, last, why = choices.choose_day([days[3]])
    assert alone == days[3]
    assert last
    assert "in progress" in why


def test_sampled_devices_take_each_type_in_turn() -> None:
    """The estimate reads other devices' days, every type weighing in."""
    fleet = [ListedDevice(str(n), kind) for n, kind in enumerate(["FMD", "FMD", "SPOD", "RAMP"])]
    picked = choices.sample_devices(fleet, fleet[0], 2)
    assert [d.type for d in picked] == ["FMD", "SPOD"]
