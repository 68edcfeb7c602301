"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from tests.support.simproc import SimulatorProcess


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that hold a slow test run first, each kept whole (its module fixtures are made
    once), the order otherwise unchanged. ``make test`` spreads the suite over the cores
    (pytest-xdist hands out tests in this order), so the long subprocess tests start early and
    the many short ones fill in at the end, rather than one worker running a 40 s test alone
    while the other has finished."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture
def simulator() -> Iterator[Callable[..., SimulatorProcess]]:
    """Factory: ``sim = simulator(seed=3, days=3)`` starts a simulator subprocess.

    Every process started this way is stopped at teardown.
    """
    started: list[SimulatorProcess] = []

    def start(*args: str, **options: Any) -> SimulatorProcess:
        process = SimulatorProcess(*args, **options).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults (the CLI configures it globally)."""
    yield
    structlog.reset_defaults()
