"""``harvester probe`` from the command line against the simulator: the default simulator passes,
each assumption switch is named in its row, ``--record`` keeps no secret and ``simulate --replay``
of the recording gives the same rows.

The probe's gate is replaced by one that lets requests through at once and records the rate it
was made for: the pace itself is ``RequestGate``'s (``tests/test_pacing.py``), and two requests
a second would make each probe take ~15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import urllib.request
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from harvester.api.client import ClientSettings, RawReply
from harvester.cli import main
from harvester.probe import session
from harvester.simulator.auth import make_account
from harvester.simulator.recording import read_recording
from tests.simulator.threaded import threaded_simulator
from tests.test_cli_startup import _harvester

#: Three devices (one of each type), three days (the last in progress), a record every 10 min.
FLEET: dict[str, Any] = {"seed": 5, "devices": 3, "days": 3, "cadence_s": 600}
EMAIL, PASSWORD = "probe.user@example.org", "Pr0be-Secret-pw"


class InstantGate:
    """Stands for the probe's ``RequestGate``: keeps the rate it was made for and counts the
    turns taken, without waiting."""

    made: ClassVar[list[InstantGate]] = []

    def __init__(self, rps: float) -> None:
        self.rps = rps
        self.turns = 0
        InstantGate.made.append(self)

    async def wait_turn(self) -> None:
        self.turns += 1


@pytest.fixture(autouse=True)
def instant_gate(monkeypatch: pytest.MonkeyPatch) -> list[InstantGate]:
    """Every probe of a test paces through an ``InstantGate``."""
    InstantGate.made = []
    monkeypatch.setattr(session, "RequestGate", InstantGate)
    return InstantGate.made


def probe(
    url: str, *extra: str, email: str = EMAIL, password: str = PASSWORD, json_rows: bool = True
) -> tuple[int, Any, str]:
    """``harvester probe`` against ``url``: exit code, the JSON document (or the console text
    without ``json_rows``) and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    argv = ["probe", "--base-url", url, "--email", email, "--password", password, *extra]
    argv += ["--log-format", "json" if json_rows else "console"]
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    text = stdout.getvalue()
    return code, json.loads(text) if json_rows and text else text, stderr.getvalue()


def requests_served(url: str) -> int:
    """Requests the simulator answered on the API's routes."""
    with urllib.request.urlopen(url + "/__sim/stats", timeout=10) as response:
        stats = json.loads(response.read())
    return sum(sum(by_status.values()) for by_status in stats["requests"].values())


def outcomes(document: dict[str, Any]) -> dict[str, str]:
    return {row["assumption"]: row["outcome"] for row in document["rows"]}


def test_the_default_simulator_passes_within_the_budget_and_pace_writing_nothing(
    tmp_path: Path, instant_gate: list[InstantGate]
) -> None:
    """Every row is PASS or UNKNOWN with its reason, the exit code is 0, at most 40 requests
    went out, each through a gate made for 2 a second, and nothing appeared under --out."""
    out = tmp_path / "out"
    with threaded_simulator(**FLEET, email=EMAIL, password=PASSWORD) as url:
        code, document, stderr = probe(url, "--out", str(out))
        served = requests_served(url)
    assert code == 0, stderr[-2000:]
    rows = document["rows"]
    assert len(rows) == 18
    for row in rows:
        assert row["outcome"] in ("PASS", "UNKNOWN"), row
        assert row["seen"], row
    assert [row["assumption"] for row in rows if row["outcome"] == "UNKNOWN"] == ["rate limit"]
    assert document["requests"] == served <= 40
    [gate] = instant_gate
    assert gate.rps == 2.0
    assert gate.turns == served
    assert not out.exists()
    assert document["device"]["type"] in ("FMD", "SPOD", "RAMP")


SWITCHES = [
    ({"bounds": "half-open"}, ["window bounds"], True),
    ({"bounds": "exclusive"}, ["day count = records", "window bounds"], False),
    ({"order": "oldest"}, ["record order"], True),
    ({"over_cap": "truncate"}, ["window over 2 h"], True),
    ({"envelope": "bare"}, ["records envelope"], True),
    ({"date_style": "iso-s"}, ["date format"], True),
    ({"date_style": "space"}, ["date format"], True),
]


