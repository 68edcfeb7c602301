"""On-disk format of the checkpoint journal, and its columnar in-memory state.

A segment is JSON Lines: a header ``{"checkpoint_version": 1, "generation": G, "seq": S,
"run_id": "...", "entries": N}`` then N entries with short keys (they are most of the bytes a
reopen after a crash has to parse)::

    {"k": "fin",  "u": uuid, "t": type, "s": start_ms, "e": end_ms, "n": records, "c": day_count,
     "z": sealed}
    {"k": "fail", "u": uuid, "t": type, "s": start_ms, "e": end_ms, "r": reason, "a": attempts}

The snapshot is one Parquet file of the same columns (``kind`` .. ``attempts`` below) whose
schema metadata carries the version and the generation it has absorbed.

Segments are parsed in bulk by ``pyarrow.json`` against an explicit schema (strict types, no
unknown keys) and checked with vectorised rules; only a segment that fails them is read line
by line, to keep everything before the first damaged line and report where the damage is.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
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

CHECKPOINT_VERSION: Final = 1
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_DAY: Final = EPOCH.date()
_MS: Final = dt.timedelta(milliseconds=1)
DAY_MS: Final = 86_400_000
#: Days are shifted into the low 32 bits of a group key; any date a sensor can have fits.
DAY_BIAS: Final = 1 << 31

FINISHED: Final = "fin"
FAILED: Final = "fail"
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
_SHORT: Final = dict(zip("kutsenczra", SCHEMA.names, strict=True))
_JSON_SCHEMA: Final = pa.schema([pa.field(k, SCHEMA.field(n).type) for k, n in _SHORT.items()])
_KEYS: Final = {FINISHED: frozenset("kutsencz"), FAILED: frozenset("kutsera")}
_TYPE_OF_KEY: Final[dict[str, type]] = {"u": str, "t": str, "s": int, "e": int, "n": int}
_TYPE_OF_KEY.update({"c": int, "z": bool, "r": str, "a": int})

Identity = tuple[str, int, int]
Entry = FinishedWindow | FailedWindow
IntArray = npt.NDArray[np.int64]


def to_ms(moment: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime (a naive one raises TypeError: a bug)."""
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def day_ordinal(day: dt.date) -> int:
    return (day - _EPOCH_DAY).days


def identity(entry: Entry) -> Identity:
    return (entry.device_uuid, to_ms(entry.start), to_ms(entry.end))


# ---------------------------------------------------------------- segments


def encode_segment(run_id: str, generation: int, seq: int, entries: Sequence[Entry]) -> bytes:
    header: dict[str, Any] = {"checkpoint_version": CHECKPOINT_VERSION, "run_id": run_id}
    header |= {"generation": generation, "seq": seq, "entries": len(entries)}
    lines = [orjson.dumps(header)]
    for entry in entries:
        common: dict[str, Any] = {"u": entry.device_uuid, "t": entry.device_type}
        common |= {"s": to_ms(entry.start), "e": to_ms(entry.end)}
        if isinstance(entry, FinishedWindow):
            extra: dict[str, Any] = {"n": entry.records, "c": entry.day_count, "z": entry.sealed}
            lines.append(orjson.dumps({"k": FINISHED, **common, **extra}))
        else:
            extra = {"r": entry.reason[:MAX_REASON], "a": entry.attempts}
            lines.append(orjson.dumps({"k": FAILED, **common, **extra}))
    lines.append(b"")
    return b"\n".join(lines)


@dataclass(frozen=True, slots=True)
class DecodedSegment:
    """The trusted rows of one segment (``SCHEMA``), and what was wrong with the rest."""

    key: str
    rows: pa.Table
    problem: str | None


def _incompatible(key: str, version: object) -> IncompatibleCheckpointError:
    return IncompatibleCheckpointError(
        f"the checkpoint file {key} was written by an incompatible harvester version "
        f"(checkpoint format {version!r}, this harvester reads {CHECKPOINT_VERSION}); "
        "use a new --out or the matching version"
    )


def _split_header(key: str, blob: bytes) -> tuple[int, bytes] | str:
    """(entries, body) or what is wrong with the header; raises on a foreign version."""
    if not blob:
        return "empty segment"
    first, _, body = blob.partition(b"\n")
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError:
        return "unreadable header"
    if not isinstance(header, dict) or "checkpoint_version" not in header:
        return "header without a checkpoint_version"
    if header["checkpoint_version"] != CHECKPOINT_VERSION:
        raise _incompatible(key, header["checkpoint_version"])
    entries = header.get("entries")
    if type(entries) is not int or entries < 0:
        return "header without a valid entry count"
    return entries, body


def _read_json(body: bytes) -> pa.Table:
    options = pajson.ParseOptions(explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="error")
    table = pajson.read_json(io.BytesIO(body), parse_options=options)
    return table.rename_columns(SCHEMA.names)


def _bulk(bodies: Sequence[bytes], entries: int) -> pa.Table | None:
    """All bodies parsed as one, if every line is a valid entry and the counts add up."""
    if entries == 0:
        return SCHEMA.empty_table()
    body = b"".join(bodies)
    if not body.endswith(b"\n") or body.count(b"\n") != entries:
        return None
    try:
        table = _read_json(body)
    except pa.ArrowInvalid:
        return None
    if table.num_rows != entries or not bool(valid_rows(table).all()):
        return None
    return table


