"""Slow storage before the pool (object storage: every call a round trip) never holds the event
loop: the checkpoint is opened and the day files are checked in a thread, so a signal's stop
is taken while they work and honoured as soon as the step ends.

Each storage below blocks in one call until the test releases it, and the test releases it
only from a task of the same event loop: if the call ran on the loop, that task could never
run and the storage would give up waiting (a safety net, not a timing).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from harvester import harvest
from harvester.archive.layout import CHECKPOINT_PREFIX, RUNS_PREFIX
from harvester.archive.storage import LocalStorage
from harvester.config import HarvestConfig, Secret
from harvester.errors import Interrupted
from tests.support.crash_harness import EMAIL, PASSWORD, archive_problems
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory

#: How long a blocked storage call waits for its release before it calls the loop blocked.
SAFETY_NET_S = 60.0


class BlockingStorage(LocalStorage):
    """A local archive whose first call of ``blocking`` (a method name) waits for ``release``."""

    def __init__(self, root: Path, blocking: str) -> None:
        super().__init__(root)
        self.blocking = blocking
        self.entered = threading.Event()
        self.release = threading.Event()

    def _block(self, name: str) -> None:
        if name != self.blocking or self.entered.is_set():
            return
        self.entered.set()
        if not self.release.wait(SAFETY_NET_S):
            raise AssertionError(f"{name} ran on a blocked event loop: nothing released it")

    def list_files(self, prefix: str = "") -> list[str]:
        if prefix.startswith(CHECKPOINT_PREFIX):
            self._block("list_files")
        return super().list_files(prefix)

    def open_input(self, key: str) -> BinaryIO:
        self._block("open_input")
        return super().open_input(key)


async def _stop_while_blocked(storage: BlockingStorage, stop: asyncio.Event) -> None:
    """From a task of the loop: wait until the storage blocks, then stop and release it."""
    await asyncio.to_thread(storage.entered.wait)
    stop.set()
    storage.release.set()


def _use(monkeypatch: pytest.MonkeyPatch, storage: BlockingStorage) -> None:
    monkeypatch.setattr(harvest, "open_storage", lambda config: storage)


async def test_a_stop_while_the_checkpoint_is_read_ends_the_run_before_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint's folder takes long to list: meanwhile the loop runs the task that sets
    the stop, and once the listing ends the run stops, interrupted, without signing in (the
    server's address answers nothing) and with its manifest saved."""
    storage = BlockingStorage(tmp_path / "out", blocking="list_files")
    _use(monkeypatch, storage)
    config = HarvestConfig(
        base_url="http://127.0.0.1:9", email="a@example.com", password=Secret("pw"), out="unused"
    )
    stop = asyncio.Event()
    stopper = asyncio.create_task(_stop_while_blocked(storage, stop))
    summary = await harvest.run_harvest(config, stop)
    await stopper
    assert summary.interrupted
    assert summary.failure is None
    assert summary.devices == 0
    assert summary.client == {}
    assert storage.list_files(RUNS_PREFIX), "the interrupted run's manifest was not saved"


async def test_a_stop_while_plan_checks_the_day_files_is_honoured_once_the_check_ends(
    simulator: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``plan`` over a harvested archive checks the frame of the day files a run would write
    into before it trusts the checkpoint (here a day one window short): while that check
    waits on storage, the loop takes the stop, and the plan is not shown (``Interrupted``)
    once the check ends."""
    sim = simulator(seed=5, devices=2, days=2, cadence_s=600)
    out = tmp_path / "out"
    config = HarvestConfig(
        base_url=sim.url, email="demo@example.com", password=Secret("demo"), out=str(out), rps=500
    )
    first = await harvest.run_harvest(config, asyncio.Event())
    assert first.pool.windows_done > 0
    assert first.pool.windows_left == 0
    segment = sorted((out / CHECKPOINT_PREFIX).glob("seg-*.jsonl"))[-1]
    segment.write_bytes(b"".join(segment.read_bytes().splitlines(keepends=True)[:-1]))
    storage = BlockingStorage(out, blocking="open_input")
    _use(monkeypatch, storage)
    stop = asyncio.Event()
    stopper = asyncio.create_task(_stop_while_blocked(storage, stop))
    with pytest.raises(Interrupted, match="before the plan was shown"):
        await harvest.preview_plan(config, stop)
    await stopper
    assert storage.entered.is_set()


class KeyBlockingStorage(BlockingStorage):
    """A local archive whose first opening of one data file waits for ``release``."""

    def __init__(self, root: Path, key: str) -> None:
        super().__init__(root, blocking="open_input")
        self.key = key

    def open_input(self, key: str) -> BinaryIO:
        if key == self.key:
            self._block("open_input")
        return LocalStorage.open_input(self, key)


async def test_a_stop_while_the_run_looks_at_the_files_it_never_writes_interrupts_it(
    simulator: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run looks at the files it never writes while its pool fetches: a stop taken while
    that look waits on storage ends the run as interrupted (no failure, no repair fetched),
    and the next run ends the archive exact."""
    sim = simulator(seed=5, devices=3, days=3, cadence_s=600)
    out = tmp_path / "out"
    config = HarvestConfig(
        base_url=sim.url, email="demo@example.com", password=Secret("demo"), out=str(out), rps=500
    )
    assert (await harvest.run_harvest(config, asyncio.Event())).pool.windows_left == 0
    first_file = sorted(out.rglob("*.parquet"))[0]
    first_file.write_bytes(first_file.read_bytes()[:-9])
    storage = KeyBlockingStorage(out, first_file.relative_to(out).as_posix())
    _use(monkeypatch, storage)
    stop = asyncio.Event()
    stopper = asyncio.create_task(_stop_while_blocked(storage, stop))
    summary = await harvest.run_harvest(config, stop)
    await stopper
    assert storage.entered.is_set()
    assert summary.interrupted
    assert summary.failure is None
    monkeypatch.undo()
    again = await harvest.run_harvest(config, asyncio.Event())
    assert again.failure is None
    assert not again.interrupted
    assert archive_problems(out, collect_all(sim.url, EMAIL, PASSWORD)) == []


class CountingStorage(LocalStorage):
    """A local archive that names the data files opened for reading."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[str] = []

    def open_input(self, key: str) -> BinaryIO:
        self.opened.append(key)
        return super().open_input(key)


async def test_plan_looks_only_at_the_files_a_run_would_write_into(
    simulator: SimFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``plan`` of a harvested archive opens none of the files a run never writes: of the
    eight day files, only each device's last day (one a plan may fetch, should the server's
    count of it have moved), as the run itself looks at the others only while it fetches."""
    sim = simulator(seed=5, devices=2, days=4, cadence_s=600)
    out = tmp_path / "out"
    config = HarvestConfig(
        base_url=sim.url, email="demo@example.com", password=Secret("demo"), out=str(out), rps=500
    )
    assert (await harvest.run_harvest(config, asyncio.Event())).pool.windows_left == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    last_days = {
        max(key for key in files if key.startswith(f"{device}/"))
        for device in {key.rsplit("/", 2)[0] for key in files}
    }
    storage = CountingStorage(out)
    monkeypatch.setattr(harvest, "open_storage", lambda config: storage)
    await harvest.preview_plan(config, asyncio.Event())
    assert (len(files), len(last_days)) == (8, 2)
    assert set(storage.opened) <= last_days
