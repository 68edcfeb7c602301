"""A records response body → one Arrow table, one row per record.

A body of flat records (numbers, texts, booleans, nulls), nearly every body, is read by
``native_reader``, which types it as pyarrow.json would at a quarter of its cost and
at half the cost of the object path below for a small body. Any other large body goes to
``pyarrow.json`` as a single JSON row whose ``data`` list is flattened: the parsing runs in
C++ without the GIL and no Python object is made per record. pyarrow.json costs about 0.3 ms
however small the body, several times what orjson and ``pa.array`` take for a few dozen
records, so bodies up to ``SMALL_BODY_MAX_BYTES`` take the object path instead. Both infer
the same types, except that pyarrow.json reads ISO-8601 texts as timestamps: a small body
holding such a text anywhere but in ``date`` goes to pyarrow.json too, so a field never
changes type with the size of its window. ``pyarrow.json`` refuses a few legitimate shapes (a
field that is a number in one record and a string or an object in another, ``true`` beside
``1``, a repeated key); those bodies go through orjson and a column builder that applies the
type rules of ``harvester.records.schema``. Either way, every source field keeps its source name and
``date`` becomes ``timestamp[ms, UTC]``. A bare array of records, ``[record, ...]`` without the
envelope (issue 14), is read by every reader as those records in the envelope.

Every window is read whole by ``parse_window``, on the event loop when it is small
(``limits``). Small flat bodies used to be only checked there, and typed a device-day at a
time in the writer's thread (``decode_window``, ``type_windows``, older than the native
reader); issue 12 removed that path, which no longer paid. With the native reader it never
ran on the simulator's bodies (all read natively, 70 to 140 µs a window); on small flat
bodies the reader refuses (an escaped text, a text among numbers) it took 0.25 to 0.45 ms a
window off the loop for 0.1 to 0.6 ms more CPU. Without the native reader it moved about a
third of a window's work to the writer for about the same CPU, and a harvest of 2,579 windows
of 5 KiB took as long either way (medians of 10 interleaved runs: CPU 6.1 s and 6.2 s, pool
17.2 s and 17.5 s, event-loop lag p50 40 ms and 37 ms).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Sequence
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.json as pa_json

from harvester.errors import MalformedReplyError, ShapeError
from harvester.records.limits import SMALL_BODY_MAX_BYTES
from harvester.records.native_reader import check_shape, read_flat_records
from harvester.records.schema import TIMESTAMP, coerce_array, json_text

ID_FIELD: Final = "_id"
DATE_FIELD: Final = "date"
_MIN_BLOCK: Final = 1 << 20
# Every text pyarrow.json may read as a timestamp starts YYYY-MM-DD. When a body holds more
# such texts than records' own "date": values, or more of those than records (a nested
# "date"), it goes to pyarrow.json. Erring towards pyarrow only costs time.
_TIME_TEXT: Final = re.compile(rb'"\d\d\d\d-\d\d-\d\d')
_DATE_TIME_TEXT: Final = re.compile(rb'"date":"\d\d\d\d-\d\d-\d\d')
_OBJECT_START: Final = re.compile(rb"[ \t\n\r]*\{")
_ARRAY_START: Final = re.compile(rb"[ \t\n\r]*\[")


class _ArrowReadsTime(Exception):
    """A small body holds a text pyarrow.json would read as a timestamp."""


def parse_window(body: bytes) -> pa.Table:
    """The records of a ``{"data": [record, ...]}`` body, in the server's order; a bare array
    ``[record, ...]`` is the same records (issue 14: a server that leaves out the envelope
    means nothing else by it), read as if it were in the envelope, by every reader.

    Raises ``ShapeError`` when the body is not JSON (or truncated), is beyond the bounds of
    ``native_reader.check_shape`` (nesting, fields, cells), is neither an object nor an array,
    has no ``data`` list, or holds a record that is not an object or lacks ``_id`` or
    ``date``.
    """
    native = read_flat_records(body)
    if native is not None:
        return _normalise(native)
    check_shape(body)
    if len(body) <= SMALL_BODY_MAX_BYTES:
        try:
            return _normalise(_table_of(_small_records(body)))
        except _ArrowReadsTime:
            pass
    return _parse_large(body)


def _parse_large(body: bytes) -> pa.Table:
    """A body the native reader refused: pyarrow.json, or the column builder."""
    try:
        records = _read_arrow(body)
    except pa.ArrowException:
        records = _table_of(_records_of(_loads(body)), like_arrow=False)
    return _normalise(records)


def _read_arrow(body: bytes) -> pa.Table:
    try:
        # pyarrow.json lets bytes that are not UTF-8 through in field names, where reading
        # the schema later raises UnicodeDecodeError; the object path refuses them as JSON.
        body.decode()
    except UnicodeDecodeError:
        raise pa.ArrowInvalid("the body is not UTF-8") from None
    # pyarrow.json (26.0) dies of SIGSEGV when the first document is null (found by
    # fuzz/): it may only see a body that opens an object, all it could read anyway. A bare
    # array is read inside the envelope (a copy: 0.13 ms for 2.5 MB, where pyarrow.json
    # takes ~20 ms), so that it opens an object and every value is typed as in the envelope.
    if _ARRAY_START.match(body):
        wrapper = _read_json(b'{"data":' + body + b"}")
        if wrapper.num_columns != 1:
            # Text after the array (`[...], "x": 1`) read as more fields of the envelope:
            # the body itself is not one JSON value, and the strict parser says so.
            raise pa.ArrowInvalid("not exactly one JSON value")
    elif _OBJECT_START.match(body):
        wrapper = _read_json(body)
    else:
        raise pa.ArrowInvalid("the body starts with neither an object nor an array")
    index = wrapper.schema.get_field_index("data")
    if index < 0:
        raise MalformedReplyError("the response has no 'data' field")
    data = wrapper.column(index).chunk(0)
    if pa.types.is_null(data.type):
        raise MalformedReplyError("'data' is not a list")
    if not pa.types.is_list(data.type):
        raise MalformedReplyError(f"'data' is not a list but {data.type}")
    items = data.flatten()
    if pa.types.is_null(items.type) and len(items) == 0:
        return pa.table({})
    if not pa.types.is_struct(items.type) or items.null_count:
        raise MalformedReplyError("a record is not an object")
    # pyarrow.json drops the nulls a list starts with (`[null, 1]`) yet keeps their offsets;
    # the structural check (microseconds, no scan of the values) catches it, and such a body
    # goes to the object path.
    items.validate()
    return pa.Table.from_struct_array(items)


def _read_json(body: bytes) -> pa.Table:
    """``body``, a JSON object, as pyarrow.json reads it: one row, or ArrowInvalid."""
    options = pa_json.ReadOptions(block_size=max(len(body) + 1, _MIN_BLOCK), use_threads=False)
    # The streaming reader parses in the calling thread; read_json hands the block to
    # Arrow's I/O thread and waits, which costs a thread wake-up per window (~1 ms of wall
    # time when the cores are busy, more than parsing a small window takes).
    wrapper = pa_json.open_json(pa.BufferReader(body), read_options=options).read_all()
    if wrapper.num_rows != 1:
        # Several JSON documents one after the other: let the strict parser reject them.
        raise pa.ArrowInvalid("not exactly one JSON document")
    return wrapper


def _small_records(body: bytes) -> list[dict[str, Any]]:
    """The records of a small body; ``_ArrowReadsTime`` if it holds a time-like text beyond
    the records' own dates (pyarrow.json would type that text as a timestamp)."""
    records = _records_of(_loads(body))
    dates = len(_DATE_TIME_TEXT.findall(body))
    if dates > len(records) or len(_TIME_TEXT.findall(body)) > dates:
        raise _ArrowReadsTime
    return records


