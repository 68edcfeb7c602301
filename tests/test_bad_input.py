"""Bad input, a table of cases: each gets one clear line on stderr, its documented exit code,
no traceback, and nothing in OUT that a later run could trust.

Exit codes (docs/interface.md): 2 usage/configuration/storage, 3 authentication, 1 the
server failed. Most cases run in-process (``harvester.cli.main``); a few as subprocesses.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harvester.cli import main
from tests.support.simproc import SimulatorProcess


@dataclass(frozen=True)
class Case:
    """``args`` may hold {sim}, {html}, {dead} (URLs) and {config} (a file with ``config``)."""

    name: str
    args: tuple[str, ...]
    code: int
    says: str
    config: str | None = None
    command: str = "run"


SIM = ("--base-url", "{sim}", "--email", "demo@example.com", "--password", "demo")
CASES = [
    Case("misspelled option", ("--concurency", "4", *SIM), 2, "--concurrency"),
    Case("unknown option", ("--parallel", "4", *SIM), 2, "unrecognized arguments: --parallel"),
    Case("unknown command", (), 2, "invalid choice: 'fetch'", command="fetch"),
    Case("bad log format", ("--log-format", "xml", *SIM), 2, "--log-format"),
    Case("zero concurrency", ("--concurrency", "0", *SIM), 2, "--concurrency: must be at least 1"),
    Case("negative concurrency", ("--concurrency=-3", *SIM), 2, "--concurrency: must be at least"),
    Case("concurrency not a number", ("--concurrency", "lots", *SIM), 2, "whole number"),
    Case("fractional concurrency", ("--concurrency", "2.5", *SIM), 2, "whole number"),
    Case("zero rps", ("--rps", "0", *SIM), 2, "--rps: must be greater than 0"),
    Case("negative rps", ("--rps=-5", *SIM), 2, "--rps: must be greater than 0"),
    Case("rps not finite", ("--rps", "nan", *SIM), 2, "--rps: expected a finite number"),
    Case("zero max attempts", ("--max-attempts", "0", *SIM), 2, "--max-attempts"),
    Case("zero read timeout", ("--read-timeout-s", "0", *SIM), 2, "--read-timeout-s"),
    Case("impossible date", ("--since", "2024-02-30", *SIM), 2, "--since: expected a date"),
    Case("month 13", ("--until", "2024-13-01", *SIM), 2, "--until: expected a date"),
    Case("date in words", ("--since", "yesterday", *SIM), 2, "YYYY-MM-DD"),
    Case(
        "reversed range",
        ("--since", "2024-03-05", "--until", "2024-03-01", *SIM),
        2,
        "--since 2024-03-05 is after --until 2024-03-01",
    ),
    Case("unknown device type", ("--device-type", "CO2", *SIM), 2, "--device-type"),
    Case("unknown time zone", ("--timezone", "Mars/Olympus", *SIM), 2, "unknown time zone"),
    Case("time zone offset", ("--timezone", "+05:30", *SIM), 2, "IANA name"),
    Case("URL without scheme", ("--base-url", "api.sensitconnect.net"), 2, "--base-url"),
    Case("ftp URL", ("--base-url", "ftp://127.0.0.1/"), 2, "http:// or https://"),
    Case("URL with bad port", ("--base-url", "http://127.0.0.1:99999"), 2, "port"),
    Case("no password", ("--base-url", "{sim}", "--email", "a@b.c"), 2, "--password (or SENSIT"),
    Case("empty device list", ("--devices", ",", *SIM), 2, "--devices"),
    Case("config file missing", ("--config", "/nonexistent/h.toml", *SIM), 2, "does not exist"),
    Case("config not TOML", ("--config", "{config}", *SIM), 2, "not valid TOML", "rps = = 3"),
    Case(
        "misspelled config key",
        ("--config", "{config}", *SIM),
        2,
        "unknown key 'concurency' (did you mean 'concurrency'?)",
        "concurency = 4",
    ),
    Case("config wrong type", ("--config", "{config}", *SIM), 2, "rps", "rps = true"),
    Case("config list for text", ("--config", "{config}", *SIM), 2, "timezone", "timezone = [1]"),
    Case("unknown device uuid", ("--devices", "9999", *SIM), 2, "unknown device uuid(s) 9999"),
    Case("type with no devices", ("--device-type", "RAMP", *SIM), 2, "no RAMP devices"),
    Case(
        "wrong password",
        ("--base-url", "{sim}", "--email", "demo@example.com", "--password", "nope"),
        3,
        "sign-in",
    ),
    Case(
        "wrong email",
        ("--base-url", "{sim}", "--email", "who@example.com", "--password", "demo"),
        3,
        "sign-in",
    ),
    Case(
        "server not listening",
        ("--base-url", "{dead}", "--email", "a@b.c", "--password", "x"),
        1,
        "--base-url",
    ),
    Case(
        "server answers HTML",
        ("--base-url", "{html}", "--email", "a@b.c", "--password", "x"),
        1,
        "--base-url",
    ),
    Case("status of a non-archive", (), 2, "archive", command="status"),
]


class _HtmlHandler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads stderr."""


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    """A one-device simulator (an FMD only), an HTML server and a port nobody listens on."""
    html = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    threading.Thread(target=html.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with SimulatorProcess(seed=5, devices=1, days=1, cadence_s=3600) as sim:
        yield {
            "sim": sim.url,
            "html": f"http://127.0.0.1:{html.server_address[1]}",
            "dead": f"http://127.0.0.1:{dead_port}",
        }
    html.shutdown()
    html.server_close()


def argv_of(case: Case, urls: dict[str, str], tmp_path: Path) -> list[str]:
    config = tmp_path / "harvester.toml"
    if case.config is not None:
        config.write_text(case.config + "\n")
    values = {**urls, "config": str(config)}
    args = [arg.format(**values) for arg in case.args]
    logging = ["--log-format", "json"] if case.command == "run" else []
    return [case.command, *logging, *args, "--out", str(tmp_path / "out")]


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own exits (e.g. --help) end here
            code = int(exit_.code or 0)
    return code, stdout.getvalue(), stderr.getvalue()


def error_lines(stderr: str) -> list[str]:
    """stderr without the JSON log events of a run's progress (which may not warn)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert [e for e in events if e["level"] not in ("debug", "info")] == [], stderr
    return [line for line in lines if not line.startswith("{")]


def assert_nothing_trusted_written(out: Path) -> None:
    """No data file, no checkpoint entry: a later run starts from scratch."""
    assert not list(out.rglob("*.parquet")) if out.exists() else True
    checkpoint = out / "_harvest" / "checkpoint"
    assert not (checkpoint.exists() and list(checkpoint.iterdir()))


@pytest.fixture(autouse=True)
def no_environment_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases must not pick up credentials from the environment."""
    for name in list(os.environ):
        if name.startswith("SENSIT_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gets_one_clear_line_and_its_exit_code(
    case: Case, urls: dict[str, str], tmp_path: Path
) -> None:
    """One 'harvester: error:' line naming the problem, the documented code, no traceback."""
    if case.command == "status":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "notes.txt").write_text("someone else's")
    code, _, stderr = run_in_process(argv_of(case, urls, tmp_path))
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("harvester: error: "), stderr
    assert case.says in lines[0], lines[0]
    assert code == case.code, stderr
    assert_nothing_trusted_written(tmp_path / "out")


