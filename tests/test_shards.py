"""``--shard K/N``: the split by device, per-shard state, and three shards into one archive."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pytest

from harvester.archive.availability import read_availability
from harvester.archive.checkpoint import journal as checkpoint
from harvester.archive.layout import (
    CHECKPOINT_PREFIX,
    checkpoint_prefix,
    journal_prefixes,
    lock_key,
)
from harvester.archive.storage import LocalStorage
from harvester.cli import main
from harvester.config import resolve_config
from harvester.errors import ConfigError
from harvester.inspect.report import read_devices
from harvester.models import Device
from harvester.plan.shards import Shard, devices_of, parse_shard, shard_of
from tests.support.inproc import assert_same_records
from tests.support.plain_client import collect_all
from tests.support.simproc import SimFactory

UUIDS = [f"{n:04d}" for n in range(1000)]


def test_parse_and_validate() -> None:
    """K/N parses with spaces; K outside 0..N-1, N < 1 or other text is one clear ValueError."""
    assert parse_shard(" 2 / 8 ") == Shard(2, 8)
    assert str(Shard(0, 1)) == "0/1"
    for bad in ("3/3", "0/0", "-1/2", "1", "a/b", "1/2/3"):
        with pytest.raises(ValueError, match="K/N") as error:
            parse_shard(bad)
        assert "\n" not in str(error.value)


def test_every_device_in_exactly_one_shard_and_balanced() -> None:
    """The shards of N partition the devices, each taking a fair share of 1,000 uuids."""
    devices = [Device(uuid=u, type="SPOD", name=u) for u in UUIDS]
    for count in (1, 3, 7):
        parts = [devices_of(devices, Shard(k, count)) for k in range(count)]
        assert sorted(d.uuid for part in parts for d in part) == UUIDS
        sizes = [len(part) for part in parts]
        assert min(sizes) > 0.7 * len(UUIDS) / count
    assert devices_of(devices, None) == devices


def test_split_is_the_same_in_every_process() -> None:
    """The hash is stable across processes (Python's own str hash is salted per process)."""
    script = (
        "from harvester.plan.shards import shard_of; "
        "print([shard_of(f'{n:04d}', 5) for n in range(200)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert orjson.loads(other.stdout) == [shard_of(u, 5) for u in UUIDS[:200]]


def test_adding_devices_moves_no_other_device() -> None:
    """Going from N to the same N with more devices keeps every earlier device in its shard."""
    before = {u: shard_of(u, 4) for u in UUIDS[:500]}
    after = {u: shard_of(u, 4) for u in UUIDS}
    assert all(after[u] == shard for u, shard in before.items())
    assert Counter(after.values()).keys() == {0, 1, 2, 3}


def test_state_keys_per_shard() -> None:
    """Each shard has its own journal sub-folder and lock; the unsharded run keeps the old ones."""
    assert checkpoint.CHECKPOINT_PREFIX == CHECKPOINT_PREFIX
    assert checkpoint_prefix(None) == "_harvest/checkpoint"
    assert checkpoint_prefix(Shard(1, 3)) == "_harvest/checkpoint/shard-1-of-3"
    assert lock_key(None) == "_harvest/lock"
    assert lock_key(Shard(1, 3)) == "_harvest/lock-shard-1-of-3"
    keys = [
        "_harvest/checkpoint/snapshot.ckpt",
        "_harvest/checkpoint/shard-0-of-2/seg-0000000001-00000000-r.jsonl",
        "_harvest/checkpoint/shard-1-of-2/snapshot.ckpt",
        "_harvest/checkpoint/shard-1-of-2/snapshot.ckpt.corrupt-20240101T000000Z",
        "_harvest/checkpoint/shard-5-of-6/notes.txt",
    ]
    assert journal_prefixes(keys) == [
        "_harvest/checkpoint",
        "_harvest/checkpoint/shard-0-of-2",
        "_harvest/checkpoint/shard-1-of-2",
    ]


def test_shard_from_flag_and_environment() -> None:
    """SENSIT_SHARD sets the shard (as an Indexed Job pod would); a bad value is a ConfigError."""
    assert resolve_config({}, {"SENSIT_SHARD": "2/3"}).shard == Shard(2, 3)
    assert resolve_config({"shard": "0/3"}, {"SENSIT_SHARD": "2/3"}).shard == Shard(0, 3)
    with pytest.raises(ConfigError, match="SENSIT_SHARD: expected K/N"):
        resolve_config({}, {"SENSIT_SHARD": "3"})
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["run", "--email", "e", "--password", "p", "--shard", "4/4"])
    assert code == 2
    assert stderr.getvalue().count("\n") == 1
    assert "--shard" in stderr.getvalue()


@pytest.mark.slow
def test_three_concurrent_shards_make_one_complete_archive(
    simulator: SimFactory, tmp_path: Path
) -> None:
    """Three shard processes at once into one OUT: union == plain client; status sees it all."""
    sim = simulator(seed=14, devices=6, days=3, cadence_s=180, latency_ms=20)
    out = tmp_path / "out"
    common = [sys.executable, "-m", "harvester", "run", "--base-url", sim.url]
    common += ["--email", "demo@example.com", "--password", "demo", "--out", str(out)]
    common += ["--rps", "300", "--concurrency", "4", "-q"]
    processes = [
        subprocess.Popen(
            [*common, "--shard", f"{k}/3"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=50)
        assert process.returncode == 0, stderr[-2000:]
    expected = collect_all(sim.url, "demo@example.com", "demo")
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    assert_same_records(table, expected)
    checkpoints = sorted(p.name for p in (out / "_harvest" / "checkpoint").iterdir())
    assert checkpoints == [f"shard-{k}-of-3" for k in range(3)]
    stored_devices = {p.name for p in out.glob("device_type=*/device_id=*")}
    assert len(stored_devices) == 6
    with contextlib.redirect_stdout(io.StringIO()) as status_out:
        assert main(["status", "--out", str(out), "--json"]) == 0
    status = orjson.loads(status_out.getvalue())
    assert status["devices"] == 6
    assert status["days"] == status["days_complete"] == 18
    assert status["records"] == len(expected)
    # Each shard's plan reads its own journal: nothing left to fetch.
    with contextlib.redirect_stdout(io.StringIO()) as plan_out:
        code = main(["plan", *common[4:], "--shard", "1/3"])
    assert code == 0
    assert "to fetch         0 windows" in plan_out.getvalue()
    # The shards' device lists and day counts (written at once) are all kept, not the last one.
    storage = LocalStorage(out)
    assert {d.uuid for d in read_devices(storage)} == {
        p.name[10:] for p in out.glob("*/device_id=*")
    }
    assert len(read_availability(storage)) == 6
