"""On-disk format of the checkpoint journal: JSON Lines segments and a Parquet snapshot.

A segment is JSON Lines: a header ``{"checkpoint_version": 1, "run_id": "...", "generation":
G, "seq": S, "entries": N, "devices": [uuid, ...]}`` then N entries with short keys, where
``d`` indexes the header's device list (keys and uuids are most of the bytes that a reopen
after a crash has to parse)::

    {"k": "fin",  "d": 0, "t": type, "s": start_ms, "e": end_ms, "n": records, "c": day_count,
     "z": sealed}
    {"k": "fail", "d": 0, "t": type, "s": start_ms, "e": end_ms, "r": reason, "a": attempts}

The snapshot is one Parquet file of ``SNAPSHOT_SCHEMA`` whose metadata carries the snapshot
version and the generation it has absorbed. Version 2 adds rows of kind ``day``: a device-day
whose finished windows are whole grid slots sharing one day count and one sealed flag, as one
row (``start_ms``/``end_ms`` the UTC day, ``slots`` a 12-bit mask of its slots, slot 0 =
[00:00, 02:00), ``window_records`` each slot's records in slot order, ``records`` their sum),
so that a fleet's 17 million windows are 1.4 million rows. Version 1 snapshots (windows only)
are still read.

Segments are parsed in bulk by ``pyarrow.json`` against an explicit schema (strict types, no
unknown keys) and checked with vectorised rules; only a segment that fails them is read line
by line, to keep everything before the first damaged line and report where the damage is.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from harvester.errors import IncompatibleCheckpointError
from harvester.models import DEVICE_TYPES, FailedWindow, FinishedWindow

#: The segments' format (their header's ``checkpoint_version``).
CHECKPOINT_VERSION: Final = 1
#: The snapshot's format, written; ``READABLE_SNAPSHOTS`` are read.
SNAPSHOT_VERSION: Final = 2
READABLE_SNAPSHOTS: Final = (1, 2)
#: Rows of a snapshot are read this many at a time, so loading never holds the whole file
#: decoded at once.
SNAPSHOT_BATCH_ROWS: Final = 1 << 16
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY: Final = EPOCH.date()
_MS: Final = dt.timedelta(milliseconds=1)
DAY_MS: Final = 86_400_000
#: Days are shifted into the low 32 bits of a group key; any date a sensor can have fits.
DAY_BIAS: Final = 1 << 31

FINISHED: Final = "fin"
FAILED: Final = "fail"
WHOLE_DAY: Final = "day"
SLOT_MS: Final = 7_200_000
SLOTS_PER_DAY: Final = 12
#: A whole-slot day keeps each slot's records in 16 bits; a larger window stays a window row.
MAX_SLOT_RECORDS: Final = 65_535
_KINDS: Final = pa.array([FINISHED, FAILED])
_TYPES: Final = pa.array(DEVICE_TYPES)
_VERSION_KEY: Final = b"harvester.checkpoint_version"
_GENERATION_KEY: Final = b"harvester.checkpoint_generation"
#: A failure reason is diagnostic text; cap it so one odd error cannot bloat every segment.
MAX_REASON: Final = 500

SCHEMA: Final = pa.schema(
    [
        ("kind", pa.string()),
        ("device_uuid", pa.string()),
        ("device_type", pa.string()),
        ("start_ms", pa.int64()),
        ("end_ms", pa.int64()),
        ("records", pa.int64()),
        ("day_count", pa.int64()),
        ("sealed", pa.bool_()),
        ("reason", pa.string()),
        ("attempts", pa.int64()),
    ]
)
SNAPSHOT_SCHEMA: Final = pa.schema(
    [*SCHEMA, ("slots", pa.int32()), ("window_records", pa.list_(pa.int32()))]
)
#: Rows decoded from segments: the uuid arrives dictionary-encoded from the device lists.
SEGMENT_ROWS: Final = SCHEMA.set(1, pa.field("device_uuid", pa.dictionary(pa.int32(), pa.string())))
_SHORT: Final = dict(zip("kdtsenczra", SCHEMA.names, strict=True))
_JSON_SCHEMA: Final = pa.schema(
    [pa.field(k, pa.int64() if k == "d" else SCHEMA.field(n).type) for k, n in _SHORT.items()]
)
_KEYS: Final = {FINISHED: frozenset("kdtsencz"), FAILED: frozenset("kdtsera")}
_TYPE_OF_KEY: Final[dict[str, type]] = {"d": int, "t": str, "s": int, "e": int, "n": int}
_TYPE_OF_KEY.update({"c": int, "z": bool, "r": str, "a": int})

Identity = tuple[str, int, int]
Entry = FinishedWindow | FailedWindow
IntArray = npt.NDArray[np.int64]


def to_ms(moment: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime (a naive one raises TypeError: a bug)."""
    return (moment - EPOCH) // _MS


