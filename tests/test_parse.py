"""Tests of harvester.records.parse: response bodies → Arrow tables."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.errors import ShapeError
from harvester.records import native_reader, parse
from harvester.records.limits import MAX_DEPTH, SMALL_BODY_MAX_BYTES
from harvester.records.native_reader import NATIVE
from harvester.records.parse import build_array, parse_window
from tests.support.native import read_validated
from tests.support.strategies import json_scalars

UTC_MS = pa.timestamp("ms", tz="UTC")


@pytest.fixture(autouse=True)
def _native_tables_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table the native reader builds in these tests is validated in full first."""
    monkeypatch.setattr(parse, "read_flat_records", read_validated)


def _record(i: int, **fields: object) -> dict[str, object]:
    stamp = dt.datetime(2024, 2, 5, 22, tzinfo=dt.UTC) + dt.timedelta(seconds=i)
    return {
        "_id": f"{i:024x}",
        "id": "1041",
        "date": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        **fields,
    }


def _body(records: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"data": records})


def test_spod_window_keeps_every_field_and_order() -> None:
    """A SPOD-like window becomes one row per record, fields under their source names."""
    records = [
        _record(i, pid1_PPB_Calc=1.5 * i, temp=20.25, ws_direction=i % 360, lat=39.7)
        for i in range(50, 0, -1)
    ]
    table = parse_window(_body(records))
    assert table.num_rows == 50
    assert table.column_names == [
        "_id",
        "id",
        "date",
        "pid1_PPB_Calc",
        "temp",
        "ws_direction",
        "lat",
    ]
    assert table.column("_id").to_pylist() == [r["_id"] for r in records]
    assert table.schema.field("ws_direction").type == pa.int64()
    assert table.column("pid1_PPB_Calc").to_pylist() == [r["pid1_PPB_Calc"] for r in records]


def test_date_becomes_utc_millisecond_timestamp_with_or_without_millis() -> None:
    """`date` is timestamp[ms, UTC] whether pyarrow inferred a string or a timestamp."""
    with_millis = parse_window(_body([_record(1)]))
    without = parse_window(b'{"data":[{"_id":"a","date":"2024-02-05T22:00:01Z"}]}')
    mixed = parse_window(
        b'{"data":[{"_id":"a","date":"2024-02-05T22:00:01Z"},'
        b'{"_id":"b","date":"2024-02-05T22:00:01.250Z"}]}'
    )
    expected = dt.datetime(2024, 2, 5, 22, 0, 1, tzinfo=dt.UTC)
    for table in (with_millis, without, mixed):
        assert table.schema.field("date").type == UTC_MS
        assert table.column("date")[0].as_py() == expected
    assert mixed.column("date")[1].as_py() == expected + dt.timedelta(milliseconds=250)


def test_date_with_offset_is_converted_to_utc() -> None:
    """A `date` with a numeric offset is stored as the same instant in UTC."""
    table = parse_window(b'{"data":[{"_id":"a","date":"2024-02-05T23:00:01+01:00"}]}')
    assert table.column("date")[0].as_py() == dt.datetime(2024, 2, 5, 22, 0, 1, tzinfo=dt.UTC)


def test_dates_finer_than_ms_or_of_mixed_styles_are_each_read_at_their_instant() -> None:
    """Microseconds are truncated to the millisecond, and one window may mix `Z`, no zone,
    an offset and a space separator: every record keeps its own instant."""
    table = parse_window(
        b'{"data":[{"_id":"a","date":"2024-02-05T22:00:01.250999Z"},'
        b'{"_id":"b","date":"2024-02-05T22:00:02"},'
        b'{"_id":"c","date":"2024-02-05T23:00:03.5+01:00"},'
        b'{"_id":"d","date":"2024-02-05 22:00:04.000"}]}'
    )
    start = dt.datetime(2024, 2, 5, 22, 0, tzinfo=dt.UTC)
    assert table.schema.field("date").type == UTC_MS
    assert table.column("date").to_pylist() == [
        start + dt.timedelta(seconds=1.25),
        start + dt.timedelta(seconds=2),
        start + dt.timedelta(seconds=3.5),
        start + dt.timedelta(seconds=4),
    ]