def _records_of(document: object) -> list[dict[str, Any]]:
    if isinstance(document, list):
        records = document
    elif isinstance(document, dict):
        if "data" not in document:
            raise MalformedReplyError("the response has no 'data' field")
        records = document["data"]
        if not isinstance(records, list):
            raise MalformedReplyError(f"'data' is a JSON {type(records).__name__}, not a list")
    else:
        raise MalformedReplyError(
            f"the response is a JSON {type(document).__name__}, not an object or an array"
        )
    if not all(isinstance(record, dict) for record in records):
        raise MalformedReplyError("a record is not an object")
    # An ObjectId is a text: a number among texts would be stored as its digits, and one
    # record's `5` and another's `"5"` would then pass for one record.
    if any(not isinstance(record.get(ID_FIELD, ""), str | None) for record in records):
        raise MalformedReplyError(f"a record's '{ID_FIELD}' is not a text")
    return records


def _table_of(records: list[dict[str, Any]], *, like_arrow: bool = True) -> pa.Table:
    """The records typed as pyarrow.json types them (``like_arrow``), or where ``pa.array``
    refuses the values (or not ``like_arrow``), column by column by ``build_array``."""
    if not records:
        return pa.table({})
    if like_arrow and (typed := _arrow_typed(records)) is not None:
        return typed
    names = list(dict.fromkeys(name for record in records for name in record))
    columns = [build_array([record.get(name) for record in records]) for name in names]
    return pa.Table.from_arrays(columns, names=names)