@functools.lru_cache(maxsize=1 << 16)
def from_ms(ms: int) -> dt.datetime:
    """Aware UTC datetime of epoch milliseconds (cached: a fleet shares its grid's few times)."""
    return EPOCH + dt.timedelta(milliseconds=ms)


def day_ordinal(day: dt.date) -> int:
    return (day - _EPOCH_DAY).days


def identity(entry: Entry) -> Identity:
    return (entry.device_uuid, to_ms(entry.start), to_ms(entry.end))


# ---------------------------------------------------------------- segments


def encode_segment(run_id: str, generation: int, seq: int, entries: Sequence[Entry]) -> bytes:
    devices: dict[str, int] = {}
    lines = [b""]
    for entry in entries:
        device = devices.setdefault(entry.device_uuid, len(devices))
        common: dict[str, Any] = {"d": device, "t": entry.device_type}
        common |= {"s": to_ms(entry.start), "e": to_ms(entry.end)}
        if isinstance(entry, FinishedWindow):
            extra: dict[str, Any] = {"n": entry.records, "c": entry.day_count, "z": entry.sealed}
            lines.append(orjson.dumps({"k": FINISHED, **common, **extra}))
        else:
            extra = {"r": entry.reason[:MAX_REASON], "a": entry.attempts}
            lines.append(orjson.dumps({"k": FAILED, **common, **extra}))
    header: dict[str, Any] = {"checkpoint_version": CHECKPOINT_VERSION, "run_id": run_id}
    header |= {"generation": generation, "seq": seq, "entries": len(entries)}
    lines[0] = orjson.dumps({**header, "devices": list(devices)})
    lines.append(b"")
    return b"\n".join(lines)


@dataclass(frozen=True, slots=True)
class DecodedSegments:
    """The trusted rows of all segments in order (``SEGMENT_ROWS``), and the damage found.

    ``damaged`` holds (key, records kept, what was wrong) per damaged segment.
    """

    rows: pa.Table
    damaged: list[tuple[str, int, str]]


@dataclass(frozen=True, slots=True)
class _Parts:
    entries: int
    devices: list[str]
    body: memoryview  # a view: a crash can leave hundreds of MB of segments to parse


def _incompatible(
    key: str, version: object, reads: int = CHECKPOINT_VERSION
) -> IncompatibleCheckpointError:
    return IncompatibleCheckpointError(
        f"the checkpoint file {key} was written by an incompatible harvester version "
        f"(checkpoint format {version!r}, this harvester reads {reads}); "
        "use a new --out or the matching version"
    )


def _split_header(key: str, blob: bytes) -> _Parts | str:
    """The header's facts and the body, or what is wrong; raises on a foreign version."""
    if not blob:
        return "empty segment"
    header_end = blob.find(b"\n")
    header_end = len(blob) if header_end < 0 else header_end
    try:
        header = orjson.loads(blob[:header_end])
    except orjson.JSONDecodeError:
        return "unreadable header"
    if not isinstance(header, dict) or "checkpoint_version" not in header:
        return "header without a checkpoint_version"
    if header["checkpoint_version"] != CHECKPOINT_VERSION:
        raise _incompatible(key, header["checkpoint_version"])
    entries, devices = header.get("entries"), header.get("devices")
    if type(entries) is not int or entries < 0:
        return "header without a valid entry count"
    if not isinstance(devices, list) or {type(d) for d in devices} - {str} or "" in devices:
        return "header without a valid device list"
    return _Parts(entries, devices, memoryview(blob)[header_end + 1 :])