def test_empty_data_is_a_zero_row_table() -> None:
    """`{"data": []}` is a valid window without records."""
    assert parse_window(b'{"data": []}').num_rows == 0


def test_int_and_float_in_one_window_become_float() -> None:
    """A field that is an int in some records and a float in others is float64, exactly."""
    table = parse_window(_body([_record(0, temp=20), _record(1, temp=20.5), _record(2, temp=-3)]))
    assert table.schema.field("temp").type == pa.float64()
    assert table.column("temp").to_pylist() == [20.0, 20.5, -3.0]


def test_nulls_and_fields_appearing_later_are_nulls() -> None:
    """A field null everywhere has type null; one absent from early records is null there."""
    table = parse_window(
        _body([_record(0, rh_Humd=None), _record(1, rh_Humd=None, pressure_mbar=1013.2)])
    )
    assert table.schema.field("rh_Humd").type == pa.null()
    assert table.column("pressure_mbar").to_pylist() == [None, 1013.2]


def test_conflicting_kinds_fall_back_and_keep_values_as_text() -> None:
    """Number vs string vs object in one field is parsed (fallback) with values as text."""
    records = [
        _record(0, mixed=1, flag=True, nested={"a": 1}),
        _record(1, mixed="n/a", flag=1, nested=2.5),
        _record(2, mixed={"k": [1, 2]}, flag=None, nested={"a": 2, "b": "x"}),
    ]
    table = parse_window(_body(records))
    assert table.num_rows == 3
    assert table.column("mixed").to_pylist() == ["1", "n/a", '{"k":[1,2]}']
    assert table.column("flag").to_pylist() == ["true", "1", None]
    assert table.column("nested").to_pylist() == ['{"a":1}', "2.5", '{"a":2,"b":"x"}']
    assert table.schema.field("date").type == UTC_MS


def test_fallback_builds_nested_structs_and_lists_like_the_fast_path() -> None:
    """Nested objects and lists keep their structure when the fallback path is taken."""
    records = [
        _record(0, conflict=1, gps={"lat": 1, "fix": True}, vals=[1, 2]),
        _record(1, conflict="x", gps={"lat": 2.5}, vals=None),
    ]
    fallback = parse_window(_body(records))
    fast = parse_window(_body([{k: v for k, v in r.items() if k != "conflict"} for r in records]))
    assert fallback.drop_columns(["conflict"]).equals(fast)
    assert fast.column("gps").to_pylist() == [{"lat": 1.0, "fix": True}, {"lat": 2.5, "fix": None}]


def test_a_bool_beside_a_float_is_text_in_small_and_large_bodies() -> None:
    """pa.array would read `true` beside `0.5` as 1.0; a small body keeps both as text, as a
    large one does (pyarrow.json refuses it and the column builder renders the values)."""
    records = [_record(0, x=0.5), _record(1, x=True)]
    small = parse_window(_body(records))
    large = parse_window(_body(records + [_record(i) for i in range(2, 400)]))
    assert (
        len(_body(records))
        <= SMALL_BODY_MAX_BYTES
        < len(_body(records + [_record(i) for i in range(2, 400)]))
    )
    assert small.column("x").to_pylist() == ["0.5", "true"]
    assert large.column("x").to_pylist()[:2] == ["0.5", "true"]


def test_repeated_key_is_parsed_with_the_last_value() -> None:
    """A body with a repeated key (valid JSON pyarrow refuses) is parsed, last value wins."""
    table = parse_window(b'{"data":[{"_id":"a","date":"2024-02-05T22:00:00Z","x":1,"x":2}]}')
    assert table.column("x").to_pylist() == [2]


def test_empty_objects_become_nulls() -> None:
    """An empty object (which Parquet cannot store as a struct) is kept as a null field."""
    table = parse_window(_body([_record(0, cfg={}), _record(1, cfg={})]))
    assert table.schema.field("cfg").type == pa.null()


