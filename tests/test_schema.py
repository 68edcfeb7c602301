"""Tests of harvester.records.schema: unify is a lattice join, conform keeps every value."""

from __future__ import annotations

import datetime as dt
import math

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.records.schema import TIMESTAMP, conform, unify, unify_types

NAMES = ["a", "b", "c", "d"]
SCALARS = [pa.null(), pa.bool_(), pa.int64(), pa.float64(), pa.string(), TIMESTAMP]


def _types() -> st.SearchStrategy[pa.DataType]:
    def extend(children: st.SearchStrategy[pa.DataType]) -> st.SearchStrategy[pa.DataType]:
        fields = st.lists(
            st.tuples(st.sampled_from(NAMES), children), max_size=3, unique_by=lambda f: f[0]
        )
        return st.one_of(
            fields.filter(bool).map(lambda fs: pa.struct([pa.field(n, t) for n, t in fs])),
            children.map(pa.list_),
        )

    return st.recursive(st.sampled_from(SCALARS), extend, max_leaves=4)


def _schemas() -> st.SearchStrategy[pa.Schema]:
    fields = st.lists(
        st.tuples(st.sampled_from(NAMES), _types()), max_size=4, unique_by=lambda f: f[0]
    )
    return fields.map(lambda fs: pa.schema([pa.field(n, t) for n, t in fs]))


def _sorted_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct(
            sorted((pa.field(f.name, _sorted_type(f.type)) for f in t), key=lambda f: f.name)
        )
    if pa.types.is_list(t):
        return pa.list_(_sorted_type(t.value_type))
    return t


def _sorted(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        sorted((pa.field(f.name, _sorted_type(f.type)) for f in schema), key=lambda f: f.name)
    )


# ---- unit tests of the type rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (pa.int64(), pa.int64(), pa.int64()),
        (pa.null(), pa.float64(), pa.float64()),
        (pa.string(), pa.null(), pa.string()),
        (pa.int32(), pa.int64(), pa.int64()),
        (pa.uint8(), pa.int16(), pa.int64()),
        (pa.int64(), pa.float64(), pa.float64()),
        (pa.float32(), pa.float64(), pa.float64()),
        (pa.int64(), pa.float32(), pa.float64()),
        (pa.bool_(), pa.bool_(), pa.bool_()),
        (pa.timestamp("s"), TIMESTAMP, TIMESTAMP),
        (pa.timestamp("us", tz="Europe/Paris"), pa.timestamp("s"), TIMESTAMP),
        (pa.large_string(), pa.string(), pa.string()),
        (pa.string(), pa.int64(), pa.string()),
        (pa.bool_(), pa.int64(), pa.string()),
        (pa.bool_(), pa.float64(), pa.string()),
        (TIMESTAMP, pa.string(), pa.string()),
        (pa.struct([("x", pa.int64())]), pa.float64(), pa.string()),
        (pa.list_(pa.int64()), pa.int64(), pa.string()),
        (pa.list_(pa.int64()), pa.list_(pa.float64()), pa.list_(pa.float64())),
        (
            pa.struct([("x", pa.int64()), ("y", pa.string())]),
            pa.struct([("z", pa.bool_()), ("x", pa.float64())]),
            pa.struct([("x", pa.float64()), ("y", pa.string()), ("z", pa.bool_())]),
        ),
    ],
)
def test_unify_types_rules(a: pa.DataType, b: pa.DataType, expected: pa.DataType) -> None:
    """Each documented rule of unify_types, in both argument orders."""
    assert unify_types(a, b).equals(expected)
    assert _sorted_type(unify_types(b, a)).equals(_sorted_type(expected))


def test_unify_keeps_first_seen_field_order() -> None:
    """a's fields come first in their order, then b's new fields in theirs."""
    a = pa.schema([("date", TIMESTAMP), ("temp", pa.int64())])
    b = pa.schema([("lat", pa.float64()), ("temp", pa.float64()), ("date", TIMESTAMP)])
    assert unify(a, b) == pa.schema(
        [("date", TIMESTAMP), ("temp", pa.float64()), ("lat", pa.float64())]
    )


# ---- unit tests of conform --------------------------------------------------------------------


def test_conform_orders_adds_missing_and_widens() -> None:
    """Columns follow the schema; missing ones are nulls; ints become floats."""
    table = pa.table({"temp": pa.array([1, 2]), "_id": ["x", "y"]})
    schema = pa.schema([("_id", pa.string()), ("lat", pa.float64()), ("temp", pa.float64())])
    out = conform(table, schema)
    assert out.schema == schema
    assert out.to_pydict() == {"_id": ["x", "y"], "lat": [None, None], "temp": [1.0, 2.0]}


def test_conform_renders_conflicts_as_json_text() -> None:
    """Numbers, booleans, timestamps, structs and lists in a string column become text."""
    stamp = dt.datetime(2024, 2, 5, 22, 0, 1, 500000, tzinfo=dt.UTC)
    table = pa.table(
        {
            "i": pa.array([1, None]),
            "f": pa.array([2.5, 1e20]),
            "b": pa.array([True, False]),
            "t": pa.array([stamp, None], TIMESTAMP),
            "s": pa.array([{"x": 1, "y": [1.5]}, None]),
        }
    )
    schema = pa.schema([(name, pa.string()) for name in "ifbts"])
    out = conform(table, schema).to_pydict()
    assert out["i"] == ["1", None]
    assert out["f"] == ["2.5", "1e+20"]
    assert out["b"] == ["true", "false"]
    assert out["t"] == ["2024-02-05T22:00:01.500000Z", None]
    assert out["s"] == ['{"x":1,"y":[1.5]}', None]


