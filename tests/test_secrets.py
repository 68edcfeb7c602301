"""Neither the password nor an access token appears in any log line (console and JSON, -v),
in the summary, the run manifest, the checkpoint, devices.json, the data, or an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.inproc import harvest
from tests.support.plain_client import sign_in
from tests.support.simproc import SimFactory

pytestmark = pytest.mark.slow

PASSWORD = "Corr3ct-Horse-Battery-42"
JWT_PREFIX = "eyJ"  # base64 of '{"': how every JWT (header and payload) starts


def texts_of_archive(out: Path) -> list[tuple[str, str]]:
    """(name, text) of every file under OUT; Parquet files as their decoded strings."""
    found: list[tuple[str, str]] = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.read_bytes()[:4] == b"PAR1":  # data files and the checkpoint snapshot
            table = pq.read_table(path)
            strings = [
                str(value)
                for column in table.columns
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                for value in column.to_pylist()
            ]
            metadata = table.schema.metadata or {}
            found.append((str(path), " ".join(strings) + repr(metadata)))
        else:
            found.append((str(path), path.read_bytes().decode(errors="replace")))
    return found


def assert_no_secret(name: str, text: str, token: str) -> None:
    assert PASSWORD not in text, f"password in {name}"
    assert token not in text, f"access token in {name}"
    assert JWT_PREFIX not in text, f"something shaped like a JWT in {name}"


def test_no_secret_in_logs_manifests_checkpoint_or_errors(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """Full runs with faults, 401s from 2-second tokens, both log formats, -v; then failures."""
    sim = simulator(
        seed=61,
        devices=3,
        days=2,
        cadence_s=600,
        password=PASSWORD,
        token_ttl_s=2,
        latency_ms=20,
        fault_rate=0.3,
    )
    token = sign_in(sim.url, "demo@example.com", PASSWORD)["accessToken"]
    assert token.startswith(JWT_PREFIX)
    out = tmp_path / "out"
    outputs: list[tuple[str, str]] = []
    # A console-format run in a real process, the password from the environment.
    env = dict(os.environ, SENSIT_PASSWORD=PASSWORD, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        [sys.executable, "-m", "harvester", "run", "--base-url", sim.url, "--email",
         "demo@example.com", "--out", str(out), "--log-format", "console", "-vv",
         "--rps", "100", "--read-timeout-s", "2"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr[-2000:]
    outputs += [("console stdout", done.stdout), ("console stderr", done.stderr)]
    assert "signed_in" in done.stderr
    # JSON-format runs in-process, the password as a flag: run, plan, verify, status.
    sim.set_clock("2024-01-02T22:00:00Z")
    for command in ("run", "plan", "verify"):
        code, stdout, stderr = harvest(
            sim.url, out, "-v", "--read-timeout-s", "2", command=command, password=PASSWORD
        )
        outputs += [(f"{command} stdout", stdout), (f"{command} stderr", stderr)]
    assert '"event":"signed_in"' in outputs[-3][1] + outputs[-1][1]
    # Failures whose messages carry the server's words: a wrong password, a bad --base-url.
    code, stdout, stderr = harvest(sim.url, out, "-v", password=PASSWORD + "x")
    assert code == 3
    outputs += [("wrong password", stdout + stderr)]
    code, stdout, stderr = harvest(sim.url + "/nowhere", out, "-v", password=PASSWORD)
    assert code != 0
    outputs += [("wrong base URL", stdout + stderr)]
    assert (out / "_harvest" / "devices.json").exists()
    assert list((out / "_harvest" / "runs").glob("*.json"))
    assert list((out / "_harvest" / "checkpoint").iterdir())
    for name, text in outputs + texts_of_archive(out):
        assert_no_secret(name, text, token)
