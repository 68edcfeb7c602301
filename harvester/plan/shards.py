"""PURE  ``--shard K/N``: which devices shard K of N harvests.

A device belongs to shard ``hash(uuid) mod N``, with a stable hash (BLAKE2b of the uuid, not
Python's per-process ``hash``), so every process and machine agrees without talking to each
other, and a device added to the account never moves the others. Each shard keeps its own
checkpoint journal (a sub-folder of the checkpoint folder, which the unsharded journal ignores)
and its own lock (their keys: ``harvester.archive.layout``), so N shards share nothing but the
storage.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from harvester.models import Device

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
