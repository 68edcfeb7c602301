"""Tests of harvester.records.native_reader: the C reader of flat records bodies.

The claim under test: wherever the native reader accepts a body, the table is the one the
pyarrow.json path gives; wherever that path refuses a body, so does the native reader; and no
body, however broken, makes it read out of bounds or crash.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import sysconfig

import orjson
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from harvester.errors import ShapeError
from harvester.records import native_reader, parse
from harvester.records.limits import (
    INLINE_PARSE_MAX_BYTES,
    MAX_FIELDS,
    RELEASE_GIL_FROM_BYTES,
    SMALL_BODY_MAX_BYTES,
)
from harvester.records.native_reader import NATIVE, _flatjson, read_flat_records
from tests.support.native import read_validated
from tests.support.strategies import json_scalars

needs_native = pytest.mark.skipif(not NATIVE, reason="built without a C compiler")


def _assert_read_alike(body: bytes) -> pa.Table | None:
    """The native reader refuses ``body`` or reads it as the pyarrow.json path does."""
    native = read_validated(body)
    try:
        expected = parse._parse_large(body)
    except ShapeError:
        if native is not None:
            with pytest.raises(ShapeError):
                parse._normalise(native)
        return native
    if native is not None:
        got = parse._normalise(native)
        assert got.schema.equals(expected.schema), (got.schema, expected.schema)
        assert got.equals(expected)
    return native


def _dumps(records: list[dict[str, object]], indent: int | None = None) -> bytes:
    """A body as the standard library writes it: integers of any size, UTF-8 unescaped."""
    return json.dumps({"data": records}, indent=indent, ensure_ascii=False).encode()


_TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters='"\\', min_codepoint=0x20), max_size=8
)
_NUMBERS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**53), 2**53).map(lambda n: n / 1000),
)
_FLAT_KIND = st.sampled_from(["number", "text", "bool", "null"])
_DATES = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.UTC)
)


def _date_text(moment: dt.datetime, form: int, offset_minutes: int) -> str:
    """``moment`` as YYYY-MM-DDTHH:MM:SS then Z (form 0), .mmmZ (1) or ±HH:MM (2)."""
    local = moment + dt.timedelta(minutes=offset_minutes if form == 2 else 0)
    text = f"{local.year:04d}-{local:%m-%dT%H:%M:%S}"
    if form == 0:
        return text + "Z"
    if form == 1:
        return text + f".{moment.microsecond // 1000:03d}Z"
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return text + f"{sign}{hours:02d}:{minutes:02d}"


@st.composite
def flat_records(draw: st.DrawFn) -> list[dict[str, object]]:
    """Records the native reader is meant to accept: numbers, texts, booleans and nulls,
    fields missing here and there, one kind per field, and a plain ISO-8601 ``date``."""
    names = draw(st.lists(st.sampled_from(["x", "y", "z", "ünï", ""]), unique=True, max_size=4))
    kinds = {name: draw(_FLAT_KIND) for name in names}
    values = {"number": _NUMBERS, "text": _TEXT, "bool": st.booleans(), "null": st.none()}
    records = []
    for i in range(draw(st.integers(1, 8))):
        moment = draw(_DATES)
        form = draw(st.integers(0, 2))
        offset = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
        record: dict[str, object] = {"_id": f"{i:024x}"}
        record["date"] = _date_text(moment, form, offset)
        for name in draw(st.permutations(names)):
            if draw(st.integers(0, 3)):
                record[name] = draw(st.one_of(values[kinds[name]], st.none()))
        records.append(record)
    return records


@needs_native
@settings(max_examples=300, deadline=None)
@given(flat_records(), st.booleans())
@example([{"_id": "a", "date": "2024-02-05T23:00:01+01:00", "x": 2**53 + 1, "y": 0.5}], False)
@example([{"_id": "a", "date": "2024-02-05T22:00:01.250Z", "x": -0.0}, {"_id": "b"}], True)
def test_flat_records_are_read_natively_as_pyarrow_json_reads_them(
    records: list[dict[str, object]], spaced: bool
) -> None:
    """Flat records are accepted, with or without whitespace between tokens, and typed,
    valued and ordered as the pyarrow.json path types them; a bare array of them (no
    envelope) reads as the same table."""
    indent = 1 if spaced else None
    body = _dumps(records, indent=indent)
    native = _assert_read_alike(body)
    bare = _assert_read_alike(json.dumps(records, indent=indent, ensure_ascii=False).encode())
    assert (bare is None) == (native is None)
    if native is not None and bare is not None:
        assert bare.equals(native)
    time_like = any(
        parse._TIME_TEXT.match(b'"' + value.encode())
        for record in records
        for name, value in record.items()
        if name != "date" and isinstance(value, str)
    )
    # pyarrow.json may read a time-like text as a time: only that is left to it.
    assert (native is None) == time_like


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["2024-01-01", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00.123456Z"]),
)
_ANY_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "date"]), inner)
    ),
    max_leaves=5,
)


@needs_native
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["_id", "date", "x", "y"]),
            st.one_of(_ANY_VALUES, _DATES.map(lambda d: _date_text(d, 1, 0))),
            max_size=4,
        ),
        max_size=5,
    )
)
def test_any_records_are_refused_or_read_as_pyarrow_json_reads_them(
    records: list[dict[str, object]],
) -> None:
    """Whatever the records hold (nested values, bools, mixed kinds, bad dates, huge
    integers), the native reader refuses the body or reads it as the pyarrow.json path."""
    _assert_read_alike(_dumps(records))


_GOOD_BODY = orjson.dumps(
    {
        "data": [
            {"_id": "a1", "id": "1041", "date": "2024-02-05T22:00:01.000Z", "t": 20.5, "n": 3},
            {"_id": "a2", "id": "1041", "date": "2024-02-05T22:00:02.000Z", "t": None, "é": "ü"},
            {"_id": "a3", "id": "1041", "date": "2024-02-05T22:00:03.000Z", "alarm": False},
        ]
    }
)


@needs_native
@settings(max_examples=400, deadline=None)
@given(st.data())
def test_broken_bodies_are_refused_or_read_alike_never_crash(data: st.DataObject) -> None:
    """A body cut short, or with bytes replaced or inserted anywhere, is refused or read as
    the pyarrow.json path reads it; the reader never reads beyond the body."""
    body = bytearray(_GOOD_BODY)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["cut", "replace", "insert"]))
        at = data.draw(st.integers(0, max(len(body) - 1, 0)))
        byte = data.draw(st.sampled_from(list(b'{}[]",:.-+eE0 9\\\x00\xc3\xff\ttnul')))
        if action == "cut":
            del body[at:]
        elif action == "replace" and body:
            body[at] = byte
        else:
            body.insert(at, byte)
    _assert_read_alike(bytes(body))


@needs_native
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_reads_back_bit_for_bit(value: float) -> None:
    """orjson's shortest text of any finite float reads back as that very float."""
    body = orjson.dumps({"data": [{"_id": "a", "date": "2024-01-01T00:00:00Z", "v": value}]})
    table = read_validated(body)
    assert table is not None
    assert table.column("v").type == pa.float64()
    assert table.column("v")[0].as_py().hex() == value.hex()