def _arrow_typed(records: list[dict[str, Any]]) -> pa.Table | None:
    """The records typed by ``pa.array``, which types them as pyarrow.json does, or None
    where their rules part: kinds it will not mix in one field, and a bool beside a float,
    which ``pa.array`` reads as a number where pyarrow.json refuses the body."""
    try:
        table = pa.Table.from_struct_array(pa.array(records))
    except (pa.ArrowException, OverflowError):
        return None
    for field in table.schema:
        if _holds_float(field.type) and _bool_read_as_float(
            [record.get(field.name) for record in records], field.type
        ):
            return None
    return table


def _holds_float(t: pa.DataType) -> bool:
    if pa.types.is_floating(t):
        return True
    if pa.types.is_struct(t):
        return any(_holds_float(field.type) for field in t)
    return bool(pa.types.is_list(t) and _holds_float(t.value_type))


def _bool_read_as_float(values: Sequence[object], t: pa.DataType) -> bool:
    if pa.types.is_floating(t):
        return any(isinstance(value, bool) for value in values)
    if pa.types.is_struct(t):
        objects = [value for value in values if isinstance(value, dict)]
        return any(
            _bool_read_as_float([o.get(field.name) for o in objects], field.type)
            for field in t
            if _holds_float(field.type)
        )
    if pa.types.is_list(t):
        items = [item for value in values if isinstance(value, list) for item in value]
        return _bool_read_as_float(items, t.value_type)
    return False


