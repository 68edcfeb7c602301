"""The checkpoint's finished windows in memory: whole-slot days plus the windows left over.

``FinishedState`` holds most days as ``SlotDays`` rows (see ``slots``) and the rest as window
columns; a device-day is in one or the other, never both. ``absorb`` folds newer entries in
(later wins per identity): only the days they touch are expanded, merged and compacted again,
so a run's flushes and a snapshot's batches cost what they bring plus one pass over the day
index, never a rebuild of millions of windows. ``resolve`` folds entry rows (segments) into
one row per identity with vectorised sorting; per-row Python objects are made only for what a
caller asks for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harvester.archive.checkpoint import format as fmt
from harvester.archive.checkpoint.slots import (
    WINDOW_COLUMNS,
    BoolArray,
    IntArray,
    SlotDays,
    Windows,
    day_key,
    group_key,
    key_code,
    key_day,
    split_whole_days,
)
from harvester.archive.checkpoint.totals import DayProgress, DayRows, DayTotals, totals_per_device
from harvester.models import DEVICE_TYPES, DeviceType, FailedWindow, FinishedWindow, WholeSlotDays

__all__ = ["DayProgress", "DayTotals", "FinishedState", "day_totals", "from_rows", "resolve"]

_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class FinishedState:
    """Finished windows, one per identity; codes index ``uuids`` (see the module docstring)."""

    uuids: list[str]
    code_of: dict[str, int]
    days: dict[int, SlotDays]
    """Whole-slot days per device (uuid code): a fold copies only the devices it touches."""
    loose: Windows
    """Windows of the days that are not whole-slot days, sorted by (code, start, end)."""

    @staticmethod
    def empty() -> FinishedState:
        return FinishedState([], {}, {}, _no_windows())

    def __len__(self) -> int:
        return sum(part.windows for part in self.days.values()) + len(self.loose)

    # ------------------------------------------------------------------ queries

    def windows_of(self, uuid: str, day: dt.date) -> list[FinishedWindow]:
        """The finished windows of one device's UTC day, by (start, end)."""
        code = self.code_of.get(uuid)
        if code is None:
            return []
        key = day_key(code, fmt.day_ordinal(day))
        whole = self.days.get(code)
        row = whole.find(key) if whole is not None else -1
        if whole is not None and row >= 0:
            found = whole.expand(np.array([row], np.int64))
        else:
            found = self.loose.take(self._loose_rows(key))
        columns = (found.type_code, found.start, found.end, found.records)
        rows = zip(*(c.tolist() for c in (*columns, found.day_count, found.sealed)), strict=True)
        return [
            FinishedWindow(uuid, DEVICE_TYPES[k], fmt.from_ms(s), fmt.from_ms(e), n, c, z)
            for k, s, e, n, c, z in rows
        ]

    def _loose_rows(self, key: int) -> IntArray:
        keys = self.loose.keys
        return np.arange(keys.searchsorted(key, "left"), keys.searchsorted(key, "right"))

    def days_of(self, uuid: str) -> IntArray:
        """The UTC days (``date.toordinal``) one device has finished windows of, ascending."""
        code = self.code_of.get(uuid)
        if code is None:
            return np.zeros(0, np.int64)
        whole = self.days.get(code, SlotDays.empty())
        loose = self.loose.start[self.loose.code == code] // fmt.DAY_MS
        days: IntArray = np.union1d(key_day(whole.keys), loose) + _EPOCH_ORDINAL
        return days

    def device_types(self) -> dict[str, DeviceType]:
        """The type of each device with finished windows (as its windows were recorded)."""
        types = {
            self.uuids[code]: DEVICE_TYPES[int(part.type_code[0])]
            for code, part in self.days.items()
        }
        for code, kind in zip(self.loose.code.tolist(), self.loose.type_code.tolist(), strict=True):
            types.setdefault(self.uuids[code], DEVICE_TYPES[kind])
        return types

    def whole_days_of(self, uuid: str) -> WholeSlotDays:
        """One device's whole-slot days, for the planner to decide them all at once."""
        code = self.code_of.get(uuid)
        part = self.days.get(code, SlotDays.empty()) if code is not None else SlotDays.empty()
        return WholeSlotDays(
            days=(key_day(part.keys) + _EPOCH_ORDINAL).astype(np.int32),
            mask=part.mask,
            day_count=part.day_count,
            sealed=part.sealed,
            records=part.records,
        )

    def holds(self, uuid: str, start_ms: int, end_ms: int) -> bool:
        """Is the window ``(uuid, start, end)`` finished here."""
        code = self.code_of.get(uuid)
        if code is None:
            return False
        key = day_key(code, start_ms // fmt.DAY_MS)
        whole = self.days.get(code)
        row = whole.find(key) if whole is not None else -1
        if whole is not None and row >= 0:
            slot, offset = divmod(start_ms % fmt.DAY_MS, fmt.SLOT_MS)
            exact = offset == 0 and end_ms - start_ms == fmt.SLOT_MS
            return exact and bool((int(whole.mask[row]) >> slot) & 1)
        span = self._loose_rows(key)
        same = (self.loose.start[span] == start_ms) & (self.loose.end[span] == end_ms)
        return bool(same.any())

    def loose_day_rows(self) -> dict[str, DayRows]:
        """Per device uuid, partial totals per day of the windows outside whole-slot days."""
        loose = self.loose
        if not len(loose):
            return {}
        keys = loose.keys
        starts = np.flatnonzero(np.diff(keys, prepend=keys[0] - 1))
        grouped = DayRows(
            code=loose.code[starts],
            type_code=loose.type_code[starts],
            epoch_day=loose.start[starts] // fmt.DAY_MS,
            windows_finished=np.diff(np.append(starts, len(loose))),
            records=np.add.reduceat(loose.records, starts),
            day_count=np.maximum.reduceat(loose.day_count, starts),
            windows_failed=np.zeros(len(starts), np.int64),
        )
        by_uuid = {}
        for code in np.unique(grouped.code).tolist():
            at = np.flatnonzero(grouped.code == code)
            by_uuid[self.uuids[code]] = DayRows(
                *(getattr(grouped, n)[at] for n in DayRows.__slots__)
            )
        return by_uuid

    def whole_day_rows(self, uuid: str) -> DayRows:
        """Partial totals per day of one device's whole-slot days."""
        code = self.code_of.get(uuid)
        return _whole_day_rows(
            self.days.get(code, SlotDays.empty()) if code is not None else SlotDays.empty()
        )

    # ------------------------------------------------------------------ rows

    def row_batches(self, days_per_batch: int = fmt.SNAPSHOT_BATCH_ROWS) -> Iterator[pa.Table]:
        """This state as ``fmt.SNAPSHOT_SCHEMA`` rows, whole-slot days a few devices at a time,
        then the other windows, so that writing a snapshot never holds it all as rows."""
        group: list[SlotDays] = []
        for code in sorted(self.days):
            group.append(self.days[code])
            if sum(len(part) for part in group) >= days_per_batch:
                yield self._whole_rows(SlotDays.concat(group))
                group = []
        if group:
            yield self._whole_rows(SlotDays.concat(group))
        yield self._loose_rows_table()

    def _whole_rows(self, days: SlotDays) -> pa.Table:
        n = len(days)
        day_start = key_day(days.keys) * fmt.DAY_MS
        offsets = np.append(days.first, days.windows).astype(np.int32)
        columns = {
            "kind": _decode(np.zeros(n, np.int64), [fmt.WHOLE_DAY]),
            "device_uuid": _decode(key_code(days.keys), self.uuids),
            "device_type": _decode(days.type_code.astype(np.int64), DEVICE_TYPES),
            "start_ms": day_start,
            "end_ms": day_start + fmt.DAY_MS,
            "records": days.records,
            "day_count": days.day_count,
            "sealed": days.sealed,
            "reason": pa.nulls(n, pa.string()),
            "attempts": pa.nulls(n, pa.int64()),
            "slots": days.mask.astype(np.int32),
            "window_records": pa.ListArray.from_arrays(
                offsets, pa.array(days.window_records.astype(np.int32))
            ),
        }
        return pa.table(columns, schema=fmt.SNAPSHOT_SCHEMA)

    def _loose_rows_table(self) -> pa.Table:
        loose, m = self.loose, len(self.loose)
        columns = {
            "kind": _decode(np.zeros(m, np.int64), [fmt.FINISHED]),
            "device_uuid": _decode(loose.code, self.uuids),
            "device_type": _decode(loose.type_code, DEVICE_TYPES),
            "start_ms": loose.start,
            "end_ms": loose.end,
            "records": loose.records,
            "day_count": loose.day_count,
            "sealed": loose.sealed,
            "reason": pa.nulls(m, pa.string()),
            "attempts": pa.nulls(m, pa.int64()),
            "slots": pa.nulls(m, pa.int32()),
            "window_records": pa.nulls(m, fmt.SNAPSHOT_SCHEMA.field("window_records").type),
        }
        return pa.table(columns, schema=fmt.SNAPSHOT_SCHEMA)

    # ------------------------------------------------------------------ folding

    def absorb(self, newer: FinishedState) -> FinishedState:
        """This state with ``newer``'s windows folded in: per identity, ``newer`` wins."""
        uuids, code_of, remap = _register(self.uuids, self.code_of, newer.uuids)
        state = FinishedState(uuids, code_of, self.days, self.loose)
        for code, part in newer.days.items():
            state = state._with_days(int(remap[code]), _recode_days(part, remap))
        if len(newer.loose):
            loose = newer.loose
            state = state._with_windows(
                Windows(remap[loose.code], *(getattr(loose, n) for n in WINDOW_COLUMNS[1:]))
            )
        return state

    def _with_days(self, code: int, newer: SlotDays) -> FinishedState:
        held = self.days.get(code, SlotDays.empty())
        conflict = held.member(newer.keys) | np.isin(newer.keys, self.loose.keys)
        days = dict(self.days)
        days[code] = SlotDays.merge([held, newer.subset(np.flatnonzero(~conflict))])
        state = FinishedState(self.uuids, self.code_of, days, self.loose)
        if conflict.any():
            state = state._with_windows(newer.expand(np.flatnonzero(conflict)))
        return state

    def _with_windows(self, newer: Windows) -> FinishedState:
        touched = np.unique(newer.keys)
        days = dict(self.days)
        expanded = []
        for code in np.unique(key_code(touched)).tolist():
            held = days.get(code)
            if held is None:
                continue
            hit = held.member(touched)
            rows = held.keys.searchsorted(touched[hit])
            if len(rows):
                expanded.append(held.expand(rows))
                kept = np.setdiff1d(np.arange(len(held)), rows, assume_unique=True)
                days[code] = held.subset(kept)
        combined = Windows.concat([self.loose, *expanded, newer])
        later = np.zeros(len(combined), np.int8)
        later[len(combined) - len(newer) :] = 1
        order = np.lexsort((later, combined.end, combined.start, combined.code))
        ordered = combined.take(order)
        last = _last_of_each(ordered.code, ordered.start, ordered.end)
        ordered = ordered.take(np.flatnonzero(last))
        whole, left = split_whole_days(ordered)
        for code, part in whole.by_code().items():
            days[code] = SlotDays.merge([days.get(code, SlotDays.empty()), part])
        days = {code: part for code, part in days.items() if len(part)}
        return FinishedState(self.uuids, self.code_of, days, ordered.take(np.flatnonzero(left)))


def _whole_day_rows(days: SlotDays) -> DayRows:
    return DayRows(
        code=key_code(days.keys),
        type_code=days.type_code.astype(np.int64),
        epoch_day=key_day(days.keys),
        windows_finished=days.slot_counts,
        records=days.records,
        day_count=days.day_count,
        windows_failed=np.zeros(len(days), np.int64),
    )


def _no_windows() -> Windows:
    empty = np.zeros(0, np.int64)
    return Windows(empty, empty, empty, empty, empty, empty, np.zeros(0, np.bool_))


def _decode(codes: IntArray, values: Sequence[str]) -> pa.Array:
    indices = pa.array(codes.astype(np.int32))
    dictionary = pa.array(values, pa.string())
    return pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())