@pytest.mark.parametrize(
    ("switch", "named", "safe"),
    SWITCHES,
    ids=["-".join(f"{k}={v}" for k, v in switch.items()) for switch, _, _ in SWITCHES],
)
def test_each_flipped_assumption_is_named_in_its_row(
    switch: dict[str, str], named: list[str], safe: bool
) -> None:
    """The probe exits 1 and exactly the rows of the flipped assumption say DIFFERENT, each
    saying whether run is still safe (only exclusive bounds lose records)."""
    with threaded_simulator(**FLEET, email=EMAIL, password=PASSWORD, **switch) as url:
        code, document, stderr = probe(url)
    assert code == 1, stderr[-2000:]
    different = [row for row in document["rows"] if row["outcome"] == "DIFFERENT"]
    assert [row["assumption"] for row in different] == named
    assert {row["run_safe"] for row in different} == {safe}
    assert ("NOT safe" in document["verdict"]) is not safe


def test_the_console_table_says_what_differs_and_whether_run_is_safe() -> None:
    """Without JSON, one line a row, the harvester's answer under a DIFFERENT row, and a
    verdict line."""
    with threaded_simulator(**FLEET, email=EMAIL, password=PASSWORD, order="oldest") as url:
        code, text, _ = probe(url, json_rows=False)
    assert code == 1
    lines = text.splitlines()
    assert lines[0].startswith("device ")
    order = next(i for i, line in enumerate(lines) if line.startswith("DIFFERENT record order"))
    assert "oldest first" in lines[order]
    assert "-> run is safe: sorts each day by date" in lines[order + 1]
    assert sum(line.startswith("PASS ") for line in lines) == 16
    assert lines[-1].endswith("the service differs (record order) but run is still safe")


def test_a_recording_holds_no_secret_and_its_replay_gives_the_same_rows(tmp_path: Path) -> None:
    """``--record DIR --scramble`` writes every exchange with no password, token, e-mail, user
    id or display name in any file of DIR; ``simulate --replay DIR`` answers every request of
    a second probe (other credentials) with the recorded answer, and its rows are the
    first's, but for the token's lifetime (the recording holds a placeholder) and the
    latencies measured."""
    folder = tmp_path / "recording"
    with threaded_simulator(**FLEET, email=EMAIL, password=PASSWORD) as url:
        code, first, stderr = probe(url, "--record", str(folder), "--scramble")
    assert code == 0, stderr[-2000:]
    assert first["recorded"] == str(folder)
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["exchanges.jsonl", "session.json"]
    text = "".join(p.read_text() for p in folder.iterdir())
    user_id = make_account(EMAIL, PASSWORD, FLEET["seed"]).user_id
    for secret in (PASSWORD, EMAIL, "probe.user", user_id, "Probe User", "eyJ"):
        assert secret not in text, secret
    exchanges = read_recording(folder)
    assert len(exchanges) == first["requests"]
    assert [e.sign_in for e in exchanges].count(True) == 1

    with threaded_simulator(replay=folder) as url:
        code, again, stderr = probe(url, email="someone@else.org", password="other")
        with urllib.request.urlopen(url + "/__sim/stats", timeout=10) as response:
            statuses = json.loads(response.read())["requests"]
    assert code == 0, stderr[-2000:]
    assert not any("404" in by_status for by_status in statuses.values())
    replayed = {row["assumption"]: row for row in again["rows"]}
    for row in first["rows"]:
        name = row["assumption"]
        if name == "token lifetime":
            assert replayed[name]["outcome"] == "UNKNOWN"
            assert "placeholder" in replayed[name]["seen"]
        elif name == "latency":
            assert replayed[name]["outcome"] == row["outcome"]
        else:
            assert replayed[name] == row


