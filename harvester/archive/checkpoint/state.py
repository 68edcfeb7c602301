"""The checkpoint's state in memory: columnar, so a million windows load in well under a second.

``resolve`` folds entry rows (snapshot, then segments, in order) into one row per identity with
vectorised sorting; per-row Python objects are made only for what a caller asks for.
"""

from __future__ import annotations

import datetime as dt
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
class DayTotals:
    """``DayProgress`` as columns: one row per device-day the checkpoint knows of, sorted by
    (uuid, day). What ``status`` and ``report`` read: a fleet of millions of device-days costs
    tens of bytes a day, where one ``DayProgress`` object each would cost hundreds.
    """

    uuids: list[str]
    """Sorted; ``code`` indexes it."""
    code: npt.NDArray[np.int32]
    type_code: npt.NDArray[np.int8]
    """Index into ``models.DEVICE_TYPES``."""
    day: npt.NDArray[np.int32]
    """``date.toordinal()`` of the UTC day."""
    windows_finished: npt.NDArray[np.int32]
    records: npt.NDArray[np.int64]
    day_count: npt.NDArray[np.int64]
    """The largest server count the day's finished windows were planned against; 0 if none."""
    windows_failed: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.day)

    def progress(self) -> list[DayProgress]:
        """These rows as ``DayProgress`` objects (for small archives and tests)."""
        rows = zip(
            self.code.tolist(),
            self.type_code.tolist(),
            self.day.tolist(),
            self.windows_finished.tolist(),
            self.records.tolist(),
            self.day_count.tolist(),
            self.windows_failed.tolist(),
            strict=True,
        )
        return [
            DayProgress(
                self.uuids[code], DEVICE_TYPES[kind], dt.date.fromordinal(day), n, total, c, f
            )
            for code, kind, day, n, total, c, f in rows
        ]


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


def day_totals(finished: FinishedColumns, failed: dict[fmt.Identity, FailedWindow]) -> DayTotals:
    """Per device-day: finished windows, their records, the newest day count, failures."""
    parts: list[tuple[list[str], _DayRows]] = []
    if len(finished):
        starts = np.flatnonzero(np.diff(finished.keys, prepend=finished.keys[0] - 1))
        parts.append(
            (
                finished.uuids,
                _DayRows(
                    code=finished.code[starts],
                    type_code=finished.type_code[starts],
                    epoch_day=finished.start[starts] // fmt.DAY_MS,
                    windows_finished=np.diff(np.append(starts, len(finished))),
                    records=np.add.reduceat(finished.records, starts),
                    day_count=np.maximum.reduceat(finished.day_count, starts),
                    windows_failed=np.zeros(len(starts), np.int64),
                ),
            )
        )
    if failed:
        owners = sorted({f.device_uuid for f in failed.values()})
        code_of = {uuid: i for i, uuid in enumerate(owners)}
        values = list(failed.values())
        n = len(values)
        parts.append(
            (
                owners,
                _DayRows(
                    code=np.fromiter((code_of[f.device_uuid] for f in values), np.int64, n),
                    type_code=np.fromiter(
                        (DEVICE_TYPES.index(f.device_type) for f in values), np.int64, n
                    ),
                    epoch_day=np.fromiter((fmt.to_ms(f.start) for f in values), np.int64, n)
                    // fmt.DAY_MS,
                    windows_finished=np.zeros(n, np.int64),
                    records=np.zeros(n, np.int64),
                    day_count=np.zeros(n, np.int64),
                    windows_failed=np.ones(n, np.int64),
                ),
            )
        )
    return merge_day_rows(parts)


@dataclass(frozen=True, slots=True)
class _DayRows:
    """Per-day partial totals, one row per (code, epoch day) or more (they are summed)."""

    code: fmt.IntArray
    type_code: fmt.IntArray
    epoch_day: fmt.IntArray
    windows_finished: fmt.IntArray
    records: fmt.IntArray
    day_count: fmt.IntArray
    windows_failed: fmt.IntArray


def merge_day_rows(parts: Sequence[tuple[Sequence[str], _DayRows]]) -> DayTotals:
    """Partial totals (each coded against its own uuid list) summed per device-day; the device
    type of a day is that of its first row (the earlier part wins)."""
    uuids = sorted({uuid for owners, _ in parts for uuid in owners})
    rank = {uuid: i for i, uuid in enumerate(uuids)}
    empty = np.zeros(0, np.int64)
    columns: dict[str, list[fmt.IntArray]] = {name: [empty] for name in _DayRows.__slots__}
    for owners, rows in parts:
        remap = np.asarray([rank[uuid] for uuid in owners] or [0], np.int64)
        for name in _DayRows.__slots__:
            value = getattr(rows, name)
            columns[name].append(remap[value] if name == "code" else np.asarray(value, np.int64))
    joined = {name: np.concatenate(values) for name, values in columns.items()}
    order = np.lexsort((joined["epoch_day"], joined["code"]))
    code, day = joined["code"][order], joined["epoch_day"][order]
    if len(order):
        starts = np.flatnonzero((np.diff(code, prepend=-1) != 0) | (np.diff(day, prepend=-1) != 0))
    else:
        starts = np.zeros(0, np.int64)

    def total(name: str) -> fmt.IntArray:
        values = joined[name][order]
        return np.add.reduceat(values, starts) if len(starts) else empty

    day_count = joined["day_count"][order]
    return DayTotals(
        uuids=uuids,
        code=code[starts].astype(np.int32),
        type_code=joined["type_code"][order][starts].astype(np.int8),
        day=(day[starts] + _EPOCH_ORDINAL).astype(np.int32),
        windows_finished=total("windows_finished").astype(np.int32),
        records=total("records"),
        day_count=np.maximum.reduceat(day_count, starts) if len(starts) else empty,
        windows_failed=total("windows_failed").astype(np.int32),
    )