def _register(
    uuids: list[str], code_of: dict[str, int], more: Sequence[str]
) -> tuple[list[str], dict[str, int], IntArray]:
    """``uuids`` extended by ``more`` (copies: older states stay valid), and ``more``'s codes."""
    if all(uuid in code_of for uuid in more):
        return uuids, code_of, np.asarray([code_of[u] for u in more] or [0], np.int64)
    uuids, code_of = list(uuids), dict(code_of)
    for uuid in more:
        if uuid not in code_of:
            code_of[uuid] = len(uuids)
            uuids.append(uuid)
    return uuids, code_of, np.asarray([code_of[u] for u in more] or [0], np.int64)


def _recode_days(days: SlotDays, remap: IntArray) -> SlotDays:
    keys = group_key(remap[key_code(days.keys)], key_day(days.keys))
    order = np.argsort(keys, kind="stable")
    recoded = SlotDays(keys, *(getattr(days, n) for n in SlotDays.__slots__[1:]))
    ordered = recoded.subset(order)
    # A duplicated day (only a damaged or hand-made snapshot has one): the later row wins.
    unique: BoolArray = np.append(ordered.keys[1:] != ordered.keys[:-1], len(ordered) > 0)
    return ordered.subset(np.flatnonzero(unique))


def _uuid_codes(tables: Sequence[pa.Table]) -> tuple[dict[str, int], IntArray]:
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