def test_refused_credentials_exit_3_and_the_recording_keeps_no_password(tmp_path: Path) -> None:
    """A wrong password stops the probe with exit 3 and one line; the refused sign-in is still
    recorded, without the password."""
    folder = tmp_path / "refused"
    with threaded_simulator(**FLEET, email=EMAIL, password=PASSWORD) as url:
        code, document, stderr = probe(url, "--record", str(folder), password="Wrong-Pa55word")
    assert code == 3
    assert document == ""
    assert "harvester: error: sign-in refused" in stderr
    [exchange] = read_recording(folder)
    assert exchange.status == 401
    assert b"Wrong-Pa55word" not in (folder / "exchanges.jsonl").read_bytes()


def test_usage_errors_exit_2() -> None:
    """``--scramble`` without ``--record``, or a ``--device`` the account does not list."""
    with pytest.raises(SystemExit) as stopped:
        probe("http://127.0.0.1:9", "--scramble")
    assert stopped.value.code == 2
    with threaded_simulator(**FLEET, email=EMAIL, password=PASSWORD) as url:
        code, _, stderr = probe(url, "--device", "no-such-device")
    assert code == 2
    assert "--device no-such-device: not among the 3 devices" in stderr


def test_the_probe_help_loads_no_heavy_library() -> None:
    """``harvester probe --help`` describes the command without importing aiohttp, pyarrow
    or the like."""
    code, stdout, loaded = _harvester("probe", "--help")
    assert code == 0
    assert loaded == set()
    assert "--record DIR" in stdout
    assert "--scramble" in stdout


def test_429s_are_waited_out_and_asked_again_within_the_budget() -> None:
    """Against an account limited to 10 requests a second (the gate lets the probe go
    faster), each 429 is waited out and asked again once: every row holds, and the rate-limit
    row, no longer UNKNOWN, counts the 429s and their Retry-After."""
    with threaded_simulator(**FLEET, email=EMAIL, password=PASSWORD, rate_limit=10) as url:
        code, document, stderr = probe(url)
    assert code == 0, stderr[-2000:]
    assert set(outcomes(document).values()) == {"PASS"}
    [rate] = [row for row in document["rows"] if row["assumption"] == "rate limit"]
    assert "answers 429" in rate["seen"]
    assert document["requests"] <= 40


class ScriptedClient:
    """Answers ``exchange`` calls with the replies given, in turn, and keeps what was sent."""

    def __init__(self, *replies: RawReply) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, str | None]] = []

    async def exchange(
        self, method: str, path: str, *, query: Any = (), body: bytes = b"", token: Any = None
    ) -> RawReply:
        self.sent.append((path, token))
        return self.replies.pop(0)


def _reply(status: int, body: object) -> RawReply:
    return RawReply(status, (("Content-Type", "application/json"),), json.dumps(body).encode(), 0)


def test_a_refused_token_is_renewed_once_and_the_request_asked_again() -> None:
    """A 401 on a call signs in again (the new token is used from then on) and asks the call
    once more; every request counts against the budget, and the budget stops the probe."""
    user = {"id": "u1", "role": "SystemAdministrator"}
    client = ScriptedClient(
        _reply(200, {"accessToken": "t1", "user": user}),
        _reply(401, {"message": "expired"}),
        _reply(200, {"accessToken": "t2", "user": user}),
        _reply(200, []),
    )
    settings = ClientSettings(base_url="http://127.0.0.1:9", email=EMAIL, password=PASSWORD)
    asker = session._Asker(cast(Any, client), cast(Any, InstantGate(2.0)), settings, budget=4)

    async def scenario() -> None:
        await asker.sign_in()
        answer = await asker.ask("devices", "GET", "/devices")
        assert answer.status == 200
        with pytest.raises(session._BudgetSpent):
            await asker.ask("devices", "GET", "/devices")

    asyncio.run(scenario())
    assert client.sent == [
        ("/users/signin", None),
        ("/devices", "t1"),
        ("/users/signin", None),
        ("/devices", "t2"),
    ]
    assert asker.identity.tokens == ("t1", "t2")