def _bulk(segments: Sequence[_Parts]) -> pa.Table | None:
    """All bodies parsed as one, if every line is a valid entry and the counts add up."""
    entries = sum(part.entries for part in segments)
    if entries == 0:
        return SEGMENT_ROWS.empty_table()
    body = b"".join(part.body for part in segments)
    if not body.endswith(b"\n") or body.count(b"\n") != entries:
        return None
    options = pajson.ParseOptions(explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="error")
    try:
        parsed = pajson.read_json(io.BytesIO(body), parse_options=options)
    except pa.ArrowInvalid:
        return None
    if parsed.num_rows != entries:
        return None
    # "d" indexes its own segment's device list: map it to one deduplicated list for all.
    listed = pa.array(itertools.chain.from_iterable(p.devices for p in segments), pa.string())
    distinct = listed.dictionary_encode()
    sizes = [len(part.devices) for part in segments]
    counts = [part.entries for part in segments]
    local = pc.fill_null(parsed["d"], -1).to_numpy()
    in_range = (local >= 0) & (local < np.repeat(sizes, counts))
    offsets = np.repeat(np.cumsum([0, *sizes[:-1]]), counts)
    flat = np.append(distinct.indices.to_numpy(zero_copy_only=False), 0).astype(np.int32)
    indices = pa.array(flat[np.where(in_range, local + offsets, len(listed))])
    uuid = pa.DictionaryArray.from_arrays(indices, distinct.dictionary)
    table = _rows(parsed, uuid)
    return table if bool((in_range & valid_rows(table)).all()) else None


def _rows(parsed: pa.Table, uuid: pa.Array) -> pa.Table:
    columns = [uuid if key == "d" else parsed[key] for key in _SHORT]
    return pa.table(columns, schema=SEGMENT_ROWS)


def _line_by_line(part: _Parts) -> tuple[pa.Table, str | None]:
    """The valid entries before the first damaged line, and a description of the damage."""
    rows: list[dict[str, Any]] = []
    problem: str | None = None
    lines = bytes(part.body).split(b"\n")
    for number, line in enumerate(lines[:-1], start=2):
        entry = _parse_entry(line, part.devices)
        if entry is None:
            problem = f"garbage record at line {number}"
            break
        rows.append(entry)
    else:
        if lines[-1]:
            problem = f"torn last record at line {len(lines) + 1}"
    plain = pa.Table.from_pylist(rows, schema=SCHEMA)
    table = plain.set_column(1, SEGMENT_ROWS.field(1), plain["device_uuid"].dictionary_encode())
    valid = valid_rows(table)
    if not valid.all():
        first_bad = int(np.argmin(valid))
        table = table.slice(0, first_bad)
        problem = f"invalid record at line {first_bad + 2}"
    if problem is None and table.num_rows != part.entries:
        problem = f"{table.num_rows} records where the header announced {part.entries}"
    return table, problem


def _parse_entry(line: bytes, devices: list[str]) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or _KEYS.get(str(obj.get("k"))) != obj.keys():
        return None
    if any(type(obj[k]) is not _TYPE_OF_KEY[k] for k in obj if k != "k"):
        return None
    if not 0 <= obj["d"] < len(devices):
        return None
    obj["d"] = devices[obj["d"]]
    return {_SHORT[k]: v for k, v in obj.items()}


def decode_segments(blobs: Sequence[tuple[str, bytes]]) -> DecodedSegments:
    """Decode segments in order; all in one bulk parse unless something is damaged."""
    split = [(key, _split_header(key, blob)) for key, blob in blobs]
    sound = [parts for _, parts in split if isinstance(parts, _Parts)]
    bulk = _bulk(sound) if len(sound) == len(split) else None
    if bulk is not None:
        return DecodedSegments(bulk, [])
    tables = [SEGMENT_ROWS.empty_table()]
    damaged = []
    for key, parts in split:
        if isinstance(parts, str):
            damaged.append((key, 0, parts))
        elif (table := _bulk([parts])) is not None:
            tables.append(table)
        else:
            table, problem = _line_by_line(parts)
            tables.append(table)
            if problem is not None:
                damaged.append((key, table.num_rows, problem))
    return DecodedSegments(pa.concat_tables(tables), damaged)


