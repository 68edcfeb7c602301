"""The harvester end to end, from the CLI, against the simulator in its own process.

Every archive is compared with what the independent plain sequential client
(tests/support/plain_client.py, standard library only) collects from the same simulator.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from harvester.cli import main
from tests.support import inproc
from tests.support.inproc import assert_same_records, record_requests
from tests.support.plain_client import collect_all, list_devices, sign_in
from tests.support.simproc import SimFactory, SimulatorProcess

pytestmark = pytest.mark.slow


def harvest(
    sim: SimulatorProcess, out: Path, *extra: str, command: str = "run"
) -> tuple[int, str, str]:
    """``harvester <command>`` in-process against ``sim``, with a short read timeout for runs."""
    timeout = ["--read-timeout-s", "3"] if command == "run" else []
    return inproc.harvest(sim.url, out, *timeout, *extra, command=command)


def archive(out: Path) -> pa.Table:
    return ds.dataset(out, format="parquet", partitioning="hive").to_table()


def reference(simulator: SimFactory, **options: Any) -> dict[str, dict[str, Any]]:
    """What the plain client collects from a fault-free, unlimited simulator of the same seed."""
    clean = simulator(**options)
    return collect_all(clean.url, "demo@example.com", "demo")


def test_archive_equals_plain_client_and_rerun_fetches_nothing(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """A back-fill stores exactly the plain client's records; a second run sends no record call."""
    sim = simulator(seed=11, devices=4, days=3, cadence_s=60)
    out = tmp_path / "out"
    code, stdout, _ = harvest(sim, out, "--concurrency", "8", "--rps", "500")
    assert code == 0, stdout
    expected = collect_all(sim.url, "demo@example.com", "demo")
    assert_same_records(archive(out), expected)
    before = record_requests(sim.stats())
    code, _, _ = harvest(sim, out, "--concurrency", "8", "--rps", "500")
    assert code == 0
    assert record_requests(sim.stats()) == before
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    # The interface's DuckDB glob sees the records and nothing under _harvest/.
    rows = duckdb.sql(
        f"SELECT count(*), count(DISTINCT _id) FROM read_parquet('{out}/**/*.parquet', "
        "hive_partitioning = true, union_by_name = true)"
    ).fetchall()
    assert rows[0][0] == rows[0][1] == len(expected)


def test_moving_clock_fetches_only_new_windows(simulator: SimFactory, tmp_path: Path) -> None:
    """After the present moves 6 hours, a run asks only for the open window and the new ones."""
    sim = simulator(seed=5, devices=3, days=2, cadence_s=120, start="2024-05-01")
    out = tmp_path / "out"
    assert harvest(sim, out, "--rps", "500")[0] == 0
    before = record_requests(sim.stats())
    sim.set_clock("2024-05-02T20:00:00Z")
    code, stdout, _ = harvest(sim, out, "--rps", "500")
    assert code == 0, stdout
    fetched = record_requests(sim.stats()) - before
    # per device with data today: the window holding 14:00 again, 16-18, 18-20, and 20-22
    # for the record at exactly 20:00 — never the sealed windows before 14:00
    assert 0 < fetched <= 3 * 4
    assert_same_records(archive(out), collect_all(sim.url, "demo@example.com", "demo"))


def test_expiring_tokens_cost_one_sign_in_per_expiry(simulator: SimFactory, tmp_path: Path) -> None:
    """Tokens living 2 s: re-sign-in is single-flight, not one per worker."""
    sim = simulator(seed=3, devices=3, days=2, cadence_s=60, token_ttl_s=2, latency_ms=40)
    out = tmp_path / "out"
    started = time.monotonic()
    code, stdout, _ = harvest(sim, out, "--concurrency", "16", "--rps", "20")
    wall = time.monotonic() - started
    assert code == 0, stdout
    sign_ins = sim.stats()["requests"]["/users/signin"]["200"]
    assert wall > 3
    assert sign_ins >= 2
    # the client renews at 80 % of a token's life: one sign-in per renewal, not one per worker
    assert sign_ins <= wall / (0.8 * 2) + 2
    assert_same_records(archive(out), reference(simulator, seed=3, devices=3, days=2, cadence_s=60))


