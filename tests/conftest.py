"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from tests.support.simproc import SimulatorProcess


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