def test_lists_starting_with_null_keep_every_item_in_large_bodies() -> None:
    """pyarrow.json builds `[null, 1]` and `[null, {}]` as invalid arrays (the leading null
    is lost); such a large body is read by the object path, item for item."""
    for first, rest, kept in (([None, 1], [2], [None, 1]), ([None, {}], [{}], [None, None])):
        body = _body([_record(0, x=first), *(_record(i, x=rest) for i in range(1, 400))])
        assert len(body) > SMALL_BODY_MAX_BYTES
        table = parse_window(body)
        table.validate(full=True)
        assert table.column("x").to_pylist()[:2] == [kept, [None] if rest == [{}] else rest]


def test_integers_beyond_64_bits_are_kept_as_floats() -> None:
    """Valid JSON with a huge integer (orjson refuses it) still parses."""
    table = parse_window(
        b'{"data":[{"_id":"a","date":"2024-02-05T22:00:00Z","x":99999999999999999999,"y":1},'
        b'{"_id":"b","date":"2024-02-05T22:00:00Z","x":1,"y":"s"}]}'
    )
    assert table.column("x").to_pylist() == [1e20, 1.0]


def test_integers_past_2_to_53_beside_floats_become_the_nearest_float() -> None:
    """An integer a float cannot hold exactly, in a field that also holds floats, is rounded
    as JSON readers round it (pa.array refuses it outright)."""
    table = parse_window(
        b'{"data":[{"_id":"a","date":"2024-02-05T22:00:00Z","x":[9007199254740993,0.5]},'
        b'{"_id":"b","date":"2024-02-05T22:00:00Z","x":[1,"s"]}]}'
    )
    assert table.column("x").to_pylist() == [["9007199254740993", "0.5"], ["1", "s"]]
    table = parse_window(
        b'{"data":[{"_id":"a","date":"2024-02-05T22:00:00Z","x":9007199254740993},'
        b'{"_id":"b","date":"2024-02-05T22:00:00Z","x":0.5,"y":true},'
        b'{"_id":"c","date":"2024-02-05T22:00:00Z","y":1}]}'
    )
    assert table.column("x").to_pylist() == [9007199254740992.0, 0.5, None]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
        pytest.param(b'{"data":[{"_id":"a","date":"2024-02-05T22:00:00Z"}', id="truncated"),
        pytest.param(b"[1, 2]", id="array-of-numbers"),
        pytest.param(b"[null]", id="array-of-null"),
        pytest.param(b'[{"date":"2024-02-05T22:00:00Z"}]', id="array-record-no-id"),
        pytest.param(b'[{"_id":"a","date":"2024-02-05T22:00:00Z"}', id="array-truncated"),
        pytest.param(b'[{"_id":"a","date":"2024-02-05T22:00:00Z"}], "x": 1', id="array-then-text"),
        pytest.param(b'[{"_id":"a","date":"2024-02-05T22:00:00Z"}]}', id="array-then-brace"),
        pytest.param(b"[][]", id="two-arrays"),
        pytest.param(b'"data"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"5", id="number"),
        pytest.param(b'{"message":"ok"}', id="no-data"),
        pytest.param(b'{"data":null}', id="data-null"),
        pytest.param(b'{"data":{"a":1}}', id="data-object"),
        pytest.param(b'{"data":5}', id="data-number"),
        pytest.param(b'{"data":[1,2]}', id="records-not-objects"),
        pytest.param(b'{"data":[null]}', id="record-null"),
        pytest.param(b'{"data":[]}{"data":[]}', id="two-documents"),
        pytest.param(b'{"data":[{"date":"2024-02-05T22:00:00Z"}]}', id="no-id"),
        pytest.param(b'{"data":[{"_id":"a"}]}', id="no-date"),
        pytest.param(b'{"data":[{"_id":"a","date":"yesterday"}]}', id="bad-date"),
        pytest.param(b'{"data":[{"_id":"a","date":null}]}', id="null-date"),
        pytest.param(b'{"data":[{"_id":5,"date":"2024-02-05T22:00:00Z"}]}', id="numeric-id"),
        pytest.param(
            b'{"data":[{"_id":"a","date":"2024-02-05T22:00:00Z"},'
            b'{"_id":5,"date":"2024-02-05T22:00:01Z"}]}',
            id="numeric-id-among-texts",
        ),
        pytest.param(
            b'{"data":[{"_id":"a","date":"2024-02-05T22:00:00Z"},'
            b'{"_id":"b","date":"2024-02-05 nonsense"}]}',
            id="bad-date-among-styles",
        ),
    ],
)
def test_bodies_not_of_the_documented_shape_raise_shape_error(body: bytes) -> None:
    """Anything but a JSON object with a `data` list of records, or a bare array of records,
    is a (retryable) ShapeError."""
    with pytest.raises(ShapeError):
        parse_window(body)