SUBPROCESS_CASES = ["misspelled option", "reversed range", "wrong password", "server answers HTML"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_from_a_real_process(name: str, urls: dict[str, str], tmp_path: Path) -> None:
    """The same answer from ``python -m harvester``: one line, the code, no traceback."""
    case = next(case for case in CASES if case.name == name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSIT_")}
    done = subprocess.run(
        [sys.executable, "-m", "harvester", *argv_of(case, urls, tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert case.says in lines[0]
    assert done.returncode == case.code


def test_verbose_shows_the_traceback(urls: dict[str, str], tmp_path: Path) -> None:
    """With -v a failure also prints its traceback, for a bug report."""
    argv = argv_of(CASES[[c.name for c in CASES].index("wrong password")], urls, tmp_path)
    code, _, stderr = run_in_process([*argv, "-v"])
    assert code == 3
    assert "Traceback" in stderr


def test_devices_without_dates_warn_once_each_and_exit_0(tmp_path: Path) -> None:
    """A fleet with no data yet (the present before its first day): one warning per device,
    exit 0, no data file and no checkpoint entry."""
    with SimulatorProcess(seed=5, devices=2, days=1, now="2023-12-31T00:00:00Z") as sim:
        argv = ["run", "--log-format", "json", *SIM, "--out", str(tmp_path / "out")]
        code, stdout, stderr = run_in_process([arg.format(sim=sim.url) for arg in argv])
    assert code == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    warnings = [e for e in events if e["level"] == "warning"]
    assert [e["event"] for e in warnings] == ["device_has_no_data", "device_has_no_data"]
    assert "0 done" in stdout
    assert_nothing_trusted_written(tmp_path / "out")