def test_conform_handles_sliced_nested_arrays() -> None:
    """Structs and lists that are slices of larger arrays keep the right rows and nulls."""
    table = pa.table(
        {
            "s": pa.array([{"x": 0}, None, {"x": 2}, {"x": 3}]),
            "l": pa.array([[0], [1, 1], None, [3, 3, 3]]),
        }
    ).slice(1)
    schema = pa.schema(
        [("s", pa.struct([("x", pa.float64()), ("y", pa.bool_())])), ("l", pa.list_(pa.string()))]
    )
    out = conform(table, schema).to_pydict()
    assert out["s"] == [None, {"x": 2.0, "y": None}, {"x": 3.0, "y": None}]
    assert out["l"] == [["1", "1"], None, ["3", "3", "3"]]


def test_conform_widens_huge_integers_without_raising() -> None:
    """Integers beyond 2**53 are rounded into float64 like Python's float()."""
    big = 2**63 - 1
    out = conform(pa.table({"n": [big]}), pa.schema([("n", pa.float64())]))
    assert out.column("n").to_pylist() == [float(big)]


# ---- properties -------------------------------------------------------------------------------


@given(_schemas(), _schemas())
def test_unify_is_commutative_up_to_field_order(a: pa.Schema, b: pa.Schema) -> None:
    """unify(a, b) and unify(b, a) hold the same fields with the same types."""
    assert _sorted(unify(a, b)) == _sorted(unify(b, a))


@given(_schemas(), _schemas(), _schemas())
def test_unify_is_associative(a: pa.Schema, b: pa.Schema, c: pa.Schema) -> None:
    """unify(unify(a, b), c) == unify(a, unify(b, c)), field order included."""
    assert unify(unify(a, b), c) == unify(a, unify(b, c))


@given(_schemas(), _schemas())
def test_unify_is_idempotent_and_absorbing(a: pa.Schema, b: pa.Schema) -> None:
    """unify(a, a) == a, and unifying again with either input changes nothing."""
    assert unify(a, a) == a
    ab = unify(a, b)
    assert unify(ab, a) == ab
    assert unify(ab, b) == ab


def _covers(source: pa.DataType, target: pa.DataType) -> bool:
    """Every nested field of source is in target, unless a conflict turned it into text."""
    if pa.types.is_string(target):
        return True
    if pa.types.is_struct(source) and pa.types.is_struct(target):
        names = [f.name for f in target]
        return all(f.name in names and _covers(f.type, target.field(f.name).type) for f in source)
    if pa.types.is_list(source) and pa.types.is_list(target):
        return _covers(source.value_type, target.value_type)
    return not (pa.types.is_struct(source) or pa.types.is_list(source))


@given(_schemas(), _schemas())
def test_unify_field_sets_are_unions(a: pa.Schema, b: pa.Schema) -> None:
    """The top-level fields are a's then b's new ones; nested struct fields are unions too."""
    ab = unify(a, b)
    assert ab.names == a.names + [n for n in b.names if n not in a.names]
    for side in (a, b):
        for field in side:
            assert _covers(field.type, ab.field(field.name).type)


def _values(t: pa.DataType) -> st.SearchStrategy[object]:
    if pa.types.is_null(t):
        return st.none()
    if pa.types.is_boolean(t):
        inner: st.SearchStrategy[object] = st.booleans()
    elif pa.types.is_integer(t):
        inner = st.integers(-(2**63), 2**63 - 1)
    elif pa.types.is_floating(t):
        inner = st.floats(allow_nan=False)
    elif pa.types.is_string(t):
        inner = st.text(max_size=4)
    elif pa.types.is_timestamp(t):
        inner = st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1)).map(
            lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=dt.UTC)
        )
    elif pa.types.is_struct(t):
        inner = st.fixed_dictionaries({f.name: _values(f.type) for f in t})
    else:
        inner = st.lists(_values(t.value_type), max_size=3)
    return st.one_of(st.none(), inner)


@st.composite
def _tables(draw: st.DrawFn) -> pa.Table:
    schema = draw(_schemas())
    rows = draw(st.integers(0, 4))
    columns = [pa.array([draw(_values(f.type)) for _ in range(rows)], f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    option = orjson.OPT_UTC_Z
    text = orjson.dumps(value, option=option).decode()
    return text.strip('"') if isinstance(value, dt.datetime) else text


def _expected(value: object, source: pa.DataType, target: pa.DataType) -> object:
    """What conform must make of one value: the model of the documented rules."""
    if value is None or pa.types.is_null(target):
        return None
    if pa.types.is_string(target):
        return value if pa.types.is_string(source) else _text(value)
    if pa.types.is_floating(target):
        return float(value)  # type: ignore[arg-type]  # a number by construction
    if pa.types.is_struct(target):
        assert isinstance(value, dict)
        return {
            f.name: _expected(
                value.get(f.name),
                source.field(f.name).type if source.get_field_index(f.name) >= 0 else pa.null(),
                f.type,
            )
            for f in target
        }
    if pa.types.is_list(target):
        assert isinstance(value, list)
        return [_expected(item, source.value_type, target.value_type) for item in value]
    return value


@settings(max_examples=200)
@given(_tables(), _schemas())
def test_conform_onto_a_unified_schema_keeps_every_row_and_value(
    table: pa.Table, other: pa.Schema
) -> None:
    """conform(t, unify(t.schema, s)) never raises, keeps rows, converts values by the rules."""
    target = unify(table.schema, other)
    out = conform(table, target)
    assert out.schema == target
    assert out.num_rows == table.num_rows
    for field in target:
        got = out.column(field.name).to_pylist()
        if field.name not in table.column_names:
            assert got == [None] * table.num_rows
            continue
        source = table.schema.field(field.name).type
        want = [_expected(v, source, field.type) for v in table.column(field.name).to_pylist()]
        assert got == want
