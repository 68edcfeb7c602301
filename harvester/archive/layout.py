"""PURE  Every storage key of an archive, built and parsed here and nowhere else; the one
place server text becomes part of a path, and the one check every key passes.

The archive::

    device_type=T/device_id=U/day=D/U_D.parquet   a file per device-day (``--partition day``)
    device_type=T/device_id=U/month=M/U_M.parquet a file per device-month (``--partition month``)
                                                   (``partition_file_key``, ``parse_file_key``)
    _harvest/archive.json                          the archive's partition (``ARCHIVE_KEY``)
    _harvest/lock[-shard-K-of-N]                   who is writing (``lock_key``)
    _harvest/checkpoint[/shard-K-of-N]/            the journal (``checkpoint_prefix``):
        snapshot.ckpt, seg-<gen>-<seq>-<run>.jsonl  (``SNAPSHOT_NAME``, ``segment_name``)
    _harvest/devices[.shard-K-of-N].json           state files (``state_key``)
    _harvest/availability[.shard-K-of-N].arrow
    _harvest/schema/<TYPE>.arrow, ALL.arrow/.json  unified schemas (``schema_key``)
    _harvest/runs/<run id>.json                    one manifest per run (``run_key``)
    .<name>.tmp-<8 hex>                            a write in progress (``temporary_name``)

Device uuids come from the server, so any text may arrive. Partition values are encoded as
Hive and Spark encode them, so that readers decode them back to the server's text: every
character outside ``[A-Za-z0-9._-]`` becomes ``%XX`` (uppercase hex of each UTF-8 byte), and
so does a leading ``.`` or ``_``. ``/``, ``\\``, ``=``, ``%``, ``:``, spaces, NUL, control and
non-ASCII characters thus never reach a path; ``.`` and ``..`` become ``%2E`` and ``%2E.``; and
no day file's name starts with ``.`` or ``_``, which dataset readers skip as hidden (and this
harvester sweeps away as temporary). ``pyarrow.dataset`` (``segment_encoding="uri"``, its
default) and DuckDB (``hive_partitioning = true``) both read ``device_id`` back decoded. A plain
uuid such as ``1041`` is its own encoding: its keys are the same as before encoding existed.

:func:`checked_key` is the proof every storage seam applies to every key before touching it:
a relative, ``/``-separated key of non-empty segments, none of them ``.`` or ``..``, with no
NUL or backslash, can only name something under the root it is joined to.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
import string
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from harvester.errors import StorageError
from harvester.plan.shards import Shard

_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()

_SAFE: Final = frozenset(string.ascii_letters + string.digits + "._-")
#: Longest encoded uuid accepted. The longest name built from it, a day file's temporary
#: (``.<uuid>_YYYY-MM-DD.parquet.tmp-<8 hex>``), is this plus 33 bytes: 233, under the 255 bytes
#: ext4, XFS, APFS and NTFS allow a name; S3's 1,024-byte keys hold it twice over.
MAX_VALUE_BYTES: Final = 200
#: Longest key segment ``checked_key`` lets through: the usual file-system name limit.
MAX_SEGMENT_BYTES: Final = 255


def encode_value(text: str) -> str:
    """``text`` as a partition value: Hive-style ``%XX`` escapes (see the module docstring)."""
    return "".join(
        char
        if char in _SAFE and not (index == 0 and char in "._")
        else "".join(f"%{byte:02X}" for byte in char.encode())
        for index, char in enumerate(text)
    )


def decode_value(text: str) -> str:
    """The server's text back from a partition value written by :func:`encode_value`."""
    return urllib.parse.unquote(text)


def unusable_uuid(uuid: str) -> str | None:
    """Why ``uuid`` cannot name a device's folder, or None when it can."""
    if not uuid:
        return "empty uuid"
    size = len(encode_value(uuid).encode())
    if size > MAX_VALUE_BYTES:
        return f"uuid is {size} bytes once encoded, over the limit of {MAX_VALUE_BYTES}"
    return None


