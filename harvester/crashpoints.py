"""Fault hooks for crash and fault-injection tests, armed by ``HARVESTER_CRASH_AT``.

``HARVESTER_CRASH_AT="<point>:<n>[:<action>][,...]"`` makes the process act the n-th time it
reaches a named point (counted per point, from 1). Actions:

- ``kill`` (default): SIGKILL itself, as a power cut or ``kill -9`` would;
- ``torn``: only for the ``torn_*`` points, handled by the caller (it leaves a file cut in
  half where readers find it, then kills) — what a crash does on a store without atomic
  renames, or to a file whose rename outlived its data;
- ``enospc``, ``erofs``, ``eacces``: raise that ``OSError`` at the n-th hit and every later
  one (a full disk stays full), for the storage seam to translate.

Points (see where ``hit``/``fires`` is called): ``planning`` (devices listed, before the plan),
``fetched`` (a window's body received, before it is parsed), ``day_written`` (a day file
renamed into place, before its checkpoint entry), ``compacted`` (a new checkpoint snapshot
written, before the segments it absorbed are deleted), ``write`` / ``write_<kind>`` (inside
a storage write, the temporary file written but not yet synced or renamed), ``torn_<kind>``
(after a storage rename). ``<kind>`` is ``day``, ``segment``, ``snapshot`` or ``other``
(``harvester.archive.layout.key_kind``).

Unset, every hook is one falsy dict test: no cost on the real path. Tests in the same process
arm hooks with ``arm``.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ENV: Final = "HARVESTER_CRASH_AT"
KILL: Final = "kill"
TORN: Final = "torn"
_ERRORS: Final = {"enospc": errno.ENOSPC, "erofs": errno.EROFS, "eacces": errno.EACCES}
ACTIONS: Final = (KILL, TORN, *_ERRORS)


@dataclass
class _Trigger:
    at: int
    action: str
    hits: int = 0


_triggers: dict[str, _Trigger] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, _Trigger]:
    """The triggers of a ``HARVESTER_CRASH_AT`` value; raises ValueError when malformed."""
    triggers: dict[str, _Trigger] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        fields = item.split(":")
        if len(fields) not in (2, 3) or not fields[0] or not fields[1].isdigit():
            raise ValueError(f"{ENV}: expected <point>:<n>[:<action>], got {item!r}")
        action = fields[2] if len(fields) == 3 else KILL
        if action not in ACTIONS or int(fields[1]) < 1:
            raise ValueError(f"{ENV}: bad count or action in {item!r} (actions: {ACTIONS})")
        triggers[fields[0]] = _Trigger(at=int(fields[1]), action=action)
    return triggers


def arm(spec: str) -> None:
    """Replace the armed triggers (``""`` disarms every hook)."""
    global _triggers
    with _lock:
        _triggers = parse(spec)


def _count(point: str) -> _Trigger | None:
    with _lock:
        trigger = _triggers.get(point)
        if trigger is not None:
            trigger.hits += 1
        return trigger


def kill_now() -> None:
    """SIGKILL this process: no cleanup, no flush, no finally."""
    os.kill(os.getpid(), signal.SIGKILL)


def hit(*points: str) -> None:
    """Count a pass through ``points``; kill or raise if one of them is armed and due."""
    if not _triggers:
        return
    for point in points:
        trigger = _count(point)
        if trigger is None or trigger.hits < trigger.at:
            continue
        if trigger.action in _ERRORS:
            code = _ERRORS[trigger.action]
            raise OSError(code, os.strerror(code), point)
        if trigger.hits == trigger.at and trigger.action == KILL:
            kill_now()


def fires(point: str) -> bool:
    """Count a pass through ``point``; True exactly when its n-th pass is now."""
    if not _triggers:
        return False
    trigger = _count(point)
    return trigger is not None and trigger.hits == trigger.at


def tear_if_due(point: str, path: Path) -> None:
    """At ``point``'s n-th pass: cut the file at ``path`` to half its size, then kill."""
    if fires(point):
        with open(path, "r+b") as handle:
            handle.truncate(os.fstat(handle.fileno()).st_size // 2)
            os.fsync(handle.fileno())
        kill_now()


arm(os.environ.get(ENV, ""))
