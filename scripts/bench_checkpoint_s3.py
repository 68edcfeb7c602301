"""What a 1,000,000-window checkpoint costs to load from a bucket; prints numbers, asserts nothing.

    .venv/bin/python scripts/bench_checkpoint_s3.py [--windows 1000000] [--rounds 3]

Starts moto's S3 server on 127.0.0.1 (the `dev` extra), writes a compacted checkpoint of N
finished windows into a bucket through ``ObjectStorage``, and times, in interleaved rounds,
``CheckpointJournal.open`` of it (list + GET of the snapshot + decode) next to the same open
from a local folder. moto is a Python server: its GETs are slower than a real S3 region's
within the same cloud, so the bucket figure is an upper bound of the transfer part.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_checkpoint import windows

from harvester.archive.checkpoint.journal import CheckpointJournal
from harvester.archive.objectstore import open_location
from harvester.archive.storage import LocalStorage, Storage
from tests.support.s3server import TEST_ENV, moto_server, new_bucket


def build(storage: Storage, count: int) -> int:
    journal = CheckpointJournal.open(storage, "build")
    journal.record(windows(count, devices=max(1, count // 4380)))
    journal.flush()
    journal.close()
    CheckpointJournal.open(storage, "compact").close()  # folds the segment into the snapshot
    return sum(len(storage.read_bytes(k)) for k in storage.list_files("_harvest/checkpoint"))


def open_seconds(storage: Storage) -> float:
    started = time.perf_counter()
    CheckpointJournal.open(storage, "bench", compact=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    os.environ.update(TEST_ENV)
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as folder:
        bucket = open_location(f"s3://{new_bucket(endpoint)}/arch", endpoint)
        local = LocalStorage(Path(folder))
        size = build(bucket, args.windows)
        build(local, args.windows)
        timings: dict[str, list[float]] = {"bucket (moto)": [], "local folder": []}
        for _ in range(args.rounds):
            timings["bucket (moto)"].append(open_seconds(bucket))
            timings["local folder"].append(open_seconds(local))
    print(f"checkpoint of {args.windows:,} windows: snapshot {size / 1e6:.1f} MB")
    for name, values in timings.items():
        print(
            f"open from {name:<14} median {statistics.median(values):.2f} s, "
            f"best {min(values):.2f} s ({args.rounds} rounds)"
        )


if __name__ == "__main__":
    main()
