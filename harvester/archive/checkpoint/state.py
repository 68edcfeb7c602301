"""The checkpoint's state in memory: columnar, so a million windows load in well under a second.

``resolve`` folds entry rows (snapshot, then segments, in order) into one row per identity with
vectorised sorting; per-row Python objects are made only for what a caller asks for.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from harvester.archive.checkpoint import format as fmt
from harvester.models import DEVICE_TYPES, DeviceType, FailedWindow, FinishedWindow

_BoolArray = npt.NDArray[np.bool_]
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True, slots=True)
class DayProgress:
    """What the checkpoint knows about one device's UTC day.

    ``day_count`` is the largest server count its finished windows were planned against (a
    day's count only grows, so that is the newest); 0 when none finished.
    """

    device_uuid: str
    device_type: DeviceType
    day: dt.date
    windows_finished: int
    records: int
    day_count: int
    windows_failed: int


@dataclass(frozen=True, slots=True)
class FinishedColumns:
    """Finished windows, one row per identity, sorted by (uuid code, start, end).

    ``keys`` packs (uuid code, UTC day) into one non-decreasing int64, so a device-day's
    windows are the slice ``searchsorted(keys, k)`` — no per-row Python object until asked.
    """

    uuids: list[str]
    code_of: dict[str, int]
    code: fmt.IntArray
    type_code: fmt.IntArray
    start: fmt.IntArray
    end: fmt.IntArray
    records: fmt.IntArray
    day_count: fmt.IntArray
    sealed: _BoolArray
    keys: fmt.IntArray

    def __len__(self) -> int:
        return len(self.start)

    def days_of(self, uuid: str) -> fmt.IntArray:
        """The UTC days (``date.toordinal``) one device has finished windows of, ascending."""
        code = self.code_of.get(uuid)
        if code is None:
            return np.zeros(0, np.int64)
        lo = int(self.keys.searchsorted(_group_key(np.int64(code), np.int64(-fmt.DAY_BIAS))))
        hi = int(self.keys.searchsorted(_group_key(np.int64(code + 1), np.int64(-fmt.DAY_BIAS))))
        epoch_days = (np.unique(self.keys[lo:hi]) & 0xFFFFFFFF) - fmt.DAY_BIAS
        return epoch_days + _EPOCH_ORDINAL

    def windows_of(self, uuid: str, day: dt.date) -> list[FinishedWindow]:
        """The finished windows of one device's UTC day, by (start, end)."""
        code = self.code_of.get(uuid)
        if code is None:
            return []
        key = _group_key(np.int64(code), np.int64(fmt.day_ordinal(day)))
        lo = int(self.keys.searchsorted(key, "left"))
        hi = int(self.keys.searchsorted(key, "right"))
        columns = (self.type_code, self.start, self.end, self.records, self.day_count, self.sealed)
        rows = zip(*(column[lo:hi].tolist() for column in columns), strict=True)
        return [
            FinishedWindow(
                uuid, DEVICE_TYPES[kind], fmt.from_ms(start), fmt.from_ms(end), n, count, sealed
            )
            for kind, start, end, n, count, sealed in rows
        ]

    def rows(self) -> pa.Table:
        """These windows as ``SCHEMA`` rows (kind "fin")."""
        n = len(self)

        def decode(codes: fmt.IntArray, values: Sequence[str]) -> pa.Array:
            indices = pa.array(codes.astype(np.int32))
            dictionary = pa.array(values, pa.string())
            return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())

        columns = {
            "kind": decode(np.zeros(n, np.int64), [fmt.FINISHED]),
            "device_uuid": decode(self.code, self.uuids),
            "device_type": decode(self.type_code, DEVICE_TYPES),
            "start_ms": self.start,
            "end_ms": self.end,
            "records": self.records,
            "day_count": self.day_count,
            "sealed": self.sealed,
            "reason": pa.nulls(n, pa.string()),
            "attempts": pa.nulls(n, pa.int64()),
        }
        return pa.table(columns, schema=fmt.SCHEMA)


def _group_key(code: Any, day: Any) -> Any:
    return (code << 32) | (day + fmt.DAY_BIAS)


def _uuid_codes(tables: Sequence[pa.Table]) -> tuple[dict[str, int], fmt.IntArray]:
    """One code per distinct uuid over all tables (plain or dictionary-typed columns)."""
    code_of: dict[str, int] = {}
    parts = [np.zeros(0, np.int64)]
    for table in tables:
        column = table["device_uuid"]
        if column.num_chunks == 0:
            continue
        if pa.types.is_dictionary(column.type):
            column = column.unify_dictionaries()
            dictionary = column.chunk(0).dictionary
            indices = np.concatenate(
                [chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks]
            )
        else:
            encoded = column.combine_chunks().dictionary_encode()
            dictionary, indices = encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)
        remap = [code_of.setdefault(uuid, len(code_of)) for uuid in dictionary.to_pylist()]
        parts.append(np.asarray(remap, np.int64)[indices] if remap else indices)
    return code_of, np.concatenate(parts).astype(np.int64)


