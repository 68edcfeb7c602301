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


def test_pandas_stays_unloaded_while_pyarrow_builds_arrays() -> None:
    """After keep_pandas_out, pyarrow builds arrays without importing pandas (it would
    otherwise load it, when installed, at its first array: ~55 MB for nothing)."""
    script = (
        "import sys\n"
        "from harvester.entry import keep_pandas_out\n"
        "keep_pandas_out()\n"
        "import pyarrow as pa\n"
        "assert pa.array([1, 2]).to_pylist() == [1, 2]\n"
        "print('pandas' in sys.modules and sys.modules['pandas'] is not None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_commands_that_only_read_keep_the_allocators_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """status/verify/report/plan leave glibc's defaults but one (a single arena) and give
    Arrow glibc's heap; run keeps Arrow's own allocator and takes the heap settings only when
    its pool starts (tune_heap), once; every command has Arrow purge freed pages at once; a
    user's own choice of Arrow's allocator wins."""
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, option: int, value: int) -> None:
            calls.append((option, value))

    monkeypatch.setattr(entry.ctypes, "CDLL", lambda _name: FakeLibc())
    monkeypatch.setattr(entry.sys, "platform", "linux")
    ours = ("MIMALLOC_PURGE_DELAY", "OPENBLAS_NUM_THREADS", "ARROW_DEFAULT_MEMORY_POOL")
    for name in [*ours, *entry.os.environ]:
        if name.startswith("MALLOC_") or name in ours:
            monkeypatch.setenv(name, "restored-after-the-test")  # so teardown removes it
            monkeypatch.delenv(name)
    entry.tune_process("status")
    entry.tune_heap()
    assert calls == [(-8, 1)]  # M_ARENA_MAX
    assert entry.os.environ["MIMALLOC_PURGE_DELAY"] == "0"
    assert entry.os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system"
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    entry.tune_process("report")
    assert entry.os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
    calls.clear()
    entry.tune_process("run")
    assert calls == []
    assert "ARROW_DEFAULT_MEMORY_POOL" not in entry.os.environ
    entry.tune_heap()
    entry.tune_heap()
    assert len(calls) == 2
