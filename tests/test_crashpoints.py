"""The fault hooks: spec parsing, counting per point, error actions, torn files (no kills here:
those run in subprocesses, see tests/test_crash_resume.py)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from harvester import crashpoints
from harvester.archive.storage import LocalStorage
from harvester.errors import StorageError


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    """Every test starts and ends with no hook armed."""
    crashpoints.arm("")
    yield
    crashpoints.arm("")


@pytest.mark.parametrize(
    "spec", ["fetched", "fetched:x", ":3", "fetched:0", "fetched:2:explode", "a:1:kill:extra"]
)
def test_malformed_specs_are_rejected(spec: str) -> None:
    """A spec that is not <point>:<n>[:<action>] with n >= 1 and a known action is an error."""
    with pytest.raises(ValueError, match="HARVESTER_CRASH_AT"):
        crashpoints.parse(spec)


def test_specs_parse_with_kill_as_the_default_action() -> None:
    """Several comma-separated triggers; the action defaults to kill."""
    triggers = crashpoints.parse("fetched:3, torn_day:2:torn,write:1:enospc")
    assert {name: (t.at, t.action) for name, t in triggers.items()} == {
        "fetched": (3, "kill"),
        "torn_day": (2, "torn"),
        "write": (1, "enospc"),
    }


def test_fires_exactly_on_the_nth_pass_of_its_own_point() -> None:
    """``fires`` counts passes per point and is True on the n-th only."""
    crashpoints.arm("day_written:3")
    assert [crashpoints.fires("day_written") for _ in range(5)] == [
        False,
        False,
        True,
        False,
        False,
    ]
    assert not crashpoints.fires("fetched")


def test_error_actions_raise_from_the_nth_pass_on() -> None:
    """An ENOSPC hook raises at the n-th pass and every later one: a full disk stays full."""
    crashpoints.arm("write:2:enospc")
    crashpoints.hit("write")
    for _ in range(3):
        with pytest.raises(OSError, match="No space") as caught:
            crashpoints.hit("write")
        assert caught.value.errno == errno.ENOSPC


def test_storage_translates_an_injected_error_and_leaves_no_temporary(tmp_path: Path) -> None:
    """EROFS inside write_file becomes a StorageError with a hint; no temp file is left."""
    storage = LocalStorage(tmp_path)
    crashpoints.arm("write_day:1:erofs")
    storage.write_file("_harvest/other.json", lambda h: h.write(b"{}"))
    key = "device_type=SPOD/device_id=1/day=2024-01-01/1_2024-01-01.parquet"
    with pytest.raises(StorageError, match="choose a writable --out"):
        storage.write_file(key, lambda h: h.write(b"PAR1"))
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["other.json"]


def test_unarmed_hooks_do_nothing(tmp_path: Path) -> None:
    """With nothing armed, hit/fires/tear_if_due are no-ops."""
    target = tmp_path / "f"
    target.write_bytes(b"12345678")
    crashpoints.hit("write", "fetched")
    assert not crashpoints.fires("torn_day")
    crashpoints.tear_if_due("torn_day", target)
    assert target.read_bytes() == b"12345678"