def _bare(records: list[dict[str, object]]) -> bytes:
    return orjson.dumps(records)


@pytest.mark.parametrize(
    "records",
    [
        pytest.param([_record(i, temp=20.5) for i in range(3)], id="flat-small-native"),
        pytest.param([_record(i, temp=20.5) for i in range(2000)], id="flat-large-native"),
        pytest.param([_record(i, wind={"s": 2.5}) for i in range(3)], id="nested-small-objects"),
        pytest.param(
            [_record(i, wind={"s": 2.5}, cal="2024-01-01T00:00:00Z") for i in range(400)],
            id="nested-large-pyarrow-json",
        ),
        pytest.param(
            [_record(i, x=1 if i % 2 else "n/a", w={"s": i}) for i in range(400)],
            id="mixed-large-column-builder",
        ),
        pytest.param([], id="empty"),
    ],
)
def test_a_bare_array_of_records_reads_as_the_same_records_in_the_envelope(
    records: list[dict[str, object]],
) -> None:
    """A server may answer `[record, ...]` without the `{"data": ...}` envelope (issue 14):
    every reader (native, object path, pyarrow.json, column builder) reads it into the table
    the envelope gives, types included (pyarrow.json's timestamp for a time-like text)."""
    enveloped = parse_window(_body(records))
    bare = parse_window(_bare(records))
    assert bare.schema.equals(enveloped.schema)
    assert bare.equals(enveloped)
    assert bare.num_rows == len(records)
    if records and "cal" in records[0]:
        assert bare.schema.field("cal").type == UTC_MS


def test_truncated_real_window_raises_shape_error() -> None:
    """A large body cut anywhere in the middle is rejected, never read as fewer records."""
    body = _body([_record(i, temp=20.5) for i in range(500)])
    for cut in (len(body) - 1, len(body) // 2, 10):
        with pytest.raises(ShapeError):
            parse_window(body[:cut])


@pytest.mark.parametrize("field", [b'"t\xa9mp"', b'"temp"'])
def test_a_large_body_that_is_not_utf8_raises_shape_error(field: bytes) -> None:
    """Bytes that are not UTF-8, in a field name or a value, make the body invalid JSON.
    pyarrow.json let them through in a field name, and reading the schema then raised
    UnicodeDecodeError, which no layer above expects."""
    body = _body([_record(i, temp="x") for i in range(500)])
    body = body.replace(b'"temp"', field).replace(
        b'"x"', b'"\xff"' if field == b'"temp"' else b'"x"'
    )
    assert len(body) > SMALL_BODY_MAX_BYTES
    with pytest.raises(ShapeError, match="not valid JSON"):
        parse_window(body)


def test_build_array_types_follow_the_schema_rules() -> None:
    """The fallback builder types columns as harvester.records.schema would unify them."""
    assert build_array([1, None, 2]).type == pa.int64()
    assert build_array([1, 2.5]).type == pa.float64()
    assert build_array([True, None]).type == pa.bool_()
    assert build_array([None, None]).type == pa.null()
    assert build_array([[1], [2.5, 3]]).type == pa.list_(pa.float64())
    assert build_array([True, 1]).to_pylist() == ["true", "1"]


_TIME_TEXTS = st.sampled_from(
    [
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2024-01-01 10:20:30",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00.250Z",
        "2024-01-01T00:00:00+05:30",
        "2024-02-30",
        "2024-1-01",
        "20240101",
    ]
)
_SCALARS = st.one_of(json_scalars(max_int=2**64 - 1), _TIME_TEXTS)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "date"]), inner, max_size=3),
    ),
    max_leaves=6,
)
_DATES = st.sampled_from(
    ["2024-02-05T22:00:01.000Z", "2024-02-05T22:00:01Z", "2024-02-05T23:00:01+01:00"]
)