def _last_of_each(code: IntArray, start: IntArray, end: IntArray) -> BoolArray:
    """For rows sorted by identity: True where the next row has another identity."""
    same = (code[1:] == code[:-1]) & (start[1:] == start[:-1]) & (end[1:] == end[:-1])
    last: BoolArray = np.append(~same, True) if len(code) else np.zeros(0, np.bool_)
    return last


def from_rows(
    table: pa.Table,
) -> tuple[FinishedState, dict[fmt.Identity, FailedWindow]]:
    """Rows (``SCHEMA`` or ``SNAPSHOT_SCHEMA``; later rows win) as a state of their own, and
    the identities whose last row is a failure."""
    if "slots" in table.schema.names:
        whole = pc.fill_null(pc.equal(table["kind"], fmt.WHOLE_DAY), False)
        day_rows = table.filter(whole)
        windows = table.filter(pc.invert(whole)).select(fmt.SCHEMA.names)
    else:
        day_rows, windows = None, table
    state, failed = resolve([windows])
    if day_rows is None or day_rows.num_rows == 0:
        return state, failed
    code_of, code = _uuid_codes([day_rows])
    uuids, code_of, remap = _register(state.uuids, state.code_of, list(code_of))
    lists = day_rows["window_records"].combine_chunks()
    days = SlotDays.build(
        group_key(remap[code], day_rows["start_ms"].to_numpy() // fmt.DAY_MS),
        pc.index_in(day_rows["device_type"], value_set=pa.array(DEVICE_TYPES)).to_numpy(),
        day_rows["slots"].to_numpy(),
        day_rows["day_count"].to_numpy(),
        day_rows["sealed"].to_numpy(zero_copy_only=False),
        lists.flatten().to_numpy(),
    )
    days = _recode_days(days, np.arange(len(uuids), dtype=np.int64))
    return FinishedState(uuids, code_of, days.by_code(), state.loose), failed


def resolve(tables: Sequence[pa.Table]) -> tuple[FinishedState, dict[fmt.Identity, FailedWindow]]:
    """Fold entries (``SCHEMA`` rows, in table order, then row order; later wins).

    Per identity, the last finished row is the finished window; the last row overall, if it
    is a failure, is the current failure (a later finished entry cleared any before it). The
    windows come back as they are (``loose``), not yet compacted into whole-slot days.
    """
    code_of, code = _uuid_codes(tables)
    uuids = list(code_of)
    plain = [t.drop_columns(["device_uuid"]).replace_schema_metadata(None) for t in tables]
    rows = pa.concat_tables(plain) if plain else fmt.SCHEMA.remove(1).empty_table()

    def ints(name: str) -> IntArray:
        return np.asarray(pc.fill_null(rows[name], 0).to_numpy(), np.int64)

    def codes(name: str, values: Sequence[str]) -> IntArray:
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
    sealed = np.asarray(pc.fill_null(rows["sealed"], False).to_numpy(zero_copy_only=False))
    loose = Windows(
        code=code[at],
        type_code=codes("device_type", DEVICE_TYPES)[at],
        start=start[at],
        end=end[at],
        records=ints("records")[at],
        day_count=ints("day_count")[at],
        sealed=sealed[at],
    )
    return FinishedState(uuids, code_of, {}, loose), failed


def day_totals(finished: FinishedState, failed: dict[fmt.Identity, FailedWindow]) -> DayTotals:
    """Per device-day: finished windows, their records, the newest day count, failures."""
    extra: dict[str, list[DayRows]] = {
        uuid: [rows] for uuid, rows in finished.loose_day_rows().items()
    }
    by_device: dict[str, list[FailedWindow]] = {}
    for failure in failed.values():
        by_device.setdefault(failure.device_uuid, []).append(failure)
    for uuid, failures in by_device.items():
        n = len(failures)
        starts = np.fromiter((fmt.to_ms(f.start) for f in failures), np.int64, n)
        types = (DEVICE_TYPES.index(f.device_type) for f in failures)
        extra.setdefault(uuid, []).append(
            DayRows(
                code=np.zeros(n, np.int64),
                type_code=np.fromiter(types, np.int64, n),
                epoch_day=starts // fmt.DAY_MS,
                windows_finished=np.zeros(n, np.int64),
                records=np.zeros(n, np.int64),
                day_count=np.zeros(n, np.int64),
                windows_failed=np.ones(n, np.int64),
            )
        )
    sizes = {finished.uuids[code]: len(part) for code, part in finished.days.items()}
    for uuid, parts in extra.items():
        sizes[uuid] = sizes.get(uuid, 0) + sum(len(part.epoch_day) for part in parts)

    def rows_of(uuid: str) -> list[DayRows]:
        return [finished.whole_day_rows(uuid), *extra.get(uuid, [])]

    return totals_per_device(sizes, rows_of)
