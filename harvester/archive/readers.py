"""Reading the archive back with every field and string partition keys.

Two traps this module steps around (see README "Querying the archive"):

- Readers that discover files take the schema of the first file they meet in path order.
  Within one device type that is safe (the sink keeps that file on the type's whole schema),
  across types it is not: the fields differ entirely. The union of all types is recorded
  under ``_harvest/schema/`` and passed to the reader explicitly here.
- Hive partition values are inferred: ``device_id=0041`` becomes the integer 41. The
  partitioning schema below reads ``device_type`` and ``device_id`` as strings, and ``day`` as a
  date or, in an archive of month files (``_harvest/archive.json``), ``month`` as ``YYYY-MM``
  text. Values are %XX-decoded (pyarrow's default ``segment_encoding="uri"``), which undoes
  the encoding of ``harvester.archive.layout``: ``device_id`` is the server's raw uuid.

``out`` may be a local folder or any URI that ``pyarrow.fs`` resolves (``s3://bucket/prefix``).
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from harvester.archive.layout import (
    ALL_TYPES,
    ARCHIVE_KEY,
    DAY,
    DEFAULT_PARTITION,
    MONTH,
    SCHEMA_PREFIX,
    SCHEMA_SUFFIX,
    schema_key,
)
from harvester.archive.settings import partition_from_record
from harvester.errors import StorageError
from harvester.records.schema import unify

#: The archive's partition keys as they should be read (a day archive's).
PARTITION_SCHEMA: Final = pa.schema(
    [("device_type", pa.string()), ("device_id", pa.string()), ("day", pa.date32())]
)
#: The last partition key of each layout: the UTC day as a date, the month as ``YYYY-MM``.
PERIOD_FIELDS: Final = {DAY: pa.field(DAY, pa.date32()), MONTH: pa.field(MONTH, pa.string())}


def _resolve(out: str | Path) -> tuple[pafs.FileSystem, str]:
    text = str(out)
    if "://" in text:
        try:
            filesystem, root = pafs.FileSystem.from_uri(text)
        except (pa.ArrowException, ValueError) as exc:
            raise StorageError(f"cannot open the archive {text}: {exc}") from exc
        return filesystem, root.rstrip("/")
    return pafs.LocalFileSystem(), Path(text).absolute().as_posix()


def _read_schema(filesystem: pafs.FileSystem, path: str) -> pa.Schema | None:
    try:
        with filesystem.open_input_stream(path) as stream:
            return pa.ipc.read_schema(pa.py_buffer(stream.read()))
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"cannot read the recorded schema {path}: {exc}") from exc


def record_schema(out: str | Path, device_type: str | None = None) -> pa.Schema:
    """The recorded schema of the records (no partition keys): one type's, or every type's.

    The union of everything the writers recorded (``harvester.archive.schemas.SchemaRegistry``):
    the published ``<TYPE>.arrow`` or ``ALL.arrow`` first, so that fields keep its order, then
    every per-type file and source, so that a field a shard recorded a moment ago is there
    too, and archives written before ``ALL.arrow`` existed get the union of their types.
    """
    filesystem, root = _resolve(out)
    published = f"{root}/{schema_key(device_type or ALL_TYPES)}"
    selector = pafs.FileSelector(f"{root}/{SCHEMA_PREFIX}", allow_not_found=True)
    paths = sorted(
        info.path
        for info in filesystem.get_file_info(selector)
        if _records(info.base_name, device_type) and info.path != published
    )
    found = [
        schema.remove_metadata()
        for path in [published, *paths]
        if (schema := _read_schema(filesystem, path)) is not None
    ]
    if not found:
        if device_type is not None:
            raise StorageError(f"no recorded schema for device type {device_type} in {out}")
        raise StorageError(f"no recorded schema under {out}/{SCHEMA_PREFIX}: is it an archive?")
    return reduce(unify, found)


def _records(name: str, device_type: str | None) -> bool:
    """Whether the schema folder's file ``name`` records ``device_type`` (any type: None)."""
    if not name.endswith(SCHEMA_SUFFIX) or name.startswith("."):
        return False
    stem = name.removesuffix(SCHEMA_SUFFIX)
    return device_type is None or stem == device_type or stem.startswith(f"{device_type}.")


def partition_of(out: str | Path) -> str:
    """The archive's partition, ``day`` or ``month`` (``day`` when it records none)."""
    filesystem, root = _resolve(out)
    try:
        with filesystem.open_input_stream(f"{root}/{ARCHIVE_KEY}") as stream:
            record = stream.read()
    except FileNotFoundError:
        return DEFAULT_PARTITION
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"cannot read {out}/{ARCHIVE_KEY}: {exc}") from exc
    return partition_from_record(record, str(out))


def partitioning(device_type: str | None = None, partition: str = DAY) -> ds.Partitioning:
    """Hive partitioning with string ids and the ``partition``'s own key; for one type's
    folder, without ``device_type``."""
    fields = [f for f in PARTITION_SCHEMA if device_type is None or f.name != "device_type"]
    fields[-1] = PERIOD_FIELDS[partition]
    return ds.partitioning(pa.schema(fields), flavor="hive")


def unified_schema(out: str | Path, device_type: str | None = None) -> pa.Schema:
    """The recorded record schema followed by the partition keys: what ``dataset`` reads."""
    schema = record_schema(out, device_type)
    for field in partitioning(device_type, partition_of(out)).schema:
        schema = schema.append(field)
    return schema


def dataset(out: str | Path, device_type: str | None = None) -> ds.Dataset:
    """The whole archive (or one type's folder) as a ``pyarrow.dataset`` with every field."""
    filesystem, root = _resolve(out)
    base = root if device_type is None else f"{root}/device_type={device_type}"
    return ds.dataset(
        base,
        filesystem=filesystem,
        format="parquet",
        partitioning=partitioning(device_type, partition_of(out)),
        schema=unified_schema(out, device_type),
    )
