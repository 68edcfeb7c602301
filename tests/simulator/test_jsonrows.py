"""Column-wise JSON rendering produces valid JSON with the right values and types."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from harvester.simulator import jsonrows as js

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=30)


@given(values, st.integers(0, 6))
def test_numbers_round_trip_with_their_type(numbers: list[float], decimals: int) -> None:
    """Rendered numbers parse back to the rounded values; integers stay ints, others floats."""
    cells = js.Number(np.array(numbers), decimals)
    parsed = json.loads(js.render(len(numbers), [("v", cells)]))["data"]
    for record, number in zip(parsed, numbers, strict=True):
        expected = round(number * 10**decimals) / 10**decimals
        assert abs(record["v"] - expected) <= 10**-decimals * 0.51 + 1e-9 * abs(number)
        assert isinstance(record["v"], int if decimals == 0 else float)


def test_nulls_booleans_text_ids_and_dates_render_as_json() -> None:
    """Nulls, booleans, constant text, ObjectIds and ISO dates come out as expected."""
    times = np.array([0, 1_707_170_401, 4_102_444_799], dtype=np.int64)
    fields: list[tuple[str, js.Cell]] = [
        ("_id", js.ObjectId(times, "abcdef0001", np.array([0, 255, 0xFFFFFF]))),
        ("id", js.Text('"1001"')),
        ("date", js.IsoTime(times)),
        ("n", js.Number(np.array([1.0, -2.0, 3.0]), 0, np.array([False, True, False]))),
        ("b", js.Boolean(np.array([True, False, True]))),
    ]
    records = json.loads(js.render(3, fields))["data"]
    counters = ["000000", "0000ff", "ffffff"]
    assert [r["_id"] for r in records] == [
        f"{second:08x}abcdef0001{counter}"
        for second, counter in zip(times.tolist(), counters, strict=True)
    ]
    for record, second in zip(records, times.tolist(), strict=True):
        moment = dt.datetime.fromtimestamp(second, dt.UTC)
        assert record["date"] == moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert [r["n"] for r in records] == [1, None, 3]
    assert [r["b"] for r in records] == [True, False, True]
    assert {r["id"] for r in records} == {"1001"}


def test_render_of_no_rows_is_an_empty_data_list() -> None:
    """Zero rows render as ``{"data":[]}``."""
    assert json.loads(js.render(0, [("v", js.Number(np.zeros(0)))])) == {"data": []}


def test_bodies_are_compact_json_without_padding() -> None:
    """Rendered bodies hold no whitespace (the fixed-width padding is dropped) and still parse
    to the same records, nulls and negative numbers included."""
    times = np.arange(100, dtype=np.int64)
    fields: list[tuple[str, js.Cell]] = [
        ("n", js.Number(np.linspace(-1000, 5, 100), 2, times % 7 == 0)),
        ("b", js.Boolean(times % 2 == 0)),
    ]
    body = js.render(100, fields)
    assert b" " not in body
    records = json.loads(body)["data"]
    assert [r["b"] for r in records] == (times % 2 == 0).tolist()
    assert records[1]["n"] == round(float(np.linspace(-1000, 5, 100)[1]), 2)
    assert [r["n"] is None for r in records] == (times % 7 == 0).tolist()
