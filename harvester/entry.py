"""The ``harvester`` console script: process settings first, then the command line.

Settings only a whole process can choose, so the library never applies them:

- **One OpenBLAS thread.** numpy's OpenBLAS starts a thread per core when numpy loads, and
  each spins for ~0.1 s of CPU before it sleeps; the harvester does no linear algebra. It is
  read from the environment when numpy loads, so it is set before ``harvester.cli`` imports.
- **glibc keeps large blocks.** Every response body (~2.5 MB at 1 Hz) and the buffers made
  from it were fresh ``mmap``s, faulted in page by page and handed back on free: ~150,000
  page faults and ~0.3 s of CPU per million records. Blocks up to 32 MiB now come from the
  heap, and up to 256 MiB of freed heap is kept for the next window. Elsewhere (musl,
  macOS) nothing changes. ``run`` takes these settings when its pool starts (``tune_heap``):
  opening a large checkpoint and planning do better with glibc's defaults (a resumed
  1,000-device x 5-year run peaked at 310 MB tuned from the start, 291 MB untuned). Commands
  that only read an archive and the server's counts (``status``, ``verify``, ``report``,
  ``plan``) keep glibc's defaults throughout, but one:
- **One glibc arena for commands that only read.** glibc gives each thread that allocates its
  own arena, and the freed memory left in each is kept: ``report`` reads footers in 8
  threads, and on the 5-year fleet's day archive (1.4 M files) peaked at 427 MB with an
  arena per thread, 301 MB with one. Their threads wait on I/O, not on the allocator.
- **Arrow hands freed memory back at once.** Its allocator (mimalloc) purges freed pages
  after a delay, and pages freed by a thread that then sits idle (the one that read the
  checkpoint) stay: ``status`` of a 1.4 M-day archive peaked at 307 MB, 248 MB with
  ``MIMALLOC_PURGE_DELAY=0``; a resumed run of it 348 MB, 310 MB. The commands that only
  read go further and give Arrow glibc's heap (``ARROW_DEFAULT_MEMORY_POOL=system``), the one
  ``malloc_trim`` hands back: after reading that archive's checkpoint, ``report`` held 176 MB
  where it held 203 MB with mimalloc.
- **No pandas.** pyarrow imports pandas, when it is installed, the first time it builds an
  array, to recognise pandas objects; the harvester never hands it one. Marking pandas
  absent saves ~55 MB and ~0.4 s of CPU in every command (the image has no pandas anyway).

A user's own ``OPENBLAS_NUM_THREADS``, ``MIMALLOC_PURGE_DELAY``,
``ARROW_DEFAULT_MEMORY_POOL`` or ``MALLOC_*`` settings win.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import os
import sys
from collections.abc import Sequence
from types import ModuleType

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # glibc's malloc.h
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling for it on 64-bit
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


#: Commands that move no records: glibc's heap defaults suit them.
_READING_COMMANDS = frozenset({"status", "verify", "report", "plan"})
#: Commands that take the heap settings when their pool starts (``tune_heap``).
_POOL_COMMANDS = frozenset({"run"})
_heap_settings_pending = False


class _NoPandas(importlib.abc.MetaPathFinder):
    """Answers every import of pandas with ``ModuleNotFoundError``, as if it were absent."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


def keep_pandas_out() -> None:
    """Makes pandas look absent to this process, unless it is already imported, so that
    pyarrow does not load it (see the module docstring)."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def tune_process(command: str | None = None) -> None:
    """Applies the settings above to this process (call before numpy is imported);
    ``command`` is the subcommand about to run, when known."""
    global _heap_settings_pending
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
    if command in _READING_COMMANDS:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
        _mallopt(_M_ARENA_MAX, 1)
        return
    _heap_settings_pending = True
    if command not in _POOL_COMMANDS:
        tune_heap()


def tune_heap() -> None:
    """glibc's heap settings (see the module docstring), if ``tune_process`` asked for them
    and they are not applied yet; ``run`` calls it when its pool starts."""
    global _heap_settings_pending
    if not _heap_settings_pending:
        return
    _heap_settings_pending = False
    _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def _mallopt(option: int, value: int) -> None:
    """glibc's ``mallopt``, unless this is not glibc or the user chose ``MALLOC_*`` settings."""
    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return
    if hasattr(libc, "mallopt"):
        libc.mallopt(option, value)


def release_free_heap() -> None:
    """Hands the heap's free pages back to the system (glibc; elsewhere, nothing to do).

    glibc returns freed memory on its own only from the top of its heap: what a command let
    go below what it keeps stays. ``report`` calls it where it has just let much go (the
    checkpoint loaded, each part of the join, the HTML written): 1,000 devices x 5 years
    peaked at 469 MB without it, and ~70 MB is handed back after the checkpoint alone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return


def main() -> int:
    keep_pandas_out()
    tune_process(next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None))
    # Imported here, after the settings: numpy reads OPENBLAS_NUM_THREADS when it loads.
    from harvester.cli import main as cli_main

    return cli_main()