@needs_native
@given(
    st.from_regex(r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)
)
def test_number_texts_read_as_correctly_rounded_doubles_or_are_refused(text: str) -> None:
    """Any JSON number text is read as Python reads it (correctly rounded), as an int64 when
    it has neither fraction nor exponent, or refused (beyond int64, beyond a double)."""
    body = b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":' + text.encode() + b"}]}"
    table = read_validated(body)
    is_int = not any(c in text for c in ".eE")
    if table is None:
        mantissa_nonzero = any(c in "123456789" for c in text.lower().split("e")[0])
        if is_int:
            assert not -(2**63) <= int(text) < 2**63
        else:
            assert float(text) in (float("inf"), -float("inf")) or (
                float(text) == 0 and mantissa_nonzero
            )
        return
    value = table.column("v")[0].as_py()
    if not is_int:
        assert isinstance(value, float)
        assert value.hex() == float(text).hex()
    else:
        assert value == int(text)


@needs_native
@pytest.mark.parametrize(
    "body",
    [
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":true},{"_id":"b","v":1}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":0.5},{"_id":"b","v":false}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":tru}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":{"w":1}}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":[1]}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":"a\\"b"}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":1,"v":2}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":1},{"_id":"b","v":"1"}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":"2024-01-01"}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01 00:00:00"}]}',
        b'{"data":[{"_id":"a","date":"2024-02-30T00:00:00Z"}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z"}],"next":null}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":18446744073709551616}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":1e999}]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z"}]} {}',
        b'{"data":[{}, {}]}',
        b'{"data":[null]}',
        b'{"data":[{"_id":"a","date":"2024-01-01T00:00:00Z","v":01}]}',
        b'{"data":[{"_id":"a\xff","date":"2024-01-01T00:00:00Z"}]}',
        b'{"data":[{"_id":"a\xed\xa0\x80","date":"2024-01-01T00:00:00Z"}]}',
        b'[{"_id":"a","date":"2024-01-01T00:00:00Z"}],"next":null',
        b'[{"_id":"a","date":"2024-01-01T00:00:00Z"}]}',
        b'[{"_id":"a","date":"2024-01-01T00:00:00Z"}',
        b"[null]",
        b'{[{"_id":"a","date":"2024-01-01T00:00:00Z"}]}',
    ],
)
def test_bodies_beyond_flat_records_are_refused(body: bytes) -> None:
    """Booleans beside numbers, nested values, escapes, repeated keys, mixed kinds,
    time-like texts beyond "date", dates not in the plain form or not on the calendar, other
    top-level fields, out-of-range numbers, trailing documents, empty records, invalid
    UTF-8, and a bare array followed by anything or cut short are left to pyarrow.json,
    which knows how to type or refuse them."""
    assert read_validated(body) is None


