"""Tests of harvester.entry: the process settings of the ``harvester`` console script."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from harvester import entry

# Four bodies of ~2.5 MB made and freed, as the pool does window after window.
_CYCLES = """
import resource
from harvester.entry import tune_process
tune_process()
def window():
    held = [bytes(2_500_000 + i * 1000) for i in range(4)]
    del held
for _ in range(3):
    window()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    window()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults_when_tuned() -> int:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* setting of the caller's
    done = subprocess.run(
        [sys.executable, "-c", _CYCLES], capture_output=True, text=True, check=True, env=env
    )
    return int(done.stdout)


def test_openblas_gets_one_thread_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harvester does no linear algebra: one OpenBLAS thread, unless the user set it."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # keeps this process's allocator untouched
    entry.tune_process()
    assert entry.os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    entry.tune_process()
    assert entry.os.environ["OPENBLAS_NUM_THREADS"] == "4"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_bodies_made_and_freed_window_after_window_reuse_memory() -> None:
    """After tuning, 2.5 MB blocks made and freed over and over cost no fresh pages (each
    was a new mmap, faulted in page by page: ~100 faults a window on this glibc)."""
    assert _page_faults_when_tuned() <= 50