def _last_of_each(code: fmt.IntArray, start: fmt.IntArray, end: fmt.IntArray) -> _BoolArray:
    """For rows sorted by identity: True where the next row has another identity."""
    same = (code[1:] == code[:-1]) & (start[1:] == start[:-1]) & (end[1:] == end[:-1])
    last: _BoolArray = np.append(~same, True) if len(code) else np.zeros(0, np.bool_)
    return last


def resolve(tables: Sequence[pa.Table]) -> tuple[FinishedColumns, dict[fmt.Identity, FailedWindow]]:
    """Fold entries (in table order, then row order; later wins) into the current state.

    Per identity, the last finished row is the finished window; the last row overall, if it
    is a failure, is the current failure (a later finished entry cleared any before it).
    """
    code_of, code = _uuid_codes(tables)
    uuids = list(code_of)
    plain = [t.drop_columns(["device_uuid"]).replace_schema_metadata(None) for t in tables]
    rows = pa.concat_tables(plain) if plain else fmt.SCHEMA.remove(1).empty_table()

    def ints(name: str) -> fmt.IntArray:
        return np.asarray(pc.fill_null(rows[name], 0).to_numpy(), np.int64)

    def codes(name: str, values: Sequence[str]) -> fmt.IntArray:
        found = pc.index_in(rows[name], value_set=pa.array(values, pa.string()))
        return np.asarray(pc.fill_null(found, 0).to_numpy(), np.int64)

    kind, start, end = codes("kind", [fmt.FINISHED, fmt.FAILED]), ints("start_ms"), ints("end_ms")
    order = np.lexsort((np.arange(len(code)), end, start, code))
    last = _last_of_each(code[order], start[order], end[order])
    failed_at = order[last & (kind[order] == 1)]
    failed: dict[fmt.Identity, FailedWindow] = {}
    details = rows.select(["device_type", "reason", "attempts"]).take(failed_at).to_pylist()
    for i, detail in zip(failed_at.tolist(), details, strict=True):
        entry = FailedWindow(
            device_uuid=uuids[code[i]],
            device_type=detail["device_type"],
            start=fmt.from_ms(int(start[i])),
            end=fmt.from_ms(int(end[i])),
            reason=detail["reason"],
            attempts=detail["attempts"],
        )
        failed[fmt.identity(entry)] = entry
    at = order[kind[order] == 0]
    at = at[_last_of_each(code[at], start[at], end[at])]
    finished = FinishedColumns(
        uuids=uuids,
        code_of=code_of,
        code=code[at],
        type_code=codes("device_type", DEVICE_TYPES)[at],
        start=start[at],
        end=end[at],
        records=ints("records")[at],
        day_count=ints("day_count")[at],
        sealed=np.asarray(pc.fill_null(rows["sealed"], False).to_numpy(zero_copy_only=False))[at],
        keys=_group_key(code[at], start[at] // fmt.DAY_MS),
    )
    return finished, failed


def day_progress(
    finished: FinishedColumns, failed: dict[fmt.Identity, FailedWindow]
) -> list[DayProgress]:
    failures = Counter((f.device_uuid, f.day) for f in failed.values())
    failure_types = {(f.device_uuid, f.day): f.device_type for f in failed.values()}
    progress: dict[tuple[str, dt.date], DayProgress] = {}
    if len(finished):
        starts = np.flatnonzero(np.diff(finished.keys, prepend=finished.keys[0] - 1))
        counts = np.diff(np.append(starts, len(finished)))
        records = np.add.reduceat(finished.records, starts)
        day_counts = np.maximum.reduceat(finished.day_count, starts)
        days = finished.start[starts] // fmt.DAY_MS
        dates = {d: fmt.from_ms(d * fmt.DAY_MS).date() for d in np.unique(days).tolist()}
        groups = zip(
            finished.code[starts].tolist(),
            finished.type_code[starts].tolist(),
            days.tolist(),
            counts.tolist(),
            records.tolist(),
            day_counts.tolist(),
            strict=True,
        )
        for code, type_code, day, count, total, day_count in groups:
            uuid, date = finished.uuids[code], dates[day]
            progress[(uuid, date)] = DayProgress(
                device_uuid=uuid,
                device_type=DEVICE_TYPES[type_code],
                day=date,
                windows_finished=count,
                records=total,
                day_count=day_count,
                windows_failed=failures.pop((uuid, date), 0),
            )
    for (uuid, date), count in failures.items():
        device_type = failure_types[(uuid, date)]
        progress[(uuid, date)] = DayProgress(uuid, device_type, date, 0, 0, 0, count)
    return [progress[key] for key in sorted(progress)]