def test_rate_limit_is_absorbed(simulator: SimFactory, tmp_path: Path) -> None:
    """A server limit below --rps produces 429s that the run absorbs without losing data."""
    # 10/s, a tenth of --rps: its bucket of 10 is spent within the first ~12 of ~50 requests
    # even when a loaded machine halves the run's pace. At 25/s a run slowed so (two test
    # workers and other work on two cores) sent no faster than the bucket refilled: no 429.
    sim = simulator(seed=8, devices=2, days=2, cadence_s=300, rate_limit=10)
    out = tmp_path / "out"
    code, stdout, _ = harvest(sim, out, "--concurrency", "16", "--rps", "100")
    assert code == 0, stdout
    statuses = sim.stats()["requests"]
    assert any("429" in by_status for by_status in statuses.values())
    assert_same_records(
        archive(out), reference(simulator, seed=8, devices=2, days=2, cadence_s=300)
    )


def test_failed_windows_exit_1_and_next_run_completes(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """Windows that exhaust their attempts are listed, exit 1; the next run completes them."""
    sim = simulator(
        seed=4, devices=2, days=2, cadence_s=300, fault_rate=0.5, fault_kinds="500,503,truncated"
    )
    out = tmp_path / "out"
    code, stdout, _ = harvest(sim, out, "--max-attempts", "1", "--rps", "500")
    assert code == 1
    assert "FAILED" in stdout
    code, stdout, _ = harvest(sim, out, "--max-attempts", "10", "--rps", "500")
    assert code == 0, stdout
    assert_same_records(
        archive(out), reference(simulator, seed=4, devices=2, days=2, cadence_s=300)
    )


def test_local_range_edges_clip_windows(simulator: SimFactory, tmp_path: Path) -> None:
    """--since/--until in Asia/Kolkata store exactly the records of those local days."""
    sim = simulator(seed=9, devices=3, days=4, cadence_s=300, start="2024-03-01")
    out = tmp_path / "out"
    code, stdout, _ = harvest(
        sim, out, "--since", "2024-03-02", "--until", "2024-03-03", "--timezone", "Asia/Kolkata"
    )
    assert code == 0, stdout
    zone_lo = dt.datetime(2024, 3, 1, 18, 30, tzinfo=dt.UTC)
    zone_hi = dt.datetime(2024, 3, 3, 18, 30, tzinfo=dt.UTC)
    expected = {
        k: v
        for k, v in collect_all(sim.url, "demo@example.com", "demo").items()
        if zone_lo <= dt.datetime.fromisoformat(v["date"].replace("Z", "+00:00")) < zone_hi
    }
    assert expected
    assert_same_records(archive(out), expected)
    code, stdout, _ = harvest(
        sim,
        out,
        "--since",
        "2024-03-02",
        "--until",
        "2024-03-03",
        "--timezone",
        "Asia/Kolkata",
        command="verify",
    )
    assert code == 0, stdout


def test_verify_finds_a_missing_day_and_status_reads_checkpoint(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """verify exits 0 on a complete archive and 1 naming the day whose file went missing."""
    sim = simulator(seed=12, devices=2, days=2, cadence_s=300)
    out = tmp_path / "out"
    assert harvest(sim, out, "--rps", "500")[0] == 0
    code, stdout, _ = harvest(sim, out, command="verify")
    assert code == 0, stdout
    assert "verify OK" in stdout
    victim = sorted(out.rglob("*.parquet"))[0]
    victim.unlink()
    code, stdout, _ = harvest(sim, out, command="verify")
    assert code == 1
    day = victim.parent.name.removeprefix("day=")
    assert f"{day}: server" in stdout
    assert main(["status", "--out", str(out)]) == 0


def test_shape_change_reads_as_one_dataset(simulator: SimFactory, tmp_path: Path) -> None:
    """Fields that appear mid-way are seen by default readers of each device type's folder."""
    sim = simulator(seed=2, devices=6, days=6, cadence_s=600)
    out = tmp_path / "out"
    assert harvest(sim, out, "--rps", "500")[0] == 0
    expected = collect_all(sim.url, "demo@example.com", "demo")
    login = sign_in(sim.url, "demo@example.com", "demo")
    type_of = {d["uuid"]: d["type"] for d in list_devices(sim.url, login)}
    fields_by_type: dict[str, set[str]] = {}
    for record in expected.values():
        fields_by_type.setdefault(type_of[record["id"]], set()).update(record)
    assert set(fields_by_type) == {"FMD", "SPOD", "RAMP"}
    for device_type, fields in fields_by_type.items():
        folder = out / f"device_type={device_type}"
        # The default call takes the first file's schema: every file must carry every field.
        schema = ds.dataset(folder, format="parquet", partitioning="hive").schema
        assert fields <= set(schema.names), device_type
    rows = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true, "
        "union_by_name = true)"
    ).fetchall()
    assert rows[0][0] == len(expected)
    assert pc.count(archive(out).column("_id")).as_py() == len(expected)