@st.composite
def _records(draw: st.DrawFn, dates: st.SearchStrategy[object] = _DATES) -> list[dict[str, object]]:
    """Records sharing field names, each field drawn with one kind of value or several."""
    fields = draw(st.lists(st.sampled_from(["x", "y", "z", "w"]), unique=True, max_size=4))
    kinds = {name: draw(st.sampled_from([_SCALARS, _VALUES, _TIME_TEXTS])) for name in fields}
    count = draw(st.integers(1, 6))
    return [
        {
            "_id": f"{i:024x}",
            "date": draw(dates),
            **{name: draw(kinds[name]) for name in fields if draw(st.booleans())},
        }
        for i in range(count)
    ]


@settings(max_examples=400, deadline=None)
@given(_records())
def test_a_body_is_read_alike_whatever_its_size(records: list[dict[str, object]]) -> None:
    """A small body (orjson + pa.array) yields the table a large one does (pyarrow.json, or
    the column builder where pyarrow.json refuses the body), so a field's type never depends
    on the size of its window; where pyarrow would read a text as a time, a small body is
    handed to pyarrow."""
    body = _body(records)
    try:
        as_large = parse._parse_large(body)
    except ShapeError:
        with pytest.raises(ShapeError):
            parse_window(body)
        return
    assert parse_window(body).equals(as_large)


def test_flat_bodies_go_to_the_native_reader_others_by_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flat records, small or large, are read natively where the reader is built; a body it
    refuses goes to the object path when small (pyarrow.json costs ~0.3 ms whatever the
    size) and to pyarrow.json when large or holding a time-like text."""
    readers: list[tuple[str, int]] = []
    real_flat, real_arrow = parse.read_flat_records, parse._read_arrow

    def flat_spy(body: bytes) -> pa.Table | None:
        table = real_flat(body)
        readers.append(("native" if table is not None else "refused", len(body)))
        return table

    def arrow_spy(body: bytes) -> pa.Table:
        readers.append(("arrow", len(body)))
        return real_arrow(body)

    monkeypatch.setattr(parse, "read_flat_records", flat_spy)
    monkeypatch.setattr(parse, "_read_arrow", arrow_spy)
    small = _body([_record(i, temp=20.5) for i in range(3)])
    large = _body([_record(i, temp=20.5) for i in range(2000)])
    nested_small = _body([_record(i, wind={"speed": 2.5}) for i in range(3)])
    nested_large = _body([_record(i, wind={"speed": 2.5}) for i in range(2000)])
    assert max(len(small), len(nested_small)) <= SMALL_BODY_MAX_BYTES < len(nested_large)
    for body in (small, large, nested_small, nested_large):
        parse_window(body)
    # Built without a C compiler, the reader refuses every body.
    large_read = (
        [("native", len(large))] if NATIVE else [("refused", len(large)), ("arrow", len(large))]
    )
    assert readers == [
        ("native" if NATIVE else "refused", len(small)),
        *large_read,
        ("refused", len(nested_small)),
        ("refused", len(nested_large)),
        ("arrow", len(nested_large)),
    ]
    readers.clear()
    parse_window(_body([_record(0, calibrated="2024-01-01T00:00:00Z")]))
    assert [reader for reader, _ in readers] == ["refused", "arrow"]


@settings(max_examples=300, deadline=None)
@given(_records())
def test_any_records_read_alike_bare_or_in_the_envelope(records: list[dict[str, object]]) -> None:
    """Whatever the records hold, a bare array of them reads as the envelope of them does,
    or both are refused."""
    try:
        enveloped = parse_window(_body(records))
    except ShapeError:
        with pytest.raises(ShapeError):
            parse_window(_bare(records))
        return
    assert parse_window(_bare(records)).equals(enveloped)


_NOT_DATES = ("yesterday", "2024-02-30", 5, None)


@settings(max_examples=300, deadline=None)
@given(_records(dates=st.one_of(_DATES, st.sampled_from(_NOT_DATES))))
def test_a_record_whose_date_is_not_an_iso_time_fails_the_window(
    records: list[dict[str, object]],
) -> None:
    """A `date` that is not an ISO-8601 time (a word, an impossible day, a number, null), in
    any record of a body of any other fields, makes the window a ShapeError; a body whose
    dates all are is read, every date a UTC millisecond timestamp."""
    body = _body(records)
    if any(record["date"] in _NOT_DATES for record in records):
        with pytest.raises(ShapeError):
            parse_window(body)
        return
    table = parse_window(body)
    assert table.schema.field("date").type == UTC_MS
    assert table.num_rows == len(records)


# -- nesting depth ----------------------------------------------------------------------------


def _nested_body(depth: int, padding: int = 0) -> bytes:
    """One record whose ``v`` holds lists nested so that the body is ``depth`` deep, plus a
    text of ``padding`` bytes (a large body)."""
    inner = depth - 3
    record = orjson.dumps(_record(0, note="x" * padding))[:-1]
    return b'{"data":[' + record + b',"v":' + b"[" * inner + b"]" * inner + b"}]}"


@pytest.mark.parametrize("padding", [0, SMALL_BODY_MAX_BYTES], ids=["small", "large"])
@pytest.mark.parametrize("native", [True, False], ids=["native", "pure-python"])
def test_nesting_up_to_max_depth_is_read_beyond_it_is_shape_error(
    padding: int, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body exactly MAX_DEPTH deep is read (small or large, with the C scan or its Python
    fallback); one level more is a ShapeError."""
    if not native:
        monkeypatch.setattr(native_reader, "_flatjson", None)
    elif not NATIVE:
        pytest.skip("built without a C compiler")
    deepest = parse_window(_nested_body(MAX_DEPTH, padding))
    value_type = deepest.schema.field("v").type
    for _ in range(MAX_DEPTH - 4):
        value_type = value_type.value_type
    assert value_type == pa.list_(pa.null())
    with pytest.raises(ShapeError, match=f"more than {MAX_DEPTH} deep"):
        parse_window(_nested_body(MAX_DEPTH + 1, padding))