def device_prefix(device_type: str, uuid: str) -> str:
    """The folder of one device's files, ending in ``/``."""
    return f"device_type={encode_value(device_type)}/device_id={encode_value(uuid)}/"


#: How an archive groups a device's records into files (``--partition``), fixed when the
#: archive is created. ``day`` suits dense devices (a month file of a 1 Hz device would be
#: rewritten whole, ~2.6 M rows, for every day added to it); ``month`` suits sparse ones, whose
#: day files would hold a few dozen rows each (README "Day or month files").
DAY: Final = "day"
MONTH: Final = "month"
PARTITIONS: Final = (DAY, MONTH)
#: An archive without a recorded partition (every archive written before month files) is ``day``.
DEFAULT_PARTITION: Final = DAY
_MONTH_VALUE: Final = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """The UTC days one data file holds: one day, or one calendar month (``first`` its 1st)."""

    partition: str
    first: dt.date

    @property
    def last(self) -> dt.date:
        if self.partition == DAY:
            return self.first
        return self.first.replace(day=calendar.monthrange(self.first.year, self.first.month)[1])

    @property
    def label(self) -> str:
        """The partition value: ``YYYY-MM-DD`` or ``YYYY-MM``."""
        return self.first.isoformat() if self.partition == DAY else self.first.isoformat()[:7]

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.first <= day <= self.last


def period_of(day: dt.date, partition: str) -> Period:
    """The period of ``partition`` that holds the UTC ``day``."""
    if partition == DAY:
        return Period(DAY, day)
    if partition == MONTH:
        return Period(MONTH, day.replace(day=1))
    raise ValueError(f"unknown partition {partition!r}: expected one of {', '.join(PARTITIONS)}")


def period_firsts(ordinals: npt.NDArray[np.integer], partition: str) -> npt.NDArray[np.int64]:
    """``period_of(day, partition).first`` of many days at once (``date.toordinal``)."""
    if partition == DAY:
        return ordinals.astype(np.int64)
    if partition == MONTH:
        epoch = (ordinals.astype(np.int64) - _EPOCH_ORDINAL).astype("datetime64[D]")
        firsts = epoch.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        return firsts + _EPOCH_ORDINAL
    raise ValueError(f"unknown partition {partition!r}: expected one of {', '.join(PARTITIONS)}")


def partition_file_key(device_type: str, uuid: str, day: dt.date, partition: str) -> str:
    """The storage key of the one Parquet file that holds ``day`` of the device."""
    period = period_of(day, partition)
    label = period.label
    name = f"{encode_value(uuid)}_{label}.parquet"
    return f"{device_prefix(device_type, uuid)}{period.partition}={label}/{name}"


def day_file_key(device_type: str, uuid: str, day: dt.date) -> str:
    """The storage key of a device-day's one Parquet file (``--partition day``)."""
    return partition_file_key(device_type, uuid, day, DAY)


def parse_file_key(key: str) -> tuple[str, str, Period] | None:
    """``(device type, uuid, period)`` of a :func:`partition_file_key` of either partition,
    decoded; None for other keys."""
    parts = key.split("/")
    if len(parts) != 4 or not parts[3].endswith(".parquet"):
        return None
    if not (parts[0].startswith("device_type=") and parts[1].startswith("device_id=")):
        return None
    partition, _, value = parts[2].partition("=")
    period = _parse_period(partition, value)
    if period is None:
        return None
    device_type, uuid = (decode_value(p.split("=", 1)[1]) for p in parts[:2])
    return device_type, uuid, period


def _parse_period(partition: str, value: str) -> Period | None:
    try:
        if partition == DAY:
            return Period(DAY, dt.date.fromisoformat(value))
        match = _MONTH_VALUE.match(value)
        if partition == MONTH and match is not None:
            return Period(MONTH, dt.date(int(match[1]), int(match[2]), 1))
    except ValueError:
        return None
    return None


