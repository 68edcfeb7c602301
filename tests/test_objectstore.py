"""Object storage: the storage seam, its lease lock and whole harvests on moto's S3 server."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
import structlog.testing

from harvester.archive.layout import day_file_key, parse_day_key
from harvester.archive.objectstore import (
    ObjectStorage,
    explain,
    local_path,
    open_location,
    public_uri,
)
from harvester.archive.storage import LocalStorage
from harvester.cli import main
from harvester.errors import LockedError, StorageError
from tests.support.inproc import assert_same_records, record_requests
from tests.support.plain_client import collect_all
from tests.support.rewriting import RENAMED, RewritingServer, expected_ids
from tests.support.s3server import TEST_ENV, moto_server, new_bucket, s3_filesystem
from tests.support.simproc import SimFactory, SimulatorProcess


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def bucket(endpoint: str) -> str:
    return new_bucket(endpoint)


def storage_at(endpoint: str, bucket: str, **options: float) -> ObjectStorage:
    storage = open_location(f"s3://{bucket}/arch", endpoint, **options)
    assert isinstance(storage, ObjectStorage)
    return storage


# ------------------------------------------------------------------ the seam


def test_location_parsing() -> None:
    """Plain paths and file:// URIs are folders; other URIs are object storage, shown bare."""
    assert local_path("out/x") == Path("out/x")
    assert local_path("file:///tmp/a%20b") == Path("/tmp/a b")
    assert local_path("s3://bucket/prefix") is None
    assert isinstance(open_location("file:///tmp/somewhere"), LocalStorage)
    shown = public_uri("s3://KEYID:SECRET@bucket/p?secret_key=abc&region=x")
    assert shown == "s3://bucket/p"


def test_round_trip_list_and_delete(endpoint: str, bucket: str) -> None:
    """Written objects read back whole and by range; listing is recursive under a folder;
    a folder listing names one level."""
    storage = storage_at(endpoint, bucket)
    storage.write_file("a/b/one.bin", lambda h: h.write(b"first"))
    storage.write_file("a/two.bin", lambda h: h.write(b"second"))
    storage.write_file("c/three.bin", lambda h: h.write(b"x" * 10))
    assert storage.read_bytes("a/b/one.bin") == b"first"
    with storage.open_input("c/three.bin") as handle:
        handle.seek(8)
        assert handle.read() == b"xx"
    assert storage.list_files("a") == ["a/b/one.bin", "a/two.bin"]
    assert storage.list_files("a/") == ["a/b/one.bin", "a/two.bin"]
    assert storage.list_files() == ["a/b/one.bin", "a/two.bin", "c/three.bin"]
    assert storage.list_files("nothing/here") == []
    assert storage.exists("a/two.bin")
    assert not storage.exists("a/b")
    assert storage.list_folders() == ["a/", "c/"]
    assert storage.list_folders("a") == storage.list_folders("a/") == ["a/b/"]
    assert storage.list_folders("nothing/") == []
    storage.write_file("a/two.bin", lambda h: h.write(b"replaced"))
    assert storage.read_bytes("a/two.bin") == b"replaced"
    storage.delete("a/b/one.bin")
    storage.delete("a/b/one.bin")
    assert storage.list_files("a") == ["a/two.bin"]
    assert storage.top_level_names() == ["a", "c"]


