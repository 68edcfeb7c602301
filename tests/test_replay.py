"""``harvester run`` against ``harvester simulate --replay`` of the committed fixture recording
(``tests/fixtures/recordings/simulator-small``, made by ``scripts/record_fixture.py``)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.support import inproc
from tests.support.simproc import SimFactory

FIXTURE = Path(__file__).parent / "fixtures" / "recordings" / "simulator-small"

pytestmark = pytest.mark.slow


def recorded_records() -> dict[str, dict[str, Any]]:
    """Every record the fixture's answered windows hold, by ``_id``, ``date`` as a time."""
    records: dict[str, dict[str, Any]] = {}
    for line in (FIXTURE / "exchanges.jsonl").read_text().splitlines():
        exchange = json.loads(line)
        if "DeviceLogForGivenHour" in exchange["path"] and exchange["status"] == 200:
            for record in json.loads(exchange["body"])["data"]:
                date = dt.datetime.fromisoformat(record["date"].replace("Z", "+00:00"))
                records[record["_id"]] = {**record, "date": date}
    return records


def test_a_run_against_the_replayed_fixture_stores_exactly_what_it_holds(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """Every record of the recording is stored once with every field as recorded, verify
    agrees with the recorded counts, and the harvester asked nothing that was not recorded."""
    sim = simulator("--replay", str(FIXTURE))
    out = tmp_path / "out"
    code, stdout, stderr = inproc.harvest(sim.url, out, password="not the recorded one")
    assert code == 0, stdout + stderr[-2000:]
    rows = [
        row
        for path in out.rglob("*.parquet")
        if "_harvest" not in path.parts
        for row in pq.read_table(path).to_pylist()
    ]
    stored = {row["_id"]: {k: v for k, v in row.items() if v is not None} for row in rows}
    expected = {
        record_id: {k: v for k, v in record.items() if v is not None}
        for record_id, record in recorded_records().items()
    }
    assert len(rows) == len(stored) == len(expected) == 117
    assert stored == expected
    code, report, _ = inproc.harvest(sim.url, out, command="verify")
    assert code == 0, report
    statuses = {status for by_status in sim.stats()["requests"].values() for status in by_status}
    assert statuses == {"200"}


def test_the_replayed_fixture_answers_the_recorded_refusal() -> None:
    """The recording's 3-hour window was refused by the cap; its line says so, for replay."""
    lines = [json.loads(line) for line in (FIXTURE / "exchanges.jsonl").read_text().splitlines()]
    refused = [line for line in lines if line["status"] != 200]
    assert len(refused) == 1
    assert refused[0]["request_json"]["EndDate"] == "2024-01-01 03:00:00"
    assert "at most 2 h" in json.loads(refused[0]["body"])["message"]
