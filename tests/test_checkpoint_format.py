"""The checkpoint's on-disk format: segment encoding, bulk vs line-by-line decoding, snapshot."""

from __future__ import annotations

import datetime as dt
import io

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester.archive.checkpoint import format as fmt
from harvester.models import DEVICE_TYPES, FailedWindow, FinishedWindow

BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def plain(table: pa.Table) -> list[dict[str, object]]:
    """Rows with the uuid decoded, whatever its Arrow type."""
    uuid = table["device_uuid"].cast(pa.string())
    rows: list[dict[str, object]] = table.set_column(1, "device_uuid", uuid).to_pylist()
    return rows


@st.composite
def entries(draw: st.DrawFn) -> FinishedWindow | FailedWindow:
    uuid = draw(st.sampled_from(["a", "b", "c-é", 'd\n"quoted"']))
    device_type = draw(st.sampled_from(DEVICE_TYPES))
    start = BASE + dt.timedelta(milliseconds=draw(st.integers(-(10**12), 10**12)))
    end = start + dt.timedelta(milliseconds=draw(st.integers(1, 7_200_000)))
    if draw(st.booleans()):
        records, count = draw(st.integers(0, 2**40)), draw(st.integers(0, 2**40))
        return FinishedWindow(uuid, device_type, start, end, records, count, draw(st.booleans()))
    reason = draw(st.text(max_size=20))
    return FailedWindow(uuid, device_type, start, end, reason, draw(st.integers(0, 100)))


@settings(max_examples=80, deadline=None)
@given(segments=st.lists(st.lists(entries(), max_size=6), max_size=4))
def test_bulk_decoding_equals_the_entries_and_the_line_by_line_path(
    segments: list[list[FinishedWindow | FailedWindow]],
) -> None:
    """Any entries survive encode → bulk decode; each segment alone decodes the same by lines."""
    blobs = [(f"seg-{i}", fmt.encode_segment("r", 1, i, s)) for i, s in enumerate(segments)]
    decoded = fmt.decode_segments(blobs)
    expected = [entry for segment in segments for entry in segment]
    assert decoded.damaged == []
    assert plain(decoded.rows) == fmt.table_from_entries(expected).to_pylist()
    for (_, blob), segment in zip(blobs, segments, strict=True):
        parts = fmt._split_header("seg", blob)
        assert isinstance(parts, fmt._Parts)
        table, problem = fmt._line_by_line(parts)
        assert problem is None
        assert plain(table) == fmt.table_from_entries(segment).to_pylist()


def test_device_indices_are_per_segment() -> None:
    """Index 0 means a different device in each segment; the bulk parse keeps them apart."""
    one = FinishedWindow("dev-1", "FMD", BASE, BASE + dt.timedelta(hours=2), 1, 1, True)
    two = FinishedWindow("dev-2", "RAMP", BASE, BASE + dt.timedelta(hours=2), 2, 2, False)
    blobs = [
        ("a", fmt.encode_segment("r", 1, 0, [one])),
        ("b", fmt.encode_segment("r", 1, 1, [two])),
    ]
    rows = plain(fmt.decode_segments(blobs).rows)
    assert [row["device_uuid"] for row in rows] == ["dev-1", "dev-2"]


def test_failure_reason_is_capped() -> None:
    """A very long failure reason is cut to MAX_REASON characters."""
    failure = FailedWindow("a", "FMD", BASE, BASE + dt.timedelta(hours=1), "x" * 10_000, 3)
    rows = plain(fmt.decode_segments([("s", fmt.encode_segment("r", 1, 0, [failure]))]).rows)
    assert rows[0]["reason"] == "x" * fmt.MAX_REASON


def test_snapshot_round_trip_keeps_rows_and_generation() -> None:
    """write_snapshot then read_snapshot returns the same rows and generation."""
    window = FinishedWindow("a", "SPOD", BASE, BASE + dt.timedelta(hours=2), 5, 9, True)
    rows = fmt.table_from_entries([window])
    buffer = io.BytesIO()
    fmt.write_snapshot(buffer, rows, generation=42)
    result = fmt.read_snapshot("k", buffer.getvalue())
    assert not isinstance(result, str)
    assert result.generation == 42
    assert result.version == fmt.SNAPSHOT_VERSION
    table = pa.concat_tables(result.batches())
    assert plain(table) == fmt.with_day_columns(rows).to_pylist()


def test_milliseconds_round_trip_including_before_1970() -> None:
    """to_ms/from_ms are exact inverses on millisecond-aligned aware datetimes."""
    for moment in (BASE, dt.datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=dt.UTC)):
        assert fmt.from_ms(fmt.to_ms(moment)) == moment
