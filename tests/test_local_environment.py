"""The machine misbehaves: OUT unusable or read-only, disk full, OUT holding another tool's
files, two runs on one OUT, a checkpoint from another version. Each gets one clear line and
its documented exit code (2), and leaves the data and the checkpoint as they were.

Tests run as root, which ignores file permissions: a read-only OUT and a full disk are made
with the fault hooks of harvester/crashpoints.py (EROFS / ENOSPC inside the storage seam).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harvester import crashpoints
from tests.support.crash_harness import EMAIL, PASSWORD, LiveRun, archive_problems
from tests.support.inproc import harvest
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory, SimulatorProcess

FLEET = {"seed": 51, "devices": 3, "days": 2, "cadence_s": 600}


@pytest.fixture
def hooks() -> Iterator[Callable[[str], None]]:
    """Arm fault hooks in this process; disarmed at teardown."""
    yield crashpoints.arm
    crashpoints.arm("")


def fingerprint(out: Path) -> dict[str, str]:
    """Every file the data or the checkpoint consists of, with a digest of its bytes."""
    return {
        path.relative_to(out).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and "_harvest/runs/" not in path.as_posix() and path.name != "lock"
    }


def error_line(stderr: str) -> str:
    """The one line that is not a JSON log event."""
    (line,) = [line for line in stderr.splitlines() if line and not line.startswith("{")]
    assert line.startswith("harvester: error: ")
    return line


@pytest.fixture
def sim(simulator: SimFactory) -> SimulatorProcess:
    return simulator(**FLEET)


def test_out_below_a_file_is_a_usage_error(sim: SimulatorProcess, tmp_path: Path) -> None:
    """--out whose parent is a file: exit 2 naming the problem; nothing created."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, stderr = harvest(sim.url, blocker / "out")
    assert code == 2
    assert "a path component is a file, not a folder" in error_line(stderr)
    assert blocker.read_text() == "not a folder"


def test_out_that_is_a_file_is_a_usage_error(sim: SimulatorProcess, tmp_path: Path) -> None:
    """--out naming a file: exit 2 'is a file, not a folder'; the file is untouched."""
    target = tmp_path / "archive"
    target.write_text("mine")
    code, _, stderr = harvest(sim.url, target)
    assert code == 2
    assert "is a file, not a folder" in error_line(stderr)
    assert target.read_text() == "mine"


def test_out_holding_another_tools_files_is_refused(sim: SimulatorProcess, tmp_path: Path) -> None:
    """A folder with foreign files: exit 2 naming them; nothing written into it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.xlsx").write_bytes(b"PK\x03\x04")
    code, _, stderr = harvest(sim.url, out)
    assert code == 2
    assert "not a harvester archive (report.xlsx)" in error_line(stderr)
    assert sorted(p.name for p in out.iterdir()) == ["report.xlsx"]


@pytest.fixture
def archived(sim: SimulatorProcess, tmp_path: Path) -> Path:
    """An archive of ``sim`` made by one complete run."""
    out = tmp_path / "out"
    code, stdout, _ = harvest(sim.url, out)
    assert code == 0, stdout
    return out


def test_read_only_out_fails_cleanly_and_keeps_the_archive(
    sim: SimulatorProcess, archived: Path, hooks: Callable[[str], None]
) -> None:
    """Every write failing with EROFS: exit 2 'choose a writable --out'; archive unchanged."""
    sim.set_clock("2024-01-02T20:00:00Z")  # new data, so the run has something to write
    before = fingerprint(archived)
    hooks("write:1:erofs")
    code, _, stderr = harvest(sim.url, archived)
    assert code == 2
    assert "permission denied; choose a writable --out" in error_line(stderr)
    assert fingerprint(archived) == before


def test_disk_full_mid_run_fails_cleanly_and_next_run_is_exact(
    sim: SimulatorProcess, tmp_path: Path, hooks: Callable[[str], None]
) -> None:
    """ENOSPC from the 6th write on: exit 2 'the disk is full'; every file left is readable
    and a later run (space freed) completes the archive exactly."""
    out = tmp_path / "out"
    hooks("write:6:enospc")
    code, _, stderr = harvest(sim.url, out)
    assert code == 2
    assert "the disk is full; free space and run again" in error_line(stderr)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    hooks("")
    code, stdout, _ = harvest(sim.url, out)
    assert code == 0, stdout
    assert archive_problems(out, collect_all(sim.url, EMAIL, PASSWORD)) == []


def test_checkpoint_from_another_version_is_refused_untouched(
    sim: SimulatorProcess, archived: Path
) -> None:
    """A segment of checkpoint format 99: exit 2 naming the file; nothing modified."""
    segment = archived / "_harvest/checkpoint/seg-0000000099-00000000-future.jsonl"
    header = {"checkpoint_version": 99, "run_id": "future", "generation": 99, "seq": 0}
    segment.write_text(json.dumps({**header, "entries": 0, "devices": []}) + "\n")
    before = fingerprint(archived)
    code, _, stderr = harvest(sim.url, archived)
    assert code == 2
    line = error_line(stderr)
    assert "incompatible harvester version" in line
    assert segment.name in line
    assert fingerprint(archived) == before


@pytest.mark.slow
def test_second_run_on_the_same_out_fails_at_once(simulator: SimFactory, tmp_path: Path) -> None:
    """While a run holds OUT, another gets exit 2 'in use by run ...'; the first ends exact."""
    sim = simulator(latency_ms=100, **FLEET)
    out = tmp_path / "out"
    first = LiveRun(sim.url, out, "--rps", "20", log_path=tmp_path / "first.log")
    try:
        first.wait_for("plan_ready")
        code, _, stderr = harvest(sim.url, out)
        assert code == 2
        line = error_line(stderr)
        assert "is in use by run" in line
        assert "wait for it to finish or choose another --out" in line
        assert first.process.wait(timeout=50) == 0, first.log()[-2000:]
    finally:
        first.stop()
    assert archive_problems(out, collect_all(simulator(**FLEET).url, EMAIL, PASSWORD)) == []
