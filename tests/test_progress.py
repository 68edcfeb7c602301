"""The progress display's ETA: what is really left, including windows waiting on a back-off."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from harvester.cli.progress import RunProgress, eta_s
from harvester.fetch.pool import PoolStats


def test_the_windows_left_go_at_the_pace_seen_so_far() -> None:
    """No back-off pending: 300 windows left at 100 settled in 10 s is 30 s."""
    assert eta_s(left=300, settled=100, elapsed_s=10.0, backoff_left_s=-1.0) == pytest.approx(30.0)


def test_a_window_told_to_come_back_later_holds_the_eta_until_then() -> None:
    """One window left, the others done at 100 a second, but it waits out a 280 s back-off:
    the ETA is 280 s, not the hundredth of a second the pace alone would say."""
    assert eta_s(left=1, settled=1000, elapsed_s=10.0, backoff_left_s=280.0) == 280.0


def test_a_back_off_shorter_than_the_work_left_changes_nothing() -> None:
    """Pending back-offs only set a floor: 30 s of work left outlasts a 5 s back-off."""
    assert eta_s(left=300, settled=100, elapsed_s=10.0, backoff_left_s=5.0) == pytest.approx(30.0)


def test_nothing_left_is_zero_and_nothing_settled_yet_is_unknown() -> None:
    """With every window settled the ETA is 0; before any has, there is no pace to go by."""
    assert eta_s(left=0, settled=5, elapsed_s=1.0, backoff_left_s=100.0) == 0.0
    assert eta_s(left=10, settled=0, elapsed_s=1.0, backoff_left_s=100.0) is None


def test_the_progress_fields_count_a_window_waiting_on_its_back_off() -> None:
    """A live run with 999 of 1000 windows done in no time and the last one backing off for
    five minutes: what the progress line and event show is one window backing off and an ETA
    of about five minutes (rounded to the second), not zero."""
    stats = PoolStats(windows_total=1000, windows_done=999, windows_backing_off=1)
    stats.backoff_ends_at = time.time() + 300.0
    pool: Any = SimpleNamespace(stats=stats)
    gate: Any = SimpleNamespace(rate=50.0)
    client: Any = SimpleNamespace(stats=SimpleNamespace(requests=1000))
    progress = RunProgress(tty=False)
    progress.attach(pool, gate, client)
    fields = progress._fields()
    assert fields["backing_off"] == 1
    assert 290 <= fields["eta_s"] <= 300