def parse_day_key(key: str) -> tuple[str, str, dt.date] | None:
    """``(device type, uuid, day)`` of a :func:`day_file_key`, decoded; None for other keys
    (month files included)."""
    parsed = parse_file_key(key)
    if parsed is None or parsed[2].partition != DAY:
        return None
    device_type, uuid, period = parsed
    return device_type, uuid, period.first


def parse_device_prefix(prefix: str) -> tuple[str, str] | None:
    """``(device type, uuid)`` of a :func:`device_prefix`, decoded; None for other folders."""
    parts = prefix.removesuffix("/").split("/")
    if len(parts) != 2:
        return None
    type_field, _, type_value = parts[0].partition("=")
    id_field, _, uuid = parts[1].partition("=")
    if type_field != "device_type" or id_field != "device_id" or not type_value or not uuid:
        return None
    return decode_value(type_value), decode_value(uuid)


def key_device(key: str) -> tuple[str, str]:
    """``(device type, uuid)`` of a data key of either partition, decoded."""
    device_type, _, rest = key.partition("/")
    uuid = rest.partition("/")[0]
    return decode_value(device_type.partition("=")[2]), decode_value(uuid.partition("=")[2])


def checked_key(key: str) -> str:
    """``key`` itself, once proven to stay under the root; ``StorageError`` otherwise."""
    problem = _key_problem(key)
    if problem is not None:
        raise StorageError(f"refusing the storage key {key[:120]!r}: {problem}")
    return key


def checked_prefix(prefix: str) -> str:
    """A listing prefix (empty, or a key that may end in ``/``) checked as :func:`checked_key`."""
    if prefix:
        checked_key(prefix.removesuffix("/"))
    return prefix


def folder_prefix(prefix: str) -> str:
    """A listing prefix as a folder's: empty, or ending in ``/``."""
    return prefix if not prefix or prefix.endswith("/") else f"{prefix}/"


def _key_problem(key: str) -> str | None:
    if not key:
        return "it is empty"
    if "\x00" in key:
        return "it holds a NUL character"
    if "\\" in key:
        return "it holds a backslash"
    if key.startswith("/"):
        return "it is absolute"
    for segment in key.split("/"):
        if not segment:
            return "it has an empty segment"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


# -- the harvester's own folder -------------------------------------------------------------

HARVEST_DIR: Final = "_harvest"
CHECKPOINT_PREFIX: Final = f"{HARVEST_DIR}/checkpoint"
LOCK_KEY: Final = f"{HARVEST_DIR}/lock"
RUNS_PREFIX: Final = f"{HARVEST_DIR}/runs/"
SCHEMA_PREFIX: Final = f"{HARVEST_DIR}/schema/"
SCHEMA_SUFFIX: Final = ".arrow"
#: The cross-type schema beside the per-type ones (``--device-type ALL``).
ALL_TYPES: Final = "ALL"
#: Beside a type's schema from a widening until its files are aligned, so that a run killed in
#: between still leaves the next run something to align.
UNALIGNED_SUFFIX: Final = ".unaligned"
#: The settings fixed when the archive was created: ``{"partition": "day" | "month"}``.
ARCHIVE_KEY: Final = f"{HARVEST_DIR}/archive.json"
DEVICES_NAME: Final = "devices.json"
AVAILABILITY_NAME: Final = "availability.arrow"
#: What runs before the Parquet copy wrote; still read, never written.
LEGACY_AVAILABILITY_NAME: Final = "availability.json"
SNAPSHOT_NAME: Final = "snapshot.ckpt"
#: A damaged checkpoint file set aside as ``<name>.corrupt-<timestamp>``.
CORRUPT_MARK: Final = ".corrupt-"
_SEGMENT_NAME: Final = re.compile(r"^seg-(\d+)-(\d+)-(.+)\.jsonl$")
TMP_PREFIX: Final = "."
TMP_MARK: Final = ".tmp-"