def test_brackets_in_texts_do_not_count_as_nesting() -> None:
    """Brackets inside texts, escaped quotes included, are not nesting: such a body (which
    the native reader refuses for its escapes) is read whole."""
    text = '\\"[{' * 5000
    body = b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","t":"' + text.encode() + b'"}]}'
    table = parse_window(body)
    assert table.column("t")[0].as_py() == '"[{' * 5000


def test_bodies_that_crash_pyarrow_json_are_shape_errors_not_crashes() -> None:
    """A records body of 100,000 '[' (or '{"a":' repeated), and a large body whose first
    document is null (found by fuzz/), kill the process inside pyarrow.json (SIGSEGV): each
    is a ShapeError, small or large, and the process lives (run in a child so that a crash
    is reported, not suffered). So is a large bare array that, read inside the envelope,
    would be followed by null."""
    script = """
import sys
from harvester.errors import ShapeError
from harvester.records.parse import parse_window
deep = 100_000
bodies = [
    b'{"data":[' + b"[" * deep,
    b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":' + b"[" * deep + b"]" * deep + b"}]}",
    b'{"data":[{"_id":"a","v":' + b'{"a":' * deep + b"1" + b"}" * deep + b"}]}",
    b"[" * 100,
    b"null" + b" " * 20_000,
    b" \\n null" + b" " * 20_000,
    b'null{"data":[{]}' + b" " * 20_000,
    b"[null]" + b" " * 20_000,
    b'[{"_id":"a","date":"2024-01-01T00:00:00Z","v":[1]}]}null' + b" " * 20_000,
    b"[]}null{" + b" " * 20_000,
]
for body in bodies:
    try:
        parse_window(body)
    except ShapeError:
        continue
    sys.exit(f"read a body {len(body)} bytes long")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