@needs_native
def test_a_window_is_typed_like_pyarrow_json() -> None:
    """A realistic window: every field, type, null and row as the pyarrow.json path has it."""
    records = [
        {
            "_id": f"{i:024x}",
            "id": "1041",
            "date": f"2024-02-05T22:{i // 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            "pid1_PPB_Calc": round(i * 0.731, 3),
            "ws_direction": i % 360,
            "batt_voltage": None if i % 7 == 0 else 12.302,
            "note": "ok" if i % 3 else None,
        }
        for i in range(2000)
    ]
    body = orjson.dumps({"data": records})
    table = _assert_read_alike(body)
    assert table is not None
    assert table.num_rows == 2000
    assert table.column("batt_voltage").null_count == 286


@needs_native
@pytest.mark.parametrize("body", [b'{ "data" : [ ] }', b" [ ] "])
def test_empty_data_is_a_table_of_no_rows(body: bytes) -> None:
    """An empty ``data`` list, or an empty bare array, reads as the pyarrow.json path reads
    it: no rows, no fields."""
    table = read_validated(body)
    assert table is not None
    assert table.num_rows == 0
    assert table.num_columns == 0


def test_without_the_native_reader_every_body_goes_to_pyarrow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An install without a C compiler still parses every body (through pyarrow.json)."""
    monkeypatch.setattr(native_reader, "_flatjson", None)
    assert read_flat_records(_GOOD_BODY) is None
    assert parse.parse_window(_GOOD_BODY + b" " * SMALL_BODY_MAX_BYTES).num_rows == 3


def test_the_native_reader_is_built_where_a_c_compiler_is() -> None:
    """``make install`` builds the extension wherever the machine has a C compiler, so the
    fast path is not silently lost to a build problem."""
    compiler = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) on this machine")
    assert NATIVE


def _shape(value: object) -> tuple[int, int, set[str]]:
    """How deep arrays and objects nest in a decoded JSON value, how many objects it holds
    and their key names."""
    items: list[object] = []
    objects, names = 0, set()
    if isinstance(value, dict):
        objects, names, items = 1, set(value), list(value.values())
    elif isinstance(value, list):
        items = value
    else:
        return 0, 0, set()
    depth = 0
    for item in items:
        inner_depth, inner_objects, inner_names = _shape(item)
        depth = max(depth, inner_depth)
        objects += inner_objects
        names |= inner_names
    return depth + 1, objects, names


_JSON = st.recursive(
    st.one_of(json_scalars(), st.sampled_from(['[{"', "\\", '"]}', "\\\\", 'a":'])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "[", '"{', ":", "\\"]), inner),
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.integers(0, 8), st.integers(0, 4), st.data())
def test_scan_shape_counts_outside_texts_in_c_and_python_alike(
    document: object, max_depth: int, max_names: int, data: st.DataObject
) -> None:
    """For a JSON document the scan gives the decoded value's depth, objects and distinct key
    names (brackets, colons and escaped quotes in texts do not count); for the document
    mangled at random bytes, and with limits that stop the scan early, the C scan and its
    pure-Python fallback agree."""
    body = json.dumps(document).encode()
    depth, objects, names = _shape(document)
    assert native_reader.scan_shape(body, 100, 100) == (depth, objects, len(names))
    mangled = bytearray(body)
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.integers(0, len(mangled)))
        mangled[at:at] = data.draw(st.sampled_from([b'"', b"\\", b"[", b"}", b":", b"\xff"]))
    shapes = []
    for native in (native_reader._flatjson, None):
        if native is None and not NATIVE:
            continue
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(native_reader, "_flatjson", native)
            shapes.append(native_reader.scan_shape(bytes(mangled), max_depth, max_names))
    assert len(set(shapes)) == 1, shapes


# -- memory bounded by what the body holds ----------------------------------------------------


def _wide_record(fields: int, text: str = "ok") -> dict[str, object]:
    """One record of ``fields`` fields beyond ``_id`` and ``date``, of every kind in turn."""
    record: dict[str, object] = {"_id": "a", "date": "2024-01-01T00:00:00Z"}
    kinds: list[object] = [1, 0.5, text, True, None]
    for k in range(fields):
        record[f"f{k}"] = kinds[k % len(kinds)]
    return record


_BRACES_BODY = _dumps([_wide_record(300, "{" * 500_000)])


@needs_native
def test_one_wide_record_with_a_text_full_of_braces_is_read_whole() -> None:
    """One record of 300 fields whose text holds 500,000 '{' (a count the reader once sized
    every column by) reads natively, each value as the pyarrow.json path reads it."""
    table = _assert_read_alike(_BRACES_BODY)
    assert table is not None
    assert (table.num_rows, table.num_columns) == (1, 302)
    assert table.column("f2")[0].as_py() == "{" * 500_000


@needs_native
def test_memory_follows_the_records_read_not_the_braces_in_texts() -> None:
    """Reading that body (with glibc tuned as the console script tunes it, so that blocks
    come from the heap) raises the peak RSS of a process that has read the same record with
    no '{' in its text by less than 16 MB: the columns hold the rows read, not one per '{'
    (which took 108 MB more)."""
    script = """