def _uuid_ok(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    if not pa.types.is_dictionary(column.type):
        plain = pc.fill_null(pc.greater(pc.utf8_length(column), 0), False)
        return np.asarray(plain.to_numpy(zero_copy_only=False), np.bool_)
    masks = [np.zeros(0, np.bool_)]
    for chunk in column.chunks:
        value_ok = pc.fill_null(pc.greater(pc.utf8_length(chunk.dictionary), 0), False)
        value_ok = np.append(value_ok.to_numpy(zero_copy_only=False), False)  # [-1]: null
        masks.append(value_ok[pc.fill_null(chunk.indices, -1).to_numpy()])
    return np.concatenate(masks)


def valid_rows(table: pa.Table) -> npt.NDArray[np.bool_]:
    """Per row: the fields its kind needs are there and make sense, the others are null."""
    kind = pc.index_in(table["kind"], value_set=_KINDS).to_numpy(zero_copy_only=False)
    present = {n: table[n].is_valid().to_numpy(zero_copy_only=False) for n in SCHEMA.names}
    values = {n: pc.fill_null(table[n], 0).to_numpy() for n in ("start_ms", "end_ms")}
    values |= {n: pc.fill_null(table[n], 0).to_numpy() for n in ("records", "day_count")}
    values["attempts"] = pc.fill_null(table["attempts"], 0).to_numpy()
    type_ok = pc.is_in(table["device_type"], value_set=_TYPES).to_numpy(zero_copy_only=False)
    common = _uuid_ok(table["device_uuid"]) & type_ok
    common &= present["start_ms"] & present["end_ms"] & (values["start_ms"] < values["end_ms"])
    finished = (kind == 0) & present["records"] & present["day_count"] & present["sealed"]
    finished &= (values["records"] >= 0) & (values["day_count"] >= 0)
    finished &= ~present["reason"] & ~present["attempts"]
    failed = (kind == 1) & present["reason"] & present["attempts"] & (values["attempts"] >= 0)
    failed &= ~present["records"] & ~present["day_count"] & ~present["sealed"]
    result: npt.NDArray[np.bool_] = common & (finished | failed)
    return result


# ---------------------------------------------------------------- snapshot


def write_snapshot(handle: BinaryIO, rows: pa.Table | Iterable[pa.Table], generation: int) -> None:
    """Write ``rows`` (``SNAPSHOT_SCHEMA``, or ``SCHEMA``: windows only; one table or several
    written one after the other) as a snapshot."""
    metadata = {_VERSION_KEY: str(SNAPSHOT_VERSION), _GENERATION_KEY: str(generation)}
    with pq.ParquetWriter(
        handle, SNAPSHOT_SCHEMA.with_metadata(metadata), compression="zstd"
    ) as writer:
        for table in [rows] if isinstance(rows, pa.Table) else rows:
            if table.schema.names == SCHEMA.names:
                table = with_day_columns(table)
            writer.write_table(table.cast(SNAPSHOT_SCHEMA), row_group_size=SNAPSHOT_BATCH_ROWS)


def with_day_columns(rows: pa.Table) -> pa.Table:
    """Version 1 rows (windows only) in ``SNAPSHOT_SCHEMA``: no ``slots``, no ``window_records``."""
    rows = rows.append_column(SNAPSHOT_SCHEMA.field("slots"), pa.nulls(rows.num_rows, pa.int32()))
    nulls = pa.nulls(rows.num_rows, SNAPSHOT_SCHEMA.field("window_records").type)
    return rows.append_column(SNAPSHOT_SCHEMA.field("window_records"), nulls)


class UntrustedSnapshot(Exception):
    """A snapshot batch that breaks the rules: the whole snapshot cannot be trusted."""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot whose version, generation and columns were checked from its footer.

    ``batches`` yields its rows (``SNAPSHOT_SCHEMA``, uuids dictionary-encoded) a few hundred
    thousand at a time, each checked by ``valid_rows`` and ``valid_day_rows``; it raises
    ``UntrustedSnapshot`` at the first batch that fails them.
    """

    file: pq.ParquetFile
    version: int
    generation: int

    def batches(self) -> Iterator[pa.Table]:
        names = SCHEMA.names if self.version == 1 else SNAPSHOT_SCHEMA.names
        try:
            for batch in self.file.iter_batches(SNAPSHOT_BATCH_ROWS, columns=names):
                table = pa.Table.from_batches([batch])
                if self.version == 1:
                    table = with_day_columns(table)
                whole_day = pc.fill_null(pc.equal(table["kind"], WHOLE_DAY), False)
                whole_day = whole_day.to_numpy(zero_copy_only=False)
                if not (valid_day_rows(table) & (whole_day | valid_rows(table))).all():
                    raise UntrustedSnapshot("it holds invalid records")
                yield table
        except (pa.ArrowException, OSError) as exc:
            raise UntrustedSnapshot(f"unreadable Parquet ({exc})") from exc


def read_snapshot(key: str, blob: bytes) -> Snapshot | str:
    """The snapshot, or why it cannot be trusted; raises on a foreign version."""
    try:
        file = pq.ParquetFile(pa.BufferReader(blob), read_dictionary=["device_uuid"])
        schema = file.schema_arrow
    except KeyError:
        return "malformed (no column device_uuid)"
    except (pa.ArrowException, OSError) as exc:
        return f"unreadable Parquet ({exc})"
    metadata = schema.metadata or {}
    raw_version = metadata.get(_VERSION_KEY)
    if raw_version is None:
        return "no checkpoint version in its metadata"
    version = raw_version.decode(errors="replace")
    if version not in {str(v) for v in READABLE_SNAPSHOTS}:
        raise _incompatible(key, version, SNAPSHOT_VERSION)
    try:
        generation = int(metadata.get(_GENERATION_KEY, b""))
    except ValueError as exc:
        return f"malformed ({exc})"
    expected = SCHEMA if version == "1" else SNAPSHOT_SCHEMA
    for field in expected:
        if field.name not in schema.names:
            return f"malformed (no column {field.name})"
        column_type = schema.field(field.name).type
        if pa.types.is_dictionary(column_type):
            column_type = column_type.value_type
        if column_type != field.type:
            return f"column {field.name} is {column_type}, expected {field.type}"
    return Snapshot(file, int(version), generation)


def valid_day_rows(table: pa.Table) -> npt.NDArray[np.bool_]:
    """Per row of ``SNAPSHOT_SCHEMA``: a ``day`` row is one whole UTC day with a slot mask, as
    many slot counts as the mask has bits, each within 0..MAX_SLOT_RECORDS, summing to
    ``records``; any other row has neither ``slots`` nor ``window_records``."""
    is_day = pc.fill_null(pc.equal(table["kind"], WHOLE_DAY), False).to_numpy(zero_copy_only=False)
    slots = pc.fill_null(table["slots"], 0).to_numpy()
    has_slots = table["slots"].is_valid().to_numpy(zero_copy_only=False)
    lists = table["window_records"].combine_chunks()
    has_list = lists.is_valid().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
    flat = lists.flatten()
    values = pc.fill_null(flat, -1).to_numpy().astype(np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    sums = np.bincount(owner, weights=values, minlength=len(lengths)).astype(np.int64)
    out_of_range = (values < 0) | (values > MAX_SLOT_RECORDS)
    bad_value = np.bincount(owner, weights=out_of_range, minlength=len(lengths)) > 0
    start = pc.fill_null(table["start_ms"], 1).to_numpy()
    end = pc.fill_null(table["end_ms"], 0).to_numpy()
    records = pc.fill_null(table["records"], -1).to_numpy()
    day_ok = has_slots & has_list & (slots > 0) & (slots < (1 << SLOTS_PER_DAY))
    day_ok &= (start % DAY_MS == 0) & (end == start + DAY_MS)
    day_ok &= lengths == np.bitwise_count(slots.astype(np.uint16))
    day_ok &= ~bad_value & (sums == records)
    present = {n: table[n].is_valid().to_numpy(zero_copy_only=False) for n in SCHEMA.names}
    day_ok &= present["records"] & present["day_count"] & present["sealed"]
    day_ok &= ~present["reason"] & ~present["attempts"]
    type_ok = pc.is_in(table["device_type"], value_set=_TYPES).to_numpy(zero_copy_only=False)
    day_ok &= _uuid_ok(table["device_uuid"]) & type_ok
    day_ok &= pc.fill_null(table["day_count"], -1).to_numpy() >= 0
    result: npt.NDArray[np.bool_] = np.where(is_day, day_ok, ~has_slots & ~has_list)
    return result


_VARIANT_COLUMNS: Final = ("kind", "records", "day_count", "sealed", "reason", "attempts")


def table_from_entries(entries: Sequence[Entry]) -> pa.Table:
    """Entries as rows of ``SCHEMA``, in the given order."""
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for entry in entries:
        columns["device_uuid"].append(entry.device_uuid)
        columns["device_type"].append(entry.device_type)
        columns["start_ms"].append(to_ms(entry.start))
        columns["end_ms"].append(to_ms(entry.end))
        if isinstance(entry, FinishedWindow):
            values = [FINISHED, entry.records, entry.day_count, entry.sealed, None, None]
        else:
            values = [FAILED, None, None, None, entry.reason[:MAX_REASON], entry.attempts]
        for name, value in zip(_VARIANT_COLUMNS, values, strict=True):
            columns[name].append(value)
    return pa.table(columns, schema=SCHEMA)
