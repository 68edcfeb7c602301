"""A look-alike server answering ONE call with a hostile reply (issue 11's table).

Each case replaces one answer of the simulator (``tests/support/hostile.py``): the records of
one window of device 1002 (2024-01-01 10:00..12:00 UTC), the available dates of device 1002,
one device-list entry, or the sign-in, and leaves every other call healthy. The harvester runs
once against it and must not crash, hang or print a traceback, must write nothing outside
``--out`` (the test's whole temporary folder is compared before and after), must store every
other device exactly (against the plain sequential client), must keep the partition layout,
and must exit with the documented code (0 done · 1 some windows/devices failed · 3 auth).
Then a second run against the healthy server completes exactly: exit 0, all records once.

Expectations that are a judgement are said in the case's description. Bodies that could crash
the process (deep nesting, huge bodies) run the harvester as a subprocess: a crash is then a
failed test, not a dead pytest. In-process runs get a back-off of 10 ms (no option sets the
back-off): a retried deterministic error costs no wall time, and how often a call was retried
is asserted from the server's side instead.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harvester.fetch.backoff import RetryPolicy
from harvester.simulator.options import SimulatorOptions
from tests.support.hostile import (
    Archive,
    Fleet,
    HostileServer,
    Reply,
    Rule,
    collect_fleet,
    harvest_subprocess,
    instant,
    json_reply,
    read_archive,
    snapshot,
)
from tests.support.inproc import harvest

# One device of each type, one day (the present is 14:00 of it): 7 windows a device.
OPTIONS = SimulatorOptions(seed=11, devices=3, days=1, cadence_s=1800)
TARGET = "1002"  # the SPOD
W_START, W_END = (
    dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC),
    dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC),
)
W_START_API = "2024-01-01 10:00:00"
ODD_DATE = "2024-01-01T11:00:00.000Z"  # the record of the window that gets the odd value
RUN_OPTIONS = ("--max-attempts", "2", "--read-timeout-s", "10")
#: Peak RSS of a subprocess run meeting a hostile body. A healthy run of this fleet peaks at
#: ~150 MiB; before issue 11's fixes a 1 MB body of '{' took ~650 MiB and a gzip bomb ~690.
SUBPROCESS_MAX_RSS_MIB = 300
#: Attempts a deterministic shape error of a discovery call (device list, dates) may take.
DISCOVERY_MAX_HITS = 3

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One hostile reply and what the harvester must make of it.

    ``target``: what becomes of device 1002 (the one the reply concerns):
    ``exact`` all its records stored; ``window`` all but (some of) the hostile window's;
    ``dropped`` all but the record of 11:00 (its date was moved out of the window);
    ``absent`` none; ``nothing``: no device stored at all. ``warns``: a word the output must
    hold (case-insensitive), e.g. the warning naming a skipped device.
    """

    id: str
    description: str
    rule: Callable[[HostileServer], Rule]
    exit: int
    target: str
    aliases: dict[str, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None
    max_hits: int = 2
    warns: str = ""
    subprocess: bool = False


# -- rules --------------------------------------------------------------------------------------


def _inside(records: Records) -> Records:
    """The records of the hostile window that belong to it (the server's bounds are inclusive)."""
    return [r for r in records if W_START <= instant(r["date"]) < W_END]


def _odd(records: Records) -> dict[str, Any]:
    return next(r for r in records if r["date"] == ODD_DATE)


def records(change: Callable[[Records], Any]) -> Callable[[HostileServer], Rule]:
    """The window's answer becomes ``change(records)``: a ``Reply``, raw ``bytes`` (a 200
    JSON answer) or a value sent as JSON."""

    def make(healthy: bytes) -> Reply:
        result = change(json.loads(healthy)["data"])
        if isinstance(result, Reply):
            return result
        if isinstance(result, bytes):
            return Reply(result)
        return json_reply(result)

    return lambda server: Rule("records", make, TARGET, W_START_API)


def raw(transform: Callable[[bytes], Reply | bytes]) -> Callable[[HostileServer], Rule]:
    """The window's answer becomes ``transform(healthy body)``."""

    def make(healthy: bytes) -> Reply:
        result = transform(healthy)
        return result if isinstance(result, Reply) else Reply(result)

    return lambda server: Rule("records", make, TARGET, W_START_API)


def odd_value(name: str, value: Any) -> Callable[[HostileServer], Rule]:
    """The record of 11:00 gets ``name: value`` (sent as JSON)."""

    def change(rows: Records) -> Any:
        _odd(rows)[name] = value
        return {"data": rows}

    return records(change)


def odd_token(token: str) -> Callable[[HostileServer], Rule]:
    """The record of 11:00 gets a field whose value is the raw ``token`` (not valid JSON)."""

    def change(rows: Records) -> bytes:
        _odd(rows)["odd"] = "@@ODD@@"
        return json.dumps({"data": rows}).encode().replace(b'"@@ODD@@"', token.encode())

    return records(change)


def without(name: str) -> Callable[[HostileServer], Rule]:
    def change(rows: Records) -> Any:
        del _odd(rows)[name]
        return {"data": rows}

    return records(change)


def dated(style: Callable[[dt.datetime], Any]) -> Callable[[HostileServer], Rule]:
    """Every record of the answer gets its date written by ``style``."""

    def change(rows: Records) -> Any:
        for row in rows:
            row["date"] = style(instant(row["date"]))
        return {"data": rows}

    return records(change)


def _mixed_dates(rows: Records) -> Any:
    styles = [
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        lambda t: t.strftime("%Y-%m-%dT%H:%M:%S"),
        lambda t: t.astimezone(dt.timezone(dt.timedelta(hours=-6))).isoformat(),
        lambda t: t.strftime("%Y-%m-%d %H:%M:%S.000"),
    ]
    for index, row in enumerate(rows):
        row["date"] = styles[index % len(styles)](instant(row["date"]))
    return {"data": rows}


def odd_dated(text: str) -> Callable[[HostileServer], Rule]:
    def change(rows: Records) -> Any:
        _odd(rows)["date"] = text
        return {"data": rows}

    return records(change)


def listing(change: Callable[[Records], Any]) -> Callable[[HostileServer], Rule]:
    """The device list becomes ``change(devices)`` (entries are changed in place or added)."""

    def make(healthy: bytes) -> Reply:
        return json_reply(change(json.loads(healthy)))

    return lambda server: Rule("devices", make)


def target_entry(name: str, value: Any) -> Callable[[HostileServer], Rule]:
    """Device 1002's list entry gets ``name: value`` (``None`` drops a uuid to null)."""

    def change(devices: Records) -> Any:
        next(d for d in devices if d["uuid"] == TARGET)[name] = value
        return devices

    return listing(change)


def dates(change: Callable[[Records], Any]) -> Callable[[HostileServer], Rule]:
    """Device 1002's available dates become ``change(entries)``."""

    def make(healthy: bytes) -> Reply:
        return json_reply(change(json.loads(healthy)))

    return lambda server: Rule("dates", make, TARGET)


def first_entry(update: Callable[[dict[str, Any]], None]) -> Callable[[HostileServer], Rule]:
    def change(entries: Records) -> Any:
        update(entries[0])
        return entries

    return dates(change)


def sign_in(change: Callable[[dict[str, Any], HostileServer], Any]) -> Callable[..., Rule]:
    """Every sign-in answer becomes ``change(answer, server)`` (a value sent as JSON, or a
    ``Reply``)."""

    def rule(server: HostileServer) -> Rule:
        def make(healthy: bytes) -> Reply:
            result = change(json.loads(healthy), server)
            return result if isinstance(result, Reply) else json_reply(result)

        return Rule("signin", make)

    return rule


def _opaque_token(answer: dict[str, Any], server: HostileServer) -> Any:
    opaque = f"opaque-{len(server.tokens) + 1}"
    server.tokens[opaque] = answer["accessToken"]
    return {**answer, "accessToken": opaque}


def _user_without_id(answer: dict[str, Any], server: HostileServer) -> Any:
    answer["user"].pop("id")
    return answer


@cache
def _gzip_bomb() -> bytes:
    """A gzip stream of 1/10 MB that inflates to a valid 100 MB answer with no records."""
    return gzip.compress(b'{"data": [], "pad": "' + b" " * (100 << 20) + b'"}', compresslevel=1)


# -- value checks on the stored record of 11:00 --------------------------------------------------


def equals(name: str, expected: Any) -> Callable[[dict[str, Any]], None]:
    def check(row: dict[str, Any]) -> None:
        assert row[name] == expected

    return check


def _big_integer_kept(row: dict[str, Any]) -> None:
    value = row["big"]
    assert value in ("1180591620717411303424", float(2**70)), f"big became {value!r}"


def _many_fields_kept(row: dict[str, Any]) -> None:
    assert [row[f"f{i:03d}"] for i in range(320)] == list(range(320))


ESCAPED_TEXT = 'quote " backslash \\ slash / newline \n tab \t é ☃ 😀 nul \x00 sep \u2028 end'
BRACES = "{" * (1 << 20)


def _braces_kept(row: dict[str, Any]) -> None:
    assert row["note"] == BRACES
    assert [row[f"f{i:03d}"] for i in range(400)] == list(range(400))


def _braces_and_fields(rows: Records) -> Any:
    odd = _odd(rows)
    odd["note"] = BRACES
    odd.update({f"f{i:03d}": i for i in range(400)})
    return {"data": rows}


def _with_pad(rows: Records) -> bytes:
    """The window's records and one padding field: a body of about 60 MB."""
    return json.dumps({"data": rows, "pad": "x" * (60 << 20)}).encode()


def _rename(name: str) -> Callable[[HostileServer], Rule]:
    return target_entry("uuid", name)


#: A uuid that names an absolute path; nothing may appear there.
ABSOLUTE = "/tmp/sensit-hostile-absolute/escape"

# -- the table ----------------------------------------------------------------------------------

CASES: list[Case] = [
    # -- the records envelope and record shapes: an error for the window, never "no data" --
    Case("envelope-string", "the body is a JSON string, not an object: the window fails",
         records(lambda rows: "ok"), 1, "window"),
    Case("envelope-no-data", "an object without 'data' is an error, not an empty window",
         records(lambda rows: {"message": "Request processed"}), 1, "window"),
    Case("envelope-data-object", "'data' is an object, not a list: the window fails",
         records(lambda rows: {"data": rows[0]}), 1, "window"),
    Case("envelope-data-null", "'data' null is not documented as 'no data': the window fails",
         records(lambda rows: {"data": None}), 1, "window"),
    Case("envelope-bare-array", "a bare array of records, without the 'data' envelope (issue "
         "14: a server may answer so, and the records are the same): stored exactly",
         records(lambda rows: rows), 0, "exact"),
    Case("envelope-extra-fields", "extra top-level fields beside 'data' are ignored",
         records(lambda rows: {"message": "ok", "data": rows, "count": 3, "next": None}),
         0, "exact"),
    Case("record-not-object", "a record that is a number: the whole window fails",
         records(lambda rows: {"data": [*rows, 42]}), 1, "window"),
    Case("record-no-id", "a record without '_id' cannot be de-duplicated: the window fails",
         without("_id"), 1, "window"),
    Case("record-no-date", "a record without 'date': the window fails",
         without("date"), 1, "window"),
    Case("record-id-number", "an '_id' that is a number (judgement: the ObjectId is a text; "
         "a number is a shape error): the window fails",
         odd_value("_id", 123456789), 1, "window"),
    Case("record-repeated", "one record twice in the same answer: stored once",
         records(lambda rows: {"data": [*rows, dict(_odd(rows))]}), 0, "exact"),
    Case("record-duplicate-keys", "a key twice in one record: the last one wins, as in the "
         "vendor's JavaScript (JSON.parse); the window is stored",
         odd_token('1, "odd": 2'), 0, "exact", check=equals("odd", 2)),
    # -- dates in other formats and precisions ---------------------------------------------
    Case("date-no-zone", "ISO dates without 'Z' are read as UTC (the API speaks UTC)",
         dated(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000")), 0, "exact"),
    Case("date-offset", "dates with a +05:30 offset are the same instants",
         dated(lambda t: t.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
               .isoformat(timespec="milliseconds")), 0, "exact"),
    Case("date-seconds", "dates to the second (no milliseconds)",
         dated(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")), 0, "exact"),
    Case("date-microseconds", "dates to the microsecond are stored to the millisecond "
         "(timestamp[ms]): the digits beyond are truncated",
         dated(lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000123Z")), 0, "exact"),
    Case("date-space", "dates with a space for 'T' ('2024-01-01 11:00:00.000')",
         dated(lambda t: t.strftime("%Y-%m-%d %H:%M:%S.000")), 0, "exact"),
    Case("date-mixed-styles", "one answer mixing 'Z', no zone, an offset and a space "
         "separator (each a valid ISO-8601 time): every record stored at its instant",
         records(_mixed_dates), 0, "exact"),
    Case("date-epoch-number", "dates as epoch milliseconds (a number; seconds or "
         "milliseconds is a guess): the window fails",
         dated(lambda t: int(t.timestamp() * 1000)), 1, "window"),
    Case("date-garbage", "a date that is not a time at all: the window fails",
         odd_dated("yesterday, around noon"), 1, "window"),
    Case("date-year-0", "a record dated year 0000 lies outside its window: dropped (the sink "
         "keeps start <= date < end), so the day is short of the server's count: the run "
         "exits 1 saying so, and the next run fetches the day again",
         odd_dated("0000-01-01T00:00:00.000Z"), 1, "dropped"),
    Case("date-year-9999", "a record dated 9999-12-31 lies outside its window: dropped, the "
         "day short, exit 1", odd_dated("9999-12-31T23:59:59.999Z"), 1, "dropped"),
    Case("date-out-of-window", "a record dated in another window of the same day: dropped "
         "from this one (it is not that window's either), the day short, exit 1",
         odd_dated("2024-01-01T03:00:00.000Z"), 1, "dropped"),
    # -- nested and odd values ---------------------------------------------------------------
    Case("value-nested-object", "a nested object is stored as a struct, values kept",
         odd_value("extra", {"a": 1, "b": {"c": "d"}}), 0, "exact",
         check=equals("extra", {"a": 1, "b": {"c": "d"}})),
    Case("value-nested-arrays", "nested arrays are stored as lists, values kept",
         odd_value("extra", [[1, 2], [3]]), 0, "exact", check=equals("extra", [[1, 2], [3]])),
    Case("value-mixed-kinds", "one field a number, a text and a boolean in one window: "
         "stored (as text where the kinds clash)",
         records(lambda rows: {"data": [{**r, "temp": v} for r, v in
                                        zip(rows, [1, 2.5, "hot", True, None], strict=False)]}),
         0, "exact"),
    Case("value-huge-integer", "an integer beyond 64 bits is stored as its digits or as the "
         "nearest float, never wrapped", odd_value("big", 2**70), 0, "exact",
         check=_big_integer_kept),
    Case("value-nan", "a NaN token is not JSON: the window fails", odd_token("NaN"), 1,
         "window"),
    Case("value-infinity", "an -Infinity token is not JSON: the window fails",
         odd_token("-Infinity"), 1, "window"),
    Case("value-escapes", "escapes (quote, backslash, control characters, NUL, a surrogate "
         "pair, U+2028) are decoded exactly", odd_value("note", ESCAPED_TEXT), 0, "exact",
         check=equals("note", ESCAPED_TEXT)),
    Case("value-long-text", "a 2 MB text in one field is stored whole",
         odd_value("note", "x" * (2 << 20)), 0, "exact", check=equals("note", "x" * (2 << 20))),
    Case("value-many-fields", "a record with 320 more fields than the others: all stored",
         records(lambda rows: (_odd(rows).update({f"f{i:03d}": i for i in range(320)}),
                               {"data": rows})[1]), 0, "exact", check=_many_fields_kept),
    Case("value-braces", "a 1 MB text full of '{' and 400 fields in one record (issue 11: the "
         "native reader sized columns by the '{' count): stored whole, memory bounded",
         records(_braces_and_fields), 0, "exact", check=_braces_kept, subprocess=True),
    # -- sizes and encodings -------------------------------------------------------------------
    Case("size-empty", "an empty 200 body: the window fails", raw(lambda body: b""), 1,
         "window"),
    Case("size-truncated", "a body cut in the middle: the window fails",
         raw(lambda body: body[: len(body) // 2]), 1, "window"),
    Case("size-60mb", "a 60 MB body is beyond the default --max-response-mb (32): refused "
         "without reading it all, the window fails", records(_with_pad), 1, "window",
         subprocess=True),
    Case("size-deep-nesting", "100,000 '[' in 'data' (used to SIGSEGV in pyarrow.json): a "
         "shape error, the window fails",
         raw(lambda body: b'{"data": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"), 1,
         "window", subprocess=True),
    Case("encoding-invalid-utf8", "bytes that are not UTF-8 in a text: the window fails",
         raw(lambda body: body.replace(b'"' + ODD_DATE.encode() + b'"',
                                       b'"' + ODD_DATE.encode() + b'", "note": "\xff\xfe"')),
         1, "window"),
    Case("encoding-bom", "a UTF-8 byte-order mark before the JSON (RFC 8259 lets a parser "
         "ignore it; judgement: accepted, the answer is otherwise exact)",
         raw(lambda body: b"\xef\xbb\xbf" + body), 0, "exact"),
    Case("encoding-gzip-lie", "'Content-Encoding: gzip' on a plain body: the window fails",
         raw(lambda body: Reply(body, headers={"Content-Type": "application/json",
                                               "Content-Encoding": "gzip"})), 1, "window"),
    Case("encoding-gzip-bomb", "a 0.1 MB gzip body inflating to 100 MB: the cap counts the "
         "inflated bytes, the window fails (never stored as an empty window)",
         raw(lambda body: Reply(_gzip_bomb(), headers={"Content-Type": "application/json",
                                                       "Content-Encoding": "gzip"})),
         1, "window", subprocess=True),
    Case("encoding-content-type", "a well-formed answer labelled text/html: the body decides",
         raw(lambda body: Reply(body, headers={"Content-Type": "text/html; charset=utf-8"})),
         0, "exact"),
    # -- device-list oddities --------------------------------------------------------------------
    Case("device-empty-uuid", "a device with an empty uuid is skipped with a warning, the "
         "others harvested", _rename(""), 0, "absent", warns="skipped"),
    Case("device-null-uuid", "a device with a null uuid is skipped with a warning",
         _rename(None), 0, "absent", warns="skipped"),  # type: ignore[arg-type]
    Case("device-number-uuid", "a uuid sent as a number is that number's text",
         _rename(1002), 0, "exact"),  # type: ignore[arg-type]
    Case("device-traversal", "uuid '../../../../../escape' is stored inside --out, "
         "percent-encoded as Hive does", _rename("../../../../../escape"), 0, "absent",
         aliases={"../../../../../escape": TARGET}),
    Case("device-absolute", "an absolute-path uuid is stored inside --out, percent-encoded",
         _rename(ABSOLUTE), 0, "absent", aliases={ABSOLUTE: TARGET}),
    Case("device-backslash", "uuid 'a\\b' (a Windows separator) is one partition",
         _rename("a\\b"), 0, "absent", aliases={"a\\b": TARGET}),
    Case("device-dot-dot", "uuid '..' is stored inside --out, percent-encoded",
         _rename(".."), 0, "absent", aliases={"..": TARGET}),
    Case("device-slash", "uuid 'a/b' is one partition, device_id=a%2Fb",
         _rename("a/b"), 0, "absent", aliases={"a/b": TARGET}),
    Case("device-nul", "a uuid with a NUL is stored percent-encoded",
         _rename("a\x00b"), 0, "absent", aliases={"a\x00b": TARGET}),
    Case("device-percent", "uuid 'x%2Fy' (a literal percent) round-trips, not read as x/y",
         _rename("x%2Fy"), 0, "absent", aliases={"x%2Fy": TARGET}),
    Case("device-equals", "uuid 'k=v' is stored percent-encoded", _rename("k=v"), 0, "absent",
         aliases={"k=v": TARGET}),
    Case("device-unicode", "a unicode uuid round-trips", _rename("设备-☃-é"), 0, "absent",
         aliases={"设备-☃-é": TARGET}),
    Case("device-long-uuid", "a 300-character uuid cannot be a file name: the device is "
         "reported failed (exit 1; judgement: not skipped silently, it has data), the others "
         "harvested", _rename("u" * 300), 1, "absent", aliases={"u" * 300: TARGET},
         ),
    Case("device-unknown-type", "a device of an unknown type is skipped with a warning",
         target_entry("type", "XYZ"), 0, "absent", warns="skipped"),
    Case("device-list-not-list", "a device list that is an object fails the run (exit 1), "
         "retried at most twice", listing(lambda devices: {"devices": devices}), 1, "nothing",
         max_hits=DISCOVERY_MAX_HITS),
    Case("device-duplicate", "a device listed twice is harvested once, exactly",
         listing(lambda devices: [*devices, next(d for d in devices if d["uuid"] == TARGET)]),
         0, "exact"),
    # -- available dates of one device ----------------------------------------------------------
    Case("dates-not-list", "device 1002's dates are an object: 1002 failed (exit 1), the "
         "others harvested", dates(lambda entries: {"dates": entries}), 1, "absent",
         max_hits=DISCOVERY_MAX_HITS),
    Case("dates-entry-without-id", "a dates entry without '_id': 1002 failed, others harvested",
         first_entry(lambda e: e.pop("_id")), 1, "absent", max_hits=DISCOVERY_MAX_HITS),
    Case("dates-february-30", "an impossible day (2024-02-30): 1002 failed, others harvested",
         first_entry(lambda e: e.update(_id={"year": 2024, "month": 2, "day": 30})), 1,
         "absent", max_hits=DISCOVERY_MAX_HITS),
    Case("dates-negative-count", "a negative count: 1002 failed, others harvested",
         first_entry(lambda e: e.update(count=-5)), 1, "absent",
         max_hits=DISCOVERY_MAX_HITS),
    Case("dates-textual-count", "a count that is a text ('14'): 1002 failed, others harvested",
         first_entry(lambda e: e.update(count=str(e["count"]))), 1, "absent",
         max_hits=DISCOVERY_MAX_HITS),
    # -- sign-in oddities ------------------------------------------------------------------------
    Case("signin-no-token", "a 200 sign-in answer without accessToken: authentication failed "
         "(judgement: exit 3, as the documented code for a sign-in that yields no token)",
         sign_in(lambda answer, server: {"user": answer["user"], "message": "ok"}), 3,
         "nothing"),
    Case("signin-opaque-token", "a token that is not a JWT is used as is (401 would refresh)",
         sign_in(_opaque_token), 0, "exact"),
    Case("signin-html", "a 200 HTML page for the sign-in: not the API, exit 1 naming "
         "--base-url", sign_in(lambda answer, server: Reply(
             b"<html><body>Welcome!</body></html>", headers={"Content-Type": "text/html"})),
         1, "nothing"),
    Case("signin-user-without-id", "a user without 'id' (the device list needs it): exit 1, "
         "one line", sign_in(_user_without_id), 1, "nothing"),
]  # fmt: skip


def _params(subprocess: bool) -> Iterator[Any]:
    for case in CASES:
        if case.subprocess != subprocess:
            continue
        marks = [pytest.mark.slow] if subprocess else []
        yield pytest.param(case, id=case.id, marks=marks)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    """One simulator for the module; each case arms its rule and disarms it after."""
    with HostileServer(OPTIONS) as started:
        yield started


@pytest.fixture(scope="module")
def fleet(server: HostileServer) -> Fleet:
    """What the healthy server holds, read by the plain sequential client."""
    server.disarm()
    found = collect_fleet(server.url)
    assert sorted(found.records) == ["1001", "1002", "1003"]
    assert len(found.records[TARGET]) > 20
    return found


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after 10 ms at most (in-process runs only): no option sets the back-off."""
    monkeypatch.setattr(RetryPolicy, "backoff_cap", lambda self, failures: 0.01)


# -- the checks --------------------------------------------------------------------------------


Run = Callable[[str, Path], tuple[int, str, str, int | None]]


def _run_in_process(url: str, out: Path) -> tuple[int, str, str, int | None]:
    """(exit code, stdout, stderr, peak RSS in MiB: None, the test's own process)."""
    try:
        return *harvest(url, out, *RUN_OPTIONS), None
    except (Exception, SystemExit) as exc:  # a crash is what this reports
        return -1, "", "".join(traceback.format_exception(exc)), None


def _run_in_a_subprocess(url: str, out: Path) -> tuple[int, str, str, int | None]:
    return harvest_subprocess(url, out, *RUN_OPTIONS, timeout_s=45)


_CRASH_SIGNS = (
    "Traceback",
    "Task exception was never retrieved",
    "internal error",
    "Fatal Python error",
    "Segmentation fault",
)


def _assert_clean(code: int, stdout: str, stderr: str) -> None:
    output = stdout + stderr
    assert code != -9999, f"the run hung (killed after its time-out):\n{output[-3000:]}"
    assert code >= 0, f"the run crashed ({code}):\n{output[-3000:]}"
    for sign in _CRASH_SIGNS:
        assert sign not in output, f"{sign!r} in the output:\n{output[-3000:]}"
    assert not re.search(r"error: unexpected [A-Za-z]+(Error|Exception)\b", output), output[-3000:]


def _stored(archive: Archive) -> dict[str, dict[str, list[dt.datetime]]]:
    """Per device id: every stored ``_id`` with the dates it was stored with."""
    found: dict[str, dict[str, list[dt.datetime]]] = {}
    for device, rows in archive.rows.items():
        by_id = found.setdefault(device, {})
        for row in rows:
            by_id.setdefault(row["_id"], []).append(row["date"])
    return found


def _assert_exact(
    stored: dict[str, list[dt.datetime]], expected: dict[str, dict[str, Any]], device: str
) -> None:
    twice = sorted(i for i, dates in stored.items() if len(dates) > 1)
    assert not twice, f"device {device}: stored twice: {twice[:5]}"
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    assert not missing, f"device {device}: {len(missing)} records missing"
    assert not extra, f"device {device}: {len(extra)} records it does not have"
    wrong = [i for i, dates in stored.items() if dates[0] != instant(expected[i]["date"])]
    assert not wrong, f"device {device}: wrong dates for {wrong[:5]}"


def _assert_subset(
    stored: dict[str, list[dt.datetime]],
    expected: dict[str, dict[str, Any]],
    device: str,
    may_miss: set[str],
) -> None:
    """Every stored record exact and once; the only ones missing are in ``may_miss``."""
    kept = {i: expected[i] for i in expected if i in stored or i not in may_miss}
    _assert_exact(stored, kept, device)


def _assert_archive(case: Case, out: Path, fleet: Fleet, *, healthy: bool) -> Archive:
    archive = read_archive(out)
    assert archive.misplaced == [], f"files outside the partition layout: {archive.misplaced}"
    stored = _stored(archive)
    aliases = case.aliases
    unknown = sorted(set(stored) - set(fleet.records) - set(aliases))
    assert not unknown, f"rows stored under device ids no device has: {unknown}"
    for alias, source in aliases.items():
        if alias in stored or not healthy:
            if case.exit == 0:
                _assert_exact(stored.get(alias, {}), fleet.records[source], repr(alias))
            else:
                _assert_subset(stored.get(alias, {}), fleet.records[source], repr(alias),
                               set(fleet.records[source]))  # fmt: skip
    for device, expected in fleet.records.items():
        got = stored.get(device, {})
        target = "exact" if healthy or device != TARGET else case.target
        if case.target == "nothing" and not healthy:
            target = "nothing"
        if target == "exact":
            _assert_exact(got, expected, device)
        elif target in ("absent", "nothing"):
            assert got == {}, f"device {device}: {len(got)} records stored"
        elif target == "dropped":
            odd = next(i for i, r in expected.items() if r["date"] == ODD_DATE)
            _assert_exact(got, {i: r for i, r in expected.items() if i != odd}, device)
        elif target == "window":
            window = {i for i, r in expected.items() if W_START <= instant(r["date"]) < W_END}
            _assert_subset(got, expected, device, window)
        else:
            raise AssertionError(f"unknown target outcome {target!r}")
    return archive


def _assert_values(case: Case, archive: Archive, fleet: Fleet) -> None:
    if case.check is None:
        return
    odd = next(i for i, r in fleet.records[TARGET].items() if r["date"] == ODD_DATE)
    row = next(r for r in archive.rows.get(TARGET, []) if r["_id"] == odd)
    case.check(row)


def run_case(
    case: Case,
    server: HostileServer,
    fleet: Fleet,
    tmp_path: Path,
    run: Run,
) -> None:
    # Deep enough that a uuid climbing ten levels still lands in tmp_path, where it is seen.
    out = tmp_path.joinpath(*(f"l{i}" for i in range(10)), "out")
    out.parent.mkdir(parents=True)
    before = snapshot(tmp_path, out)
    server.arm(case.rule(server), case.aliases)
    try:
        code, stdout, stderr, peak_mib = run(server.url, out)
        hits = server.hits
    finally:
        server.disarm()
    _assert_clean(code, stdout, stderr)
    assert snapshot(tmp_path, out) == before, "something was written outside --out"
    assert not Path(ABSOLUTE).parent.exists(), f"something was written in {ABSOLUTE}"
    assert hits >= 1, "the hostile reply was never asked for"
    assert hits <= case.max_hits, f"the hostile call was made {hits} times"
    assert code == case.exit, f"exit {code}, expected {case.exit}:\n{(stdout + stderr)[-3000:]}"
    assert case.warns.lower() in (stdout + stderr).lower(), f"no {case.warns!r} in the output"
    if code == 1 and case.target in ("window", "absent"):
        # A renamed device is named by the uuid the server gave it.
        named = next(iter(case.aliases), TARGET)
        assert named in stdout + stderr, "the failed device is not named"
    archive = _assert_archive(case, out, fleet, healthy=False)
    _assert_values(case, archive, fleet)

    if peak_mib is not None:
        assert 0 < peak_mib <= SUBPROCESS_MAX_RSS_MIB, f"peak RSS {peak_mib} MiB"
    code, stdout, stderr, _ = run(server.url, out)
    _assert_clean(code, stdout, stderr)
    assert code == 0, f"the healthy run exited {code}:\n{(stdout + stderr)[-3000:]}"
    assert snapshot(tmp_path, out) == before, "something was written outside --out"
    _assert_archive(case, out, fleet, healthy=True)


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(_params(subprocess=False)))
def test_hostile_reply(
    case: Case, server: HostileServer, fleet: Fleet, tmp_path: Path, quick_backoff: None
) -> None:
    """One call answered as ``case`` says: no crash, hang or traceback, nothing outside --out,
    every other device exact, the documented exit code; then a healthy run completes exactly."""
    run_case(case, server, fleet, tmp_path, _run_in_process)


@pytest.mark.timeout(120)  # two runs of up to 45 s each, and a 60 MB answer to build
@pytest.mark.parametrize("case", list(_params(subprocess=True)))
def test_hostile_reply_in_a_subprocess(
    case: Case, server: HostileServer, fleet: Fleet, tmp_path: Path
) -> None:
    """The same for bodies that could crash or bloat the process: the harvester runs as a
    subprocess, so a SIGSEGV or a hang (killed after 45 s) fails the test, and its peak
    resident memory stays within SUBPROCESS_MAX_RSS_MIB."""
    run_case(case, server, fleet, tmp_path, _run_in_a_subprocess)