import resource
from harvester.entry import tune_process
tune_process()
from harvester.records.native_reader import read_flat_records
from tests.test_native_reader import _BRACES_BODY
plain = _BRACES_BODY.replace(b"{" * 500_000, b"x" * 500_000)
for body in (plain, plain, None, _BRACES_BODY, _BRACES_BODY):
    if body is None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        assert read_flat_records(body).num_rows == 1
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=True
    )
    grown_kib = int(done.stdout.split()[-1])
    assert grown_kib < 16 * 1024, f"peak RSS grew by {grown_kib} KiB"


@needs_native
def test_more_than_32_fields_appearing_row_after_row_read_as_pyarrow_json_reads_them() -> None:
    """40 fields of every kind, each first seen at a later row (so columns are created after
    the rows have been regrown several times), over 3,000 rows: every column, null and value
    as the pyarrow.json path has them."""
    records = []
    for i in range(3000):
        record = _wide_record(40)
        record["_id"] = f"{i:024x}"
        for k in range(40):
            if i < k * 70 or (i + k) % 11 == 0:
                del record[f"f{k}"]
        records.append(record)
    table = _assert_read_alike(_dumps(records))
    assert table is not None
    assert (table.num_rows, table.num_columns) == (3000, 42)


@needs_native
def test_the_most_fields_a_body_may_hold_is_read_one_more_is_a_shape_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records of MAX_FIELDS fields are read natively (as pyarrow.json reads them); one field
    more and the native reader refuses the body, and parse_window refuses it too, with or
    without the native reader."""
    widest = _dumps([_wide_record(MAX_FIELDS - 2), _wide_record(MAX_FIELDS - 2)])
    table = _assert_read_alike(widest)
    assert table is not None
    assert table.num_columns == MAX_FIELDS
    too_wide = _dumps([_wide_record(MAX_FIELDS - 1)])
    assert read_validated(too_wide) is None
    with pytest.raises(ShapeError, match=f"more than {MAX_FIELDS} distinct field names"):
        parse.parse_window(too_wide)
    monkeypatch.setattr(native_reader, "_flatjson", None)
    assert parse.parse_window(widest).num_columns == MAX_FIELDS
    with pytest.raises(ShapeError, match=f"more than {MAX_FIELDS} distinct field names"):
        parse.parse_window(too_wide)


@needs_native
@pytest.mark.parametrize("fields", [2, 7, 40])
def test_records_times_fields_beyond_the_budget_are_refused_at_the_limit(fields: int) -> None:
    """The native reader reads a body whose (records + 1) x (fields + 1) equals its budget
    and refuses one whose count is a single cell beyond it, whatever the rows' order of
    growth; the cells are counted as parse.py's shape check counts them."""
    records = [_wide_record(fields - 2) for _ in range(300)]
    body = _dumps(records)
    cells = (300 + 1) * (fields + 1)
    release = RELEASE_GIL_FROM_BYTES
    assert _flatjson.scan_shape(body, 64, 10_000, release)[1:] == (301, fields + 1)
    assert _flatjson.read_columns(body, MAX_FIELDS, cells, release) is not None
    assert _flatjson.read_columns(body, MAX_FIELDS, cells - 1, release) is None