def _loads(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as orjson_error:
        # orjson stops at integers beyond 64 bits, which are valid JSON.
        try:
            return json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise ShapeError(f"the response is not valid JSON: {orjson_error}") from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def build_array(values: Sequence[object]) -> pa.Array:
    """An Arrow array of decoded JSON values, typed by the rules of ``harvester.records.schema``."""
    kinds = {type(value) for value in values if value is not None}
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds == {int}:
        try:
            return pa.array(values, pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            return _build_floats(values)
    if kinds <= {int, float}:
        return _build_floats(values)
    if kinds == {str}:
        return pa.array(values, pa.string())
    if kinds == {dict}:
        return _build_struct(values)
    if kinds == {list}:
        return _build_list(values)
    return pa.array([json_text(value) for value in values], pa.string())


def _build_floats(values: Sequence[object]) -> pa.Array:
    """float64, rounding integers beyond 2**53 as JSON parsers do (``pa.array`` refuses them);
    text for an integer beyond the range of a float."""
    try:
        return pa.array(
            [float(v) if isinstance(v, int | float) else None for v in values], pa.float64()
        )
    except OverflowError:
        return pa.array([None if v is None else json_text(v) for v in values], pa.string())


def _build_struct(values: Sequence[object]) -> pa.Array:
    objects = [value if isinstance(value, dict) else None for value in values]
    names = list(dict.fromkeys(name for obj in objects if obj is not None for name in obj))
    children = [
        build_array([None if o is None else o.get(name) for o in objects]) for name in names
    ]
    mask = pa.array([obj is None for obj in objects], pa.bool_())
    return pa.StructArray.from_arrays(children, names=names, mask=mask)


def _build_list(values: Sequence[object]) -> pa.Array:
    offsets = [0]
    items: list[object] = []
    for value in values:
        if isinstance(value, list):
            items.extend(value)
        offsets.append(len(items))
    mask = pa.array([value is None for value in values], pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), build_array(items), mask=mask)


def _normalise(records: pa.Table) -> pa.Table:
    """Checks ``_id`` and ``date``, makes every timestamp ``timestamp[ms, UTC]`` and turns
    empty objects (``struct<>``, which Parquet cannot store) into nulls."""
    if records.num_rows == 0:
        return records
    schema = records.schema
    for name in (ID_FIELD, DATE_FIELD):
        index = schema.get_field_index(name)
        if index < 0:
            raise MalformedReplyError(f"a record has no '{name}' field")
        if records.column(index).null_count:
            raise MalformedReplyError(f"a record has a null '{name}'")
    if not pa.types.is_string(schema.field(ID_FIELD).type):
        raise MalformedReplyError(f"'{ID_FIELD}' is {schema.field(ID_FIELD).type}, not a string")
    date_type = schema.field(DATE_FIELD).type
    if not (pa.types.is_string(date_type) or pa.types.is_timestamp(date_type)):
        raise MalformedReplyError(f"'{DATE_FIELD}' is {date_type}, not an ISO-8601 string")
    target, changed = _storable_schema(schema)
    for index in changed:
        field, column = target.field(index), records.column(index)
        if field.name == DATE_FIELD and pa.types.is_string(column.type):
            records = records.set_column(index, field, _parse_dates(column))
            continue
        try:
            converted = [coerce_array(c, field.type) for c in column.chunks]
        except pa.ArrowInvalid as exc:
            raise MalformedReplyError(
                f"field '{field.name}' cannot become {field.type}: {exc}"
            ) from None
        records = records.set_column(index, field, pa.chunked_array(converted, field.type))
    return records


@functools.lru_cache(maxsize=256)
def _storable_schema(schema: pa.Schema) -> tuple[pa.Schema, tuple[int, ...]]:
    """The schema a parsed table is stored with, and the indexes of the columns to convert.

    Cached: the windows of a device type nearly always share one parsed schema, and working
    the target out field by field costs more than parsing a small window.
    """
    fields = []
    changed = []
    for index, field in enumerate(schema):
        target = TIMESTAMP if field.name == DATE_FIELD else _storable(field.type)
        if not target.equals(field.type):
            changed.append(index)
        fields.append(pa.field(field.name, target))
    return pa.schema(fields), tuple(changed)


def _parse_dates(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO-8601 texts → ``timestamp[ms, UTC]``; texts without a zone offset are read as UTC,
    digits beyond the millisecond are dropped.

    Arrow's casts read a column of one style; a column mixing styles (zoned and unzoned) or
    finer than the millisecond is read value by value.
    """
    try:
        return column.cast(TIMESTAMP, safe=False)
    except pa.ArrowInvalid:
        pass
    try:
        return column.cast(pa.timestamp("ms"), safe=False).cast(TIMESTAMP)
    except pa.ArrowInvalid:
        pass
    millis = [_iso_millis(text) for text in column.to_pylist()]
    return pa.chunked_array([pa.array(millis, pa.int64()).cast(TIMESTAMP)])


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MILLISECOND: Final = dt.timedelta(milliseconds=1)


def _iso_millis(text: str) -> int:
    """Milliseconds since the epoch of one ISO-8601 date and time, UTC where unzoned."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise MalformedReplyError(
            f"'{DATE_FIELD}' holds a value that is not an ISO-8601 time: {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # Floor division truncates to the millisecond as Arrow's unsafe cast does.
    return (moment - _EPOCH) // _MILLISECOND


def _storable(t: pa.DataType) -> pa.DataType:
    """``t`` with timestamps as ``timestamp[ms, UTC]`` and empty structs as null."""
    if pa.types.is_timestamp(t):
        return TIMESTAMP
    if pa.types.is_struct(t):
        if t.num_fields == 0:
            return pa.null()
        return pa.struct([pa.field(f.name, _storable(f.type)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_storable(t.value_type))
    return t