def checkpoint_prefix(shard: Shard | None) -> str:
    """The shard's own journal folder; the unsharded run keeps the top-level one."""
    return CHECKPOINT_PREFIX if shard is None else f"{CHECKPOINT_PREFIX}/{shard.name}"


def lock_key(shard: Shard | None) -> str:
    return LOCK_KEY if shard is None else f"{LOCK_KEY}-{shard.name}"


def segment_name(generation: int, seq: int, run_id: str) -> str:
    """The name of one journal segment (one flush), ordered by generation then sequence."""
    return f"seg-{generation:010d}-{seq:08d}-{run_id}.jsonl"


def parse_segment_name(name: str) -> tuple[int, int, str] | None:
    """``(generation, seq, run id)`` of a :func:`segment_name`; None for other names."""
    match = _SEGMENT_NAME.match(name)
    return None if match is None else (int(match[1]), int(match[2]), match[3])


def journal_prefixes(keys: Sequence[str]) -> list[str]:
    """Every journal folder (unsharded and each shard layout) among checkpoint keys.

    ``keys`` are storage keys under the checkpoint folder; a journal is any folder holding a
    snapshot or a segment, so a dataset harvested with different N is seen whole.
    """
    found: set[str] = set()
    for key in keys:
        folder, _, name = key.rpartition("/")
        if folder.startswith(CHECKPOINT_PREFIX) and (
            name == SNAPSHOT_NAME or parse_segment_name(name) is not None
        ):
            found.add(folder)
    return sorted(found)


def state_key(shard: Shard | None, name: str) -> str:
    """Where a run keeps the state file ``name`` (``DEVICES_NAME``, ``AVAILABILITY_NAME``).

    Each shard writes its own copy (``devices.shard-K-of-N.json``), so shards running at once
    never overwrite one another's; readers merge every copy (``state_keys``).
    """
    if shard is None:
        return f"{HARVEST_DIR}/{name}"
    stem, _, extension = name.rpartition(".")
    return f"{HARVEST_DIR}/{stem}.{shard.name}.{extension}"


def state_keys(keys: Iterable[str], name: str) -> list[str]:
    """Every copy of the state file ``name`` among ``keys``: the unsharded one and each shard's."""
    stem, _, extension = name.rpartition(".")
    pattern = re.compile(
        rf"{HARVEST_DIR}/{re.escape(stem)}(\.shard-\d+-of-\d+)?\.{re.escape(extension)}"
    )
    return sorted(key for key in keys if pattern.fullmatch(key))


def run_key(run_id: str) -> str:
    """The manifest of one run."""
    return f"{RUNS_PREFIX}{run_id}.json"


def schema_key(device_type: str, suffix: str = SCHEMA_SUFFIX) -> str:
    """The unified schema of ``device_type`` (or its ``UNALIGNED_SUFFIX`` marker)."""
    return f"{SCHEMA_PREFIX}{device_type}{suffix}"


def key_kind(key: str) -> str:
    """What a key holds: ``day`` (a data file, day or month), ``segment``, ``snapshot`` or
    ``other``."""
    if key.endswith(".parquet") and key.startswith("device_type="):
        return "day"
    if key.startswith(CHECKPOINT_PREFIX) and parse_segment_name(key.rpartition("/")[2]):
        return "segment"
    if key.endswith(SNAPSHOT_NAME):
        return "snapshot"
    return "other"


def temporary_name(name: str, token: str) -> str:
    """The name a file is written under before it is renamed to ``name``."""
    return f"{TMP_PREFIX}{name}{TMP_MARK}{token}"


def is_temporary(key: str) -> bool:
    """True for the leftovers of an interrupted write."""
    name = key.rsplit("/", 1)[-1]
    return name.startswith(TMP_PREFIX) and TMP_MARK in name