@pytest.mark.parametrize("native", [True, False], ids=["native", "pure-python"])
def test_a_body_whose_records_each_bring_new_fields_is_refused_within_the_budget(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 records of a new field each (a 100 KB body whose table would hold 4 million
    cells, 2 new fields a record 8 million): a ShapeError naming the budget, from every
    path; the same records split into windows of 40 are each read, with their own fields."""
    if not native:
        monkeypatch.setattr(native_reader, "_flatjson", None)
    elif not NATIVE:
        pytest.skip("built without a C compiler")
    records = [
        {"_id": f"{i}", "date": "2024-01-01T00:00:00Z", f"k{i}": i, f"n{i}": {"a": 1}}
        for i in range(2000)
    ]
    with pytest.raises(ShapeError, match="exceed the budget of 4,000,000 values"):
        parse.parse_window(_dumps(records))
    tables = [parse.parse_window(_dumps(records[i : i + 40])) for i in range(0, 2000, 40)]
    assert [t.num_columns for t in tables] == [2 + 40 * 2] * 50


def test_no_body_read_on_the_event_loop_lets_go_of_the_gil() -> None:
    """The pool reads bodies up to INLINE_PARSE_MAX_BYTES on the event loop, and the native
    reader keeps the GIL below RELEASE_GIL_FROM_BYTES: the loop never hands the GIL over
    mid-read (getting it back can cost a whole switch interval)."""
    assert INLINE_PARSE_MAX_BYTES < RELEASE_GIL_FROM_BYTES


@needs_native
def test_a_body_reads_alike_whether_the_gil_is_held_or_let_go_of() -> None:
    """The size from which the reader lets go of the GIL is the caller's: reading and
    scanning give the same answer either way, for a body read and for one refused."""
    body = _dumps([_wide_record(5) for _ in range(200)])
    for candidate in (body, body[:-1], body.replace(b'"k0"', b'"k\\u0030"')):
        held = _flatjson.read_columns(candidate, MAX_FIELDS, 1_000_000, len(candidate) + 1)
        let_go = _flatjson.read_columns(candidate, MAX_FIELDS, 1_000_000, 0)
        assert held == let_go
        assert _flatjson.scan_shape(candidate, 64, 100, len(candidate) + 1) == (
            _flatjson.scan_shape(candidate, 64, 100, 0)
        )
    assert _flatjson.read_columns(body, MAX_FIELDS, 1_000_000, 0) is not None
