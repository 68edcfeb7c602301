"""PURE  ``--shard K/N``: which devices shard K of N harvests, and where it keeps its state.

A device belongs to shard ``hash(uuid) mod N``, with a stable hash (BLAKE2b of the uuid, not
Python's per-process ``hash``), so every process and machine agrees without talking to each
other, and a device added to the account never moves the others. Each shard keeps its own
checkpoint journal (a sub-folder of the checkpoint folder, which the unsharded journal ignores)
and its own lock, so N shards share nothing but the storage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from harvester.models import Device

HARVEST_DIR: Final = "_harvest"
CHECKPOINT_PREFIX: Final = f"{HARVEST_DIR}/checkpoint"
LOCK_KEY: Final = f"{HARVEST_DIR}/lock"

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"expected K/N with 0 <= K < N, got {self.index}/{self.count} "
                "(shards are numbered from 0, like JOB_COMPLETION_INDEX)"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def owns(self, uuid: str) -> bool:
        return shard_of(uuid, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """``"2/8"`` → ``Shard(2, 8)``; ValueError with a one-line reason otherwise."""
    match = _SHARD.match(text)
    if not match:
        raise ValueError(f"expected K/N such as 0/4, got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def shard_of(uuid: str, count: int) -> int:
    """The shard (0..count-1) a device uuid belongs to, the same on every machine."""
    digest = hashlib.blake2b(uuid.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def devices_of(devices: Iterable[Device], shard: Shard | None) -> list[Device]:
    """The devices shard ``shard`` harvests (in the given order); all of them without one."""
    return [d for d in devices if shard is None or shard.owns(d.uuid)]


def checkpoint_prefix(shard: Shard | None) -> str:
    """The shard's own journal folder; the unsharded run keeps the top-level one."""
    return CHECKPOINT_PREFIX if shard is None else f"{CHECKPOINT_PREFIX}/{shard.name}"


def lock_key(shard: Shard | None) -> str:
    return LOCK_KEY if shard is None else f"{LOCK_KEY}-{shard.name}"


def journal_prefixes(keys: Sequence[str]) -> list[str]:
    """Every journal folder (unsharded and each shard layout) among checkpoint keys.

    ``keys`` are storage keys under the checkpoint folder; a journal is any folder holding a
    snapshot or a segment, so a dataset harvested with different N is seen whole.
    """
    found: set[str] = set()
    for key in keys:
        folder, _, name = key.rpartition("/")
        if folder.startswith(CHECKPOINT_PREFIX) and (
            name == "snapshot.ckpt" or (name.startswith("seg-") and name.endswith(".jsonl"))
        ):
            found.add(folder)
    return sorted(found)


def state_key(shard: Shard | None, name: str) -> str:
    """Where a run keeps the state file ``name`` (``devices.json``, ``availability.json``).

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
