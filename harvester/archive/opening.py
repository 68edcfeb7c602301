"""Opening an archive: OUT checked to be ours and usable, the storage that reaches it, and a
read-only view of every checkpoint in it.

Every command that reads or writes an archive starts here (run and plan write or plan from
it; status, verify and report read it). Nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Sequence

from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.layout import CHECKPOINT_PREFIX, HARVEST_DIR, journal_prefixes
from harvester.archive.objectstore import ObjectStorage, local_path, open_location
from harvester.archive.storage import LocalStorage, Storage
from harvester.config import HarvestConfig
from harvester.errors import StorageError


def open_storage(config: HarvestConfig) -> Storage:
    """The archive's storage, after checking that OUT is ours (or empty) and usable.

    A folder or ``file://`` URI is a ``LocalStorage``; any other URI (``s3://bucket/prefix``)
    is object storage through ``pyarrow.fs``.
    """
    out = local_path(config.out)
    if out is None:
        storage = open_location(config.out, config.s3_endpoint)
        assert isinstance(storage, ObjectStorage)  # only a local path makes a LocalStorage
        _refuse_foreign(storage.describe(), storage.top_level_names())
        return storage
    if out.exists() and not out.is_dir():
        raise StorageError(f"--out {out} is a file, not a folder: choose a folder")
    if out.is_dir():
        _refuse_foreign(str(out), [entry.name for entry in out.iterdir()])
    return LocalStorage(out)


def _refuse_foreign(out: str, names: Sequence[str]) -> None:
    foreign = sorted(
        name for name in names if name != HARVEST_DIR and not name.startswith(("device_type=", "."))
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
        raise StorageError(
            f"--out {out} already holds files that are not a harvester archive ({shown}): "
            "choose an empty or new folder"
        )


def open_existing_storage(config: HarvestConfig) -> Storage:
    """The storage of an archive that must already exist (status, verify, report)."""
    out = local_path(config.out)
    missing = StorageError(f"no archive at --out {config.out}: run 'harvester run' first")
    if out is not None and not out.is_dir():
        raise missing
    storage = open_storage(config)
    if out is None and not storage.list_files(f"{HARVEST_DIR}/"):
        raise missing
    return storage


def read_all_checkpoints(storage: Storage) -> CheckpointJournal:
    """A read-only view of every journal (unsharded and each shard's): the whole dataset."""
    prefixes = journal_prefixes(storage.list_files(CHECKPOINT_PREFIX))
    return CheckpointJournal.open_all(storage, prefixes)