def test_failing_writer_uploads_nothing(endpoint: str, bucket: str) -> None:
    """A write callback that raises leaves neither a torn object nor the old one replaced."""
    storage = storage_at(endpoint, bucket)
    storage.write_file("k.bin", lambda h: h.write(b"old"))

    def broken(handle: io.BufferedIOBase) -> None:
        handle.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        storage.write_file("k.bin", broken)  # type: ignore[arg-type]  # BytesIO is a BinaryIO
    with pytest.raises(RuntimeError):
        storage.write_file("new.bin", broken)  # type: ignore[arg-type]  # same
    assert storage.read_bytes("k.bin") == b"old"
    assert not storage.exists("new.bin")


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../escape", "/abs", "a//b", "a\\..\\b", "a\x00b", "", "a/."]
)
def test_keys_that_could_leave_the_prefix_are_refused(endpoint: str, bucket: str, key: str) -> None:
    """Every operation refuses a key with a '..'/'.'/empty segment, a leading '/', a
    backslash or a NUL; no object appears anywhere in the bucket."""
    storage = storage_at(endpoint, bucket)
    operations = [
        lambda: storage.write_file(key, lambda h: h.write(b"x")),
        lambda: storage.read_bytes(key),
        lambda: storage.open_input(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
    ]
    if key:
        operations.append(lambda: storage.list_files(key + "/"))
    for operation in operations:
        with pytest.raises(StorageError, match="refusing the storage key"):
            operation()
    listing = pafs.FileSelector(bucket, recursive=True, allow_not_found=True)
    assert s3_filesystem(endpoint).get_file_info(listing) == []


def test_hostile_uuids_are_stored_under_their_encoded_names(endpoint: str, bucket: str) -> None:
    """Day files of uuids holding '/', '..', '=', '%', NUL, unicode and a 200-byte encoding
    are objects under the prefix with exactly their encoded keys, and read back raw."""
    storage = storage_at(endpoint, bucket)
    day = dt.date(2024, 2, 5)
    uuids = ["../../../../../escape", "a/b", "k=v", "100%", "nul\x00", "東京", "x" * 200]
    keys = [day_file_key("FMD", uuid, day) for uuid in uuids]
    for key in keys:
        storage.write_file(key, lambda h, k=key: h.write(k.encode()))
    assert storage.list_files() == sorted(keys)
    assert [storage.read_bytes(key) for key in keys] == [key.encode() for key in keys]
    listing = pafs.FileSelector(bucket, recursive=True)
    objects = [i.path for i in s3_filesystem(endpoint).get_file_info(listing) if i.size]
    assert sorted(objects) == sorted(f"{bucket}/arch/{key}" for key in keys)
    assert sorted(parse_day_key(key) for key in storage.list_files()) == sorted(
        ("FMD", uuid, day) for uuid in uuids
    )


def test_errors_are_one_clear_line_without_credentials(endpoint: str, bucket: str) -> None:
    """Missing object, missing bucket and an unreachable endpoint: StorageError, one line."""
    storage = storage_at(endpoint, bucket)
    with pytest.raises(StorageError, match="no such object") as missing:
        storage.read_bytes("absent.bin")
    no_bucket = storage_at(endpoint, "no-such-bucket-here")
    with pytest.raises(StorageError, match="bucket does not exist") as bucketless:
        no_bucket.write_file("x", lambda h: h.write(b"1"))
    dead = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(StorageError, match="cannot reach the object store") as unreachable:
        storage_at(dead, bucket).list_files()
    for error in (missing.value, bucketless.value, unreachable.value):
        text = str(error)
        assert "\n" not in text
        assert TEST_ENV["AWS_SECRET_ACCESS_KEY"] not in text
        assert TEST_ENV["AWS_ACCESS_KEY_ID"] not in text


def test_unrecognised_errors_are_redacted() -> None:
    """An error text we have no hint for keeps its first line, minus key ids and secrets."""
    error = explain(OSError("odd failure AKIAABCDEFGHIJKLMNOP token=abc123\nsecond line"), "read")
    assert str(error) == "cannot read: odd failure *** token=***"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ------------------------------------------------------------------ the lease lock


def test_lock_is_exclusive_until_released(endpoint: str, bucket: str) -> None:
    """A held lock refuses a second taker naming the holder; after release it can be taken."""
    storage = storage_at(endpoint, bucket, settle_s=0.0)
    held = storage.acquire_lock("_harvest/lock", "run A (pid 1 on here)")
    other = storage_at(endpoint, bucket, settle_s=0.0)
    with pytest.raises(LockedError, match=r"in use by run A \(pid 1 on here\)"):
        other.acquire_lock("_harvest/lock", "run B")
    held.release()
    assert not storage.exists("_harvest/lock")
    other.acquire_lock("_harvest/lock", "run B").release()


def _write_lease(storage: ObjectStorage, **fields: object) -> None:
    lease = {"token": "t0", "owner": "crashed run", "host": "elsewhere", "pid": 1, **fields}
    storage.write_file("_harvest/lock", lambda h: h.write(orjson.dumps(lease)))


def test_expired_lease_is_taken_over(endpoint: str, bucket: str) -> None:
    """A lease past its expiry (a crashed pod elsewhere) no longer blocks; a live one does."""
    now = [1_000.0]
    storage = ObjectStorage(
        s3_filesystem(endpoint), f"{bucket}/arch", "s3://b", settle_s=0.0, clock=lambda: now[0]
    )
    _write_lease(storage, expires_at=1_030.0)
    with pytest.raises(LockedError, match=r"crashed run.*in 30 s"):
        storage.acquire_lock("_harvest/lock", "me")
    now[0] = 1_031.0
    with structlog.testing.capture_logs() as logs:
        lock = storage.acquire_lock("_harvest/lock", "me")
    assert any(e["event"] == "lock_taken_over" for e in logs)
    assert orjson.loads(storage.read_bytes("_harvest/lock"))["owner"] == "me"
    lock.release()


def test_lease_of_a_dead_process_on_this_host_is_stale(endpoint: str, bucket: str) -> None:
    """After a SIGKILL on this host, the next run need not wait for the lease to expire."""
    storage = storage_at(endpoint, bucket, settle_s=0.0)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_pid = int(finished.stdout)
    _write_lease(storage, host=socket.gethostname(), pid=dead_pid, expires_at=time.time() + 600)
    storage.acquire_lock("_harvest/lock", "me").release()
    _write_lease(storage, host=socket.gethostname(), pid=os.getppid(), expires_at=time.time() + 600)
    with pytest.raises(LockedError):
        storage.acquire_lock("_harvest/lock", "me")


def test_a_lease_read_torn_by_a_renewal_is_read_again(
    endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read racing a renewal can return the new lease cut short; it is read again rather
    than taken for garbage (which would let another run take a live lock)."""
    storage = storage_at(endpoint, bucket, settle_s=0.0)
    _write_lease(storage, token="holder", expires_at=time.time() + 600)
    whole = storage.read_bytes("_harvest/lock")
    answers = iter([whole[: len(whole) // 2], whole])
    monkeypatch.setattr(storage, "read_bytes", lambda key: next(answers))
    with structlog.testing.capture_logs() as logs:
        lease = storage._read_lease("_harvest/lock")
    assert lease is not None
    assert lease.token == "holder"
    assert not [e for e in logs if e["event"] == "lock_unreadable"]


def test_heartbeat_extends_and_detects_a_lost_lease(endpoint: str, bucket: str) -> None:
    """The holder renews its lease; if another run overwrote it, it logs lock_lost and leaves it."""
    storage = storage_at(endpoint, bucket, settle_s=0.0, lease_s=4.0)
    lock = storage.acquire_lock("_harvest/lock", "me")
    first = storage._read_lease("_harvest/lock")
    assert first is not None
    deadline = time.monotonic() + 10  # a loaded machine may delay the heartbeat thread
    renewed = first
    while renewed.expires_at == first.expires_at and time.monotonic() < deadline:
        time.sleep(0.02)
        lease = storage._read_lease("_harvest/lock")
        assert lease is not None
        renewed = lease
    assert renewed.token == first.token
    assert renewed.expires_at > first.expires_at
    assert renewed.expires_at > time.time()
    with structlog.testing.capture_logs() as logs:
        # Just after a renewal the heartbeat sleeps lease_s / 4: the takeover is not raced.
        _write_lease(storage, token="intruder", expires_at=time.time() + 600)
        while not any(e["event"] == "lock_lost" for e in logs) and time.monotonic() < deadline:
            time.sleep(0.05)
        lock.release()
    assert any(e["event"] == "lock_lost" for e in logs)
    assert orjson.loads(storage.read_bytes("_harvest/lock"))["token"] == "intruder"


# ------------------------------------------------------------------ whole harvests


def harvest_s3(
    sim: SimulatorProcess, uri: str, endpoint: str, *extra: str, command: str = "run"
) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = [command, "--base-url", sim.url, "--email", "demo@example.com", "--password", "demo"]
    argv += ["--out", uri, "--s3-endpoint", endpoint, "--log-format", "json", *extra]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def s3_archive(endpoint: str, bucket: str) -> pa.Table:
    return ds.dataset(
        f"{bucket}/arch", filesystem=s3_filesystem(endpoint), format="parquet", partitioning="hive"
    ).to_table()


@pytest.mark.slow
def test_harvest_into_s3_equals_plain_client(
    simulator: SimFactory, endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """s3:// archive == plain client; rerun fetches nothing; status, verify and report read
    the bucket (report's device folders listed one level at a time)."""
    sim = simulator(seed=11, devices=4, days=3, cadence_s=120)
    uri = f"s3://{bucket}/arch"
    code, stdout, _ = harvest_s3(sim, uri, endpoint, "--concurrency", "8", "--rps", "500")
    assert code == 0, stdout
    assert_same_records(
        s3_archive(endpoint, bucket), collect_all(sim.url, "demo@example.com", "demo")
    )
    keys = storage_at(endpoint, bucket).list_files()
    assert any(k.startswith("_harvest/checkpoint/") for k in keys)
    assert not any(".tmp-" in k for k in keys)
    before = record_requests(sim.stats())
    assert harvest_s3(sim, uri, endpoint, "--rps", "500")[0] == 0
    assert record_requests(sim.stats()) == before
    code, stdout, _ = harvest_s3(sim, uri, endpoint, command="verify")
    assert code == 0, stdout
    assert "verify OK" in stdout
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["status", "--out", uri, "--s3-endpoint", endpoint, "--json"]) == 0
    status = orjson.loads(out.getvalue())
    assert status["devices"] == 4
    assert status["days"] == status["days_complete"] == 12
    report = tmp_path / "report"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        argv = ["report", "--out", uri, "--s3-endpoint", endpoint, "--output-dir", str(report)]
        assert main(argv) == 0
    assert "4 devices, device-days: 12 complete" in out.getvalue()
    assert (report / "coverage.png").stat().st_size > 0


def test_hostile_uuids_harvest_into_s3_under_the_prefix_only(endpoint: str, bucket: str) -> None:
    """A server listing uuids such as '../../../../../escape' and unusable entries: the run
    into s3:// stores every usable device exactly, every object under the archive's prefix,
    the dataset reads the raw uuids back, and verify agrees."""
    uri = f"s3://{bucket}/arch"
    with RewritingServer() as server:
        server.broken_dates = False
        stdout, stderr = io.StringIO(), io.StringIO()
        argv = ["run", "--base-url", server.url, "--email", "demo@example.com"]
        argv += ["--password", "demo", "--out", uri, "--s3-endpoint", endpoint, "--rps", "500"]
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            assert main(argv) == 0, stdout.getvalue()
            assert main(["verify", *argv[1:-2]]) == 0, stdout.getvalue()
        expected = expected_ids(server.url)
    listing = pafs.FileSelector(bucket, recursive=True)
    infos = s3_filesystem(endpoint).get_file_info(listing)
    paths = [i.path for i in infos if i.type == pafs.FileType.File]
    assert paths
    assert all(path.startswith(f"{bucket}/arch/") for path in paths)
    table = s3_archive(endpoint, bucket)
    stored: dict[str, set[str]] = {}
    for uuid, record_id in zip(
        table.column("device_id").to_pylist(), table.column("_id").to_pylist(), strict=True
    ):
        stored.setdefault(str(uuid), set()).add(record_id)
    assert stored == expected
    assert set(stored) >= set(RENAMED)


@pytest.mark.slow
def test_sigkill_then_fresh_process_resumes_from_the_bucket_alone(
    simulator: SimFactory, endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """Killed with SIGKILL at a seeded moment, a new process in an empty folder completes it."""
    sim = simulator(seed=21, devices=3, days=3, cadence_s=120, latency_ms=60)
    uri = f"s3://{bucket}/arch"
    argv = [sys.executable, "-m", "harvester", "run", "--base-url", sim.url]
    argv += ["--email", "demo@example.com", "--password", "demo", "--out", uri]
    argv += ["--s3-endpoint", endpoint, "--concurrency", "4", "--rps", "500", "-q"]
    env = {**os.environ, **TEST_ENV}
    storage = storage_at(endpoint, bucket)
    first_dir, second_dir = tmp_path / "pod-1", tmp_path / "pod-2"
    first_dir.mkdir()
    second_dir.mkdir()
    victim = subprocess.Popen(
        argv, cwd=first_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while not storage.list_files("_harvest/checkpoint"):
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(random.Random(21).uniform(0.2, 0.8))
    assert victim.poll() is None, "the run ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    assert storage.exists("_harvest/lock"), "a killed run leaves its lease behind"
    resumed = subprocess.run(
        [*argv, "--log-format", "json"],
        cwd=second_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert list(second_dir.iterdir()) == [], "nothing is kept on the local disk"
    runs = [k for k in storage.list_files("_harvest/runs") if k.endswith(".json")]
    manifests = [orjson.loads(storage.read_bytes(k)) for k in runs]
    assert len(manifests) == 1  # the killed run never wrote its manifest
    assert manifests[0]["windows_reused"] > 0, "the resume reused the bucket's checkpoint"
    assert_same_records(
        s3_archive(endpoint, bucket), collect_all(sim.url, "demo@example.com", "demo")
    )
    assert not storage.exists("_harvest/lock")
