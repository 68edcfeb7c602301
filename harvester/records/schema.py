"""Arrow schema unification across windows, days and files of one device type (PURE).

The API has no schema: a field may be an int in one window and a float in the next, null
everywhere, absent until some day, or (rarely) change kind. ``unify`` computes the narrowest
schema that holds both inputs without losing a value; ``conform`` casts a table onto such a
schema. The type rules form a lattice (null at the bottom, string at the top), which is what
makes ``unify`` commutative, associative and idempotent::

    null + T            -> T
    int + int           -> int64          int + float / float + float -> float64
    timestamp + timestamp -> timestamp[ms, UTC]
    string + string     -> string         struct + struct -> field-wise, list + list -> item-wise
    anything else       -> string         (a true conflict: values are kept as their text)
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import orjson
import pyarrow as pa
import pyarrow.compute as pc

#: The one timestamp type of the archive.
TIMESTAMP: Final = pa.timestamp("ms", tz="UTC")

_JSON_OPTIONS: Final = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def unify(a: pa.Schema, b: pa.Schema) -> pa.Schema:
    """The narrowest schema holding both: fields by name, in first-seen order (a's, then b's)."""
    return pa.schema(_unify_fields(list(a), list(b)))


def unify_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type holding values of both ``a`` and ``b`` (see the module docstring)."""
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    if _is_number(a) and _is_number(b):
        return pa.float64()
    if _is_text(a) and _is_text(b):
        return pa.string()
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return TIMESTAMP
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        return pa.struct(_unify_fields(list(a), list(b)))
    if _is_list(a) and _is_list(b):
        return pa.list_(unify_types(a.value_type, b.value_type))
    return pa.string()


def _unify_fields(a: list[pa.Field], b: list[pa.Field]) -> list[pa.Field]:
    types: dict[str, pa.DataType] = {}
    for field in a:
        types[field.name] = field.type
    for field in b:
        known = types.get(field.name)
        types[field.name] = field.type if known is None else unify_types(known, field.type)
    return [pa.field(name, type_) for name, type_ in types.items()]


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order and types.

    Missing columns become nulls; a value whose type conflicts with the target (only string
    targets can receive one, see ``unify``) is rendered as text. Never raises for a table
    whose schema was unified into ``schema``; columns absent from ``schema`` are dropped.
    """
    columns = []
    for field in schema:
        index = table.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            columns.append(_coerce_column(table.column(index), field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _coerce_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    if column.type.equals(target):
        return column
    return pa.chunked_array([coerce_array(chunk, target) for chunk in column.chunks], target)


def coerce_array(array: pa.Array, target: pa.DataType) -> pa.Array:
    """One array cast onto ``target`` under the rules of ``conform``."""
    source = array.type
    if source.equals(target):
        return array
    if pa.types.is_null(target):
        # unify never maps a non-null type to null: the source holds nulls only, or empty
        # objects (struct<>), which carry no value and cannot be stored in Parquet.
        return pa.nulls(len(array))
    if pa.types.is_null(source):
        return pa.nulls(len(array), target)
    if _is_text(target):
        return _render_text(array)
    if pa.types.is_struct(target):
        return _coerce_struct(array, target)
    if _is_list(target):
        return _coerce_list(array, target)
    # Integers beyond 2**53 lose precision as floats and sub-millisecond timestamps are
    # truncated: both are the documented meaning of the widened type, not errors.
    return array.cast(target, safe=not (pa.types.is_floating(target) or _is_timestamp(target)))


def _is_timestamp(t: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(t))


def _coerce_struct(array: pa.StructArray, target: pa.StructType) -> pa.Array:
    children = []
    flat = array.flatten()  # children sliced to this array's offset, parent nulls applied
    for field in target:
        index = array.type.get_field_index(field.name)
        if index < 0:
            children.append(pa.nulls(len(array), field.type))
        else:
            children.append(coerce_array(flat[index], field.type))
    mask = array.is_null() if array.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)


def _coerce_list(array: pa.Array, target: pa.DataType) -> pa.Array:
    lengths = pc.list_value_length(array).fill_null(0)
    offsets = pa.concat_arrays(
        [pa.array([0], pa.int64()), pc.cumulative_sum(lengths.cast(pa.int64()))]
    ).cast(pa.int32())
    values = coerce_array(pc.list_flatten(array), target.value_type)
    mask = array.is_null() if array.null_count else None
    return pa.ListArray.from_arrays(offsets, values, type=target, mask=mask)


def _render_text(array: pa.Array) -> pa.Array:
    source = array.type
    if _is_text(source) or pa.types.is_integer(source) or pa.types.is_boolean(source):
        # Arrow's text of an integer or a boolean is its JSON text.
        return array.cast(pa.string())
    return pa.array([json_text(value) for value in array.to_pylist()], pa.string())


def json_text(value: object) -> str | None:
    """The text a conflicting value is kept as: strings as they are, others as JSON."""
    if value is None or isinstance(value, str):
        return value
    text = orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode()
    if text == "null":  # NaN and infinities have no JSON text
        return None
    if isinstance(value, dt.datetime | dt.date):
        return text.strip('"')
    return text
