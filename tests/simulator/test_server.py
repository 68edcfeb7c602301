"""``harvester simulate`` as a process, and ``running_simulator`` in process."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable

import pytest

from harvester.cli import simulate
from harvester.errors import ConfigError
from harvester.simulator.options import SimulatorOptions
from harvester.simulator.server import running_simulator
from tests.support import plain_client
from tests.support.simproc import SimulatorProcess


def test_cli_prints_one_url_line_serves_and_exits_zero_on_sigterm(
    simulator: Callable[..., SimulatorProcess],
) -> None:
    """The process prints its URL once listening, answers, and exits 0 on SIGTERM."""
    sim = simulator(devices=2, days=2, seed=4)
    assert sim.url.startswith("http://127.0.0.1:")
    assert sim.url in sim.first_line
    login = plain_client.sign_in(sim.url, "demo@example.com", "demo")
    assert len(plain_client.list_devices(sim.url, login)) == 2
    sim.set_clock("2024-01-02T20:00:00Z")
    assert sim.stats()["now"].startswith("2024-01-02T20:00:00")
    assert sim.stop() == 0


def test_two_processes_with_the_same_seed_serve_identical_records(
    simulator: Callable[..., SimulatorProcess],
) -> None:
    """Determinism across processes: same seed same records; another seed other records."""
    options = {"devices": 3, "days": 2, "cadence_s": 600}
    first = simulator(seed=3, **options)
    second = simulator(seed=3, **options)
    other = simulator(seed=4, **options)
    gathered = [
        plain_client.collect_all(sim.url, "demo@example.com", "demo")
        for sim in (first, second, other)
    ]
    assert gathered[0] == gathered[1]
    assert len(gathered[0]) > 100
    assert gathered[2] != gathered[0]


def test_a_bad_option_value_is_a_one_line_usage_error() -> None:
    """The real CLI prints one error line on stderr and exits 2 for an invalid value."""
    done = subprocess.run(
        [sys.executable, "-m", "harvester", "simulate", "--fault-rate", "1.5"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--fault-rate" in done.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--days", "0"],
        ["--devices", "-1"],
        ["--start", "2024-13-01"],
        ["--fault-kinds", "500,teapot"],
        ["--now", "soon"],
        ["--cadence-s", "x"],
        ["--max-window-h", "0"],
    ],
)
def test_bad_option_values_exit_with_usage_error(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every invalid simulate option is refused with exit code 2 before serving."""
    parser = argparse.ArgumentParser(prog="harvester")
    simulate.register(parser.add_subparsers(dest="command"))

    def parse_and_run() -> None:
        args = parser.parse_args(["simulate", *flags])
        args.handler(args)

    with pytest.raises(SystemExit) as stopped:
        parse_and_run()
    assert stopped.value.code == 2
    assert "error" in capsys.readouterr().err


async def test_running_simulator_rejects_invalid_options() -> None:
    """``running_simulator`` raises ConfigError for options that make no sense."""
    with pytest.raises(ConfigError):
        async with running_simulator(SimulatorOptions(devices=0)):
            pass


async def test_running_simulator_yields_a_local_url_on_a_free_port() -> None:
    """Two in-process simulators get different free ports on 127.0.0.1."""
    async with (
        running_simulator(SimulatorOptions(days=1)) as one,
        running_simulator(SimulatorOptions(days=1)) as two,
    ):
        assert one.startswith("http://127.0.0.1:")
        assert one != two
