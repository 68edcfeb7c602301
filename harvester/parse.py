"""A records response body → one Arrow table, one row per record.

The fast path hands the whole body to ``pyarrow.json`` as a single JSON row and flattens its
``data`` list: the parsing runs in C++ without the GIL and no Python object is made per record.
``pyarrow.json`` refuses a few legitimate shapes (a field that is a number in one record and a
string or an object in another, ``true`` beside ``1``, a repeated key); those bodies go through
orjson and a column builder that applies the same type rules as ``harvester.schema``. Either
way, every source field keeps its source name and ``date`` becomes ``timestamp[ms, UTC]``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Final

import orjson
import pyarrow as pa
import pyarrow.json as pa_json

from harvester.errors import ShapeError
from harvester.schema import TIMESTAMP, coerce_array, json_text

ID_FIELD: Final = "_id"
DATE_FIELD: Final = "date"
_MIN_BLOCK: Final = 1 << 20


def parse_window(body: bytes) -> pa.Table:
    """The records of a ``{"data": [record, ...]}`` body, in the server's order.

    Raises ``ShapeError`` when the body is not JSON (or truncated), is not an object, has no
    ``data`` list, or holds a record that is not an object or lacks ``_id`` or ``date``.
    """
    try:
        records = _read_fast(body)
    except pa.ArrowException:
        records = _read_fallback(body)
    return _normalise(records)


def _read_fast(body: bytes) -> pa.Table:
    options = pa_json.ReadOptions(block_size=max(len(body) + 1, _MIN_BLOCK), use_threads=False)
    # The streaming reader parses in the calling thread; read_json hands the block to
    # Arrow's I/O thread and waits, which costs a thread wake-up per window (~1 ms of wall
    # time when the cores are busy, more than parsing a small window takes).
    wrapper = pa_json.open_json(pa.BufferReader(body), read_options=options).read_all()
    if wrapper.num_rows != 1:
        # Several JSON documents one after the other: let the strict parser reject them.
        raise pa.ArrowInvalid("not exactly one JSON document")
    index = wrapper.schema.get_field_index("data")
    if index < 0:
        raise ShapeError("the response has no 'data' field")
    data = wrapper.column(index).chunk(0)
    if pa.types.is_null(data.type):
        raise ShapeError("'data' is not a list")
    if not pa.types.is_list(data.type):
        raise ShapeError(f"'data' is not a list but {data.type}")
    items = data.flatten()
    if pa.types.is_null(items.type) and len(items) == 0:
        return pa.table({})
    if not pa.types.is_struct(items.type) or items.null_count:
        raise ShapeError("an element of 'data' is not an object")
    return pa.Table.from_struct_array(items)


def _read_fallback(body: bytes) -> pa.Table:
    document = _loads(body)
    if not isinstance(document, dict):
        raise ShapeError(f"the response is a JSON {type(document).__name__}, not an object")
    if "data" not in document:
        raise ShapeError("the response has no 'data' field")
    records = document["data"]
    if not isinstance(records, list):
        raise ShapeError(f"'data' is a JSON {type(records).__name__}, not a list")
    if not all(isinstance(record, dict) for record in records):
        raise ShapeError("an element of 'data' is not an object")
    names = list(dict.fromkeys(name for record in records for name in record))
    columns = [build_array([record.get(name) for record in records]) for name in names]
    return pa.Table.from_arrays(columns, names=names)


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
    """An Arrow array of decoded JSON values, typed by the rules of ``harvester.schema``."""
    kinds = {type(value) for value in values if value is not None}
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds == {int}:
        try:
            return pa.array(values, pa.int64())
        except (OverflowError, pa.ArrowInvalid):
            return pa.array(values, pa.float64())
    if kinds <= {int, float}:
        return pa.array(values, pa.float64())
    if kinds == {str}:
        return pa.array(values, pa.string())
    if kinds == {dict}:
        return _build_struct(values)
    if kinds == {list}:
        return _build_list(values)
    return pa.array([json_text(value) for value in values], pa.string())


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
    for name in (ID_FIELD, DATE_FIELD):
        if name not in records.column_names:
            raise ShapeError(f"a record has no '{name}' field")
        if records.column(name).null_count:
            raise ShapeError(f"a record has a null '{name}'")
    if not pa.types.is_string(records.schema.field(ID_FIELD).type):
        raise ShapeError(f"'{ID_FIELD}' is {records.schema.field(ID_FIELD).type}, not a string")
    date_type = records.schema.field(DATE_FIELD).type
    if not (pa.types.is_string(date_type) or pa.types.is_timestamp(date_type)):
        raise ShapeError(f"'{DATE_FIELD}' is {date_type}, not an ISO-8601 string")
    target, changed = _storable_schema(records.schema)
    columns = records.columns
    for index in changed:
        field, column = target.field(index), columns[index]
        if field.name == DATE_FIELD and pa.types.is_string(column.type):
            columns[index] = _parse_dates(column)
            continue
        try:
            columns[index] = pa.chunked_array(
                [coerce_array(c, field.type) for c in column.chunks], field.type
            )
        except pa.ArrowInvalid as exc:
            raise ShapeError(f"field '{field.name}' cannot become {field.type}: {exc}") from None
    return pa.Table.from_arrays(columns, schema=target)


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
    """ISO-8601 texts → ``timestamp[ms, UTC]``; texts without a zone offset are read as UTC."""
    try:
        return column.cast(TIMESTAMP, safe=False)
    except pa.ArrowInvalid:
        pass
    try:
        return column.cast(pa.timestamp("ms"), safe=False).cast(TIMESTAMP)
    except pa.ArrowInvalid as exc:
        raise ShapeError(
            f"'{DATE_FIELD}' holds a value that is not an ISO-8601 time: {exc}"
        ) from None


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