def _line_by_line(body: bytes, entries: int) -> tuple[pa.Table, str | None]:
    """The valid entries before the first damaged line, and a description of the damage."""
    rows: list[dict[str, Any]] = []
    problem: str | None = None
    lines = body.split(b"\n")
    for number, line in enumerate(lines[:-1], start=2):
        entry = _parse_entry(line)
        if entry is None:
            problem = f"garbage record at line {number}"
            break
        rows.append(entry)
    else:
        if lines[-1]:
            problem = f"torn last record at line {len(lines) + 1}"
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    valid = valid_rows(table)
    if not valid.all():
        first_bad = int(np.argmin(valid))
        table = table.slice(0, first_bad)
        problem = f"invalid record at line {first_bad + 2}"
    if problem is None and table.num_rows != entries:
        problem = f"{table.num_rows} records where the header announced {entries}"
    return table, problem


def _parse_entry(line: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or _KEYS.get(str(obj.get("k"))) != obj.keys():
        return None
    if any(type(obj[k]) is not _TYPE_OF_KEY[k] for k in obj if k != "k"):
        return None
    return {_SHORT[k]: v for k, v in obj.items()}


def decode_segments(blobs: Sequence[tuple[str, bytes]]) -> list[DecodedSegment]:
    """Decode segments in order; all in one bulk parse unless something is damaged."""
    split = [(key, _split_header(key, blob)) for key, blob in blobs]
    sound = [(key, parts) for key, parts in split if not isinstance(parts, str)]
    if len(sound) == len(split):
        counts = [parts[0] for _, parts in sound]
        bulk = _bulk([parts[1] for _, parts in sound], sum(counts))
        if bulk is not None:
            offsets = np.cumsum([0, *counts])
            return [
                DecodedSegment(key, bulk.slice(int(offsets[i]), counts[i]), None)
                for i, (key, _) in enumerate(sound)
            ]
    decoded = []
    for key, parts in split:
        if isinstance(parts, str):
            decoded.append(DecodedSegment(key, SCHEMA.empty_table(), parts))
            continue
        table = _bulk([parts[1]], parts[0])
        if table is not None:
            decoded.append(DecodedSegment(key, table, None))
        else:
            decoded.append(DecodedSegment(key, *_line_by_line(parts[1], parts[0])))
    return decoded


def valid_rows(table: pa.Table) -> npt.NDArray[np.bool_]:
    """Per row: the fields its kind needs are there and make sense, the others are null."""
    kind = pc.index_in(table["kind"], value_set=_KINDS).to_numpy(zero_copy_only=False)
    present = {n: table[n].is_valid().to_numpy(zero_copy_only=False) for n in SCHEMA.names}
    values = {n: pc.fill_null(table[n], 0).to_numpy() for n in ("start_ms", "end_ms")}
    values |= {n: pc.fill_null(table[n], 0).to_numpy() for n in ("records", "day_count")}
    values["attempts"] = pc.fill_null(table["attempts"], 0).to_numpy()
    uuid = table["device_uuid"]
    if pa.types.is_dictionary(uuid.type):
        uuid = uuid.cast(pa.string())
    uuid_ok = pc.fill_null(pc.greater(pc.utf8_length(uuid), 0), False)
    type_ok = pc.is_in(table["device_type"], value_set=_TYPES).to_numpy(zero_copy_only=False)
    common = uuid_ok.to_numpy(zero_copy_only=False) & type_ok
    common &= present["start_ms"] & present["end_ms"] & (values["start_ms"] < values["end_ms"])
    finished = (kind == 0) & present["records"] & present["day_count"] & present["sealed"]
    finished &= (values["records"] >= 0) & (values["day_count"] >= 0)
    finished &= ~present["reason"] & ~present["attempts"]
    failed = (kind == 1) & present["reason"] & present["attempts"] & (values["attempts"] >= 0)
    failed &= ~present["records"] & ~present["day_count"] & ~present["sealed"]
    result: npt.NDArray[np.bool_] = common & (finished | failed)
    return result


# ---------------------------------------------------------------- snapshot


def write_snapshot(handle: BinaryIO, rows: pa.Table, generation: int) -> None:
    metadata = {_VERSION_KEY: str(CHECKPOINT_VERSION), _GENERATION_KEY: str(generation)}
    pq.write_table(rows.replace_schema_metadata(metadata), handle, compression="zstd")


def read_snapshot(key: str, blob: bytes) -> tuple[pa.Table, int] | str:
    """(rows, generation) or why the snapshot cannot be trusted; raises on a foreign version."""
    try:
        table = pq.read_table(pa.BufferReader(blob), read_dictionary=["device_uuid"])
    except (pa.ArrowException, OSError) as exc:
        return f"unreadable Parquet ({exc})"
    metadata = table.schema.metadata or {}
    version = metadata.get(_VERSION_KEY)
    if version is None:
        return "no checkpoint version in its metadata"
    if version != str(CHECKPOINT_VERSION).encode():
        raise _incompatible(key, version.decode(errors="replace"))
    try:
        generation = int(metadata.get(_GENERATION_KEY, b""))
        table = table.select(SCHEMA.names)
    except (ValueError, KeyError) as exc:
        return f"malformed ({exc})"
    for field in SCHEMA:
        column_type = table.schema.field(field.name).type
        if pa.types.is_dictionary(column_type):
            column_type = column_type.value_type
        if column_type != field.type:
            return f"column {field.name} is {column_type}, expected {field.type}"
    if not valid_rows(table).all():
        return "it holds invalid records"
    return table, generation


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
