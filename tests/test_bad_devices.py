"""One bad device never blocks the others: which shape errors are retried, and how often."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as pds
import pytest

from harvester.errors import MalformedReplyError, ShapeError
from harvester.fetch.backoff import RetryPolicy
from harvester.fetch.retrying import with_retries
from harvester.records.parse import parse_window
from tests.support.inproc import harvest
from tests.support.rewriting import BROKEN, RENAMED, RewritingServer, expected_ids


async def _attempts_until_given_up(error: ShapeError) -> tuple[int, type[ShapeError]]:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error

    async def no_sleep(_: float) -> None:
        return None

    with pytest.raises(ShapeError) as caught:
        await with_retries(call, RetryPolicy(), what="dates of 1041", sleep=no_sleep)
    return calls, type(caught.value)


async def test_a_malformed_reply_is_retried_once_and_a_cut_off_body_fully() -> None:
    """Whole JSON of the wrong shape is asked again once (the server answers it the same);
    a body that is not JSON (cut off, so maybe transient) gets every attempt of the policy.
    Either is raised again as its own class."""
    assert await _attempts_until_given_up(MalformedReplyError("not a list")) == (
        MalformedReplyError.max_attempts,
        MalformedReplyError,
    )
    assert MalformedReplyError.max_attempts == 2
    assert await _attempts_until_given_up(ShapeError("cut off")) == (
        RetryPolicy().max_attempts,
        ShapeError,
    )


@pytest.mark.parametrize(
    "body",
    [
        b"[1]",
        b'{"records": []}',
        b'{"data": {"a": 1}}',
        b'{"data": [1]}',
        b'{"data": [{"date": "2024-02-05T00:00:00Z"}]}',
        b'{"data": [{"_id": "a", "date": "yesterday"}]}',
        b'{"data": [{"_id": "a", "date": null}]}',
        b"[" * 100 + b"]" * 100,
    ],
)
def test_records_of_the_wrong_shape_are_malformed_replies(body: bytes) -> None:
    """A records body that is whole JSON of the wrong shape is a malformed reply (retried
    once), whichever parser meets it, large or small."""
    padded = body[:-1] + b" " * 20_000 + body[-1:]
    for candidate in (body, padded):
        with pytest.raises(MalformedReplyError):
            parse_window(candidate)


@pytest.mark.parametrize("body", [b'{"data": [{"_id": "a", "da', b"<html>", b""])
def test_records_that_are_not_json_are_plain_shape_errors(body: bytes) -> None:
    """A cut-off or non-JSON records body keeps the usual retries: a plain ShapeError."""
    with pytest.raises(ShapeError) as caught:
        parse_window(body)
    assert type(caught.value) is ShapeError


# -- end to end: the simulator behind a middleware that lists hostile devices ------------------


def _stored_ids(out: Path) -> dict[str, set[str]]:
    table = pds.dataset(out, format="parquet", partitioning="hive").to_table()
    stored: dict[str, set[str]] = {}
    for uuid, record_id in zip(
        table.column("device_id").to_pylist(), table.column("_id").to_pylist(), strict=True
    ):
        stored.setdefault(str(uuid), set()).add(record_id)
    return stored


def _events(stderr: str, name: str) -> list[dict[str, Any]]:
    lines = (orjson.loads(line) for line in stderr.splitlines() if line.startswith("{"))
    return [event for event in lines if event.get("event") == name]


def test_unusable_and_failing_devices_never_block_the_others(tmp_path: Path) -> None:
    """Against a server listing hostile uuids, unusable entries and a device whose dates are
    malformed: each unusable entry is skipped with one warning, the failing device is given
    up after two answers and named by plan, run (summary and manifest) and verify, all exit
    1; every other device is stored exactly, under OUT only, read back under its raw uuid.
    Once the server heals, a run completes the archive and verify agrees."""
    out = tmp_path.joinpath(*"abcdefg", "out")
    with RewritingServer() as server:
        code, stdout, _ = harvest(server.url, out, command="plan")
        assert code == 1
        assert "1003       FAILED, not planned" in stdout
        server.broken_answers = 0

        code, stdout, stderr = harvest(server.url, out)
        assert code == 1, stdout
        assert server.broken_answers == MalformedReplyError.max_attempts
        assert "FAILED   device 1003 (RAMP), nothing fetched" in stdout
        skipped = _events(stderr, "device_skipped")
        assert sorted(str(event["uuid"]) for event in skipped) == ["", "9", "null", "null"]
        (manifest,) = (out / "_harvest" / "runs").iterdir()
        failed = orjson.loads(manifest.read_bytes())["devices_failed"]
        assert [(f["device"], f["type"]) for f in failed] == [("1003", "RAMP")]
        assert "bad entry" in failed[0]["reason"]
        assert all(p.is_relative_to(out) for p in tmp_path.rglob("*") if p.is_file())

        code, stdout, _ = harvest(server.url, out, command="verify")
        assert code == 1
        assert "UNVERIFIED RAMP 1003" in stdout

        server.broken_dates = False
        expected = expected_ids(server.url)
        assert set(expected) == {*RENAMED, "1003", "1004"}
        assert _stored_ids(out) == {k: v for k, v in expected.items() if k != BROKEN}

        code, stdout, _ = harvest(server.url, out)
        assert code == 0, stdout
        assert _stored_ids(out) == expected
        code, stdout, _ = harvest(server.url, out, command="verify")
        assert code == 0, stdout
        assert "verify OK" in stdout
