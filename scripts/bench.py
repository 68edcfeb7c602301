"""The performance benchmark of issue 5: every scenario a ratio measured in the same run.

    .venv/bin/python scripts/bench.py [--smoke] [--rounds N] [--results DIR] [--only LIST]
        [--scale-archives DIR]

Scenarios (docs in README "Performance"): 1 rate-limited, 2 latency-bound, 3 CPU-bound
(harvester ÷ bare floors with our parser and with pyarrow.json, and ÷ the pandas user
script, on the same captured bodies), 4 peak RSS of 1/30/365 device-days, 5 event-loop lag
during 3, 6 checkpoint of 1 M windows, 7 scale (plan and first minutes of a run of 1,000
devices x 5 years hourly, and the same fleet's half-done archive resumed and finished one
inspected, in month files and in day files, scripts/bench_scale.py), and asyncio-throttle
beside our pacer. The
simulator runs in its own process; each harvest, floor and pandas job runs in a fresh process
(``bench_child.py``, started through ``measured_child.py``'s small launcher: a child of the
bench itself would count the bench's peak RSS as its own) so its CPU time and peak RSS are
its own. Rounds interleave the
contenders (the machine is noisy): the table quotes medians and the best round. Prints a
table; writes every raw figure as JSON under ``--results``.
``--smoke`` shrinks every size so the whole run takes seconds (``make test`` runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import bench_checkpoint  # noqa: E402  -- a sibling script, importable once scripts/ is on the path
import bench_pacers  # noqa: E402  -- idem
import bench_scale  # noqa: E402  -- idem
import measured_child  # noqa: E402  -- idem

from tests.support import plain_client  # noqa: E402  -- the vendor-document client, the baseline
from tests.support.simproc import SimulatorProcess  # noqa: E402  -- idem

CHILD = str(ROOT / "scripts" / "bench_child.py")
START = dt.date(2024, 1, 1)
#: Each command on a scale archive may take this long: ``verify`` and ``report`` of the
#: 5-year day archive read 1.4 M files.
ARCHIVE_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is; ``--smoke`` uses the small set."""

    rate_limit: float
    rate_devices: int
    rate_days: int
    rate_rest_s: float
    """Pause before each rate-limited run, for the server's bucket (R tokens, refilled at R a
    second) to refill: 1.5 s refills an empty one; a smoke run takes fewer than R/2 (its 16
    windows, the device list and 2 devices' dates), which 0.5 s refills."""
    latency_ms: float
    concurrencies: tuple[int, ...]
    latency_days: int
    cpu_devices: int
    cpu_days: int
    memory_days: tuple[int, ...]
    memory_cadence_s: int
    checkpoint_windows: int
    pacer_seconds: float
    pacer_rates: tuple[int, ...]
    scale_fleet: tuple[int, int, float]
    """Devices, days of hourly data, seconds of ``run`` measured."""
    scale_run_from: str | None
    """Those seconds count from the run's start (None), or from this event of its log:
    ``plan_ready`` at smoke size, so that however loaded the machine the run reaches its pool
    and the half-done archive's reuse is checked."""
    scale_archives: Path | None = None
    """Where scenario 7 keeps its built archives (``month/``, ``day/``), reusing a matching
    build (``--scale-archives``); None: a temporary folder, built anew."""


FULL = Sizes(
    40,
    10,
    8,
    1.5,
    100,
    (1, 8, 32, 64),
    6,
    3,
    4,
    (1, 30, 365),
    120,
    1_000_000,
    2.0,
    (5, 50, 200, 500),
    (1000, 1826, 60.0),
    None,
)
SMOKE = Sizes(
    40,
    2,
    1,
    0.5,
    20,
    (1, 8),
    1,
    1,
    1,
    (1, 2),
    600,
    20_000,
    0.2,
    (500,),
    (20, 30, 0.5),
    "plan_ready",
)


def child(job: str, *args: str) -> dict[str, Any]:
    """Run one ``bench_child.py`` job in a fresh process; its JSON figures. Started through
    ``measured_child``'s launcher: a child of this process would count this process's peak
    RSS in its own (``getrusage``)."""
    with (
        tempfile.TemporaryFile(mode="w+") as out,
        tempfile.TemporaryFile(mode="w+") as err,
        measured_child.Measured([sys.executable, CHILD, job, *args], stdout=out, stderr=err) as run,
    ):
        usage = run.wait()
        assert usage is not None
        out.seek(0)
        err.seek(0)
        printed, log = out.read(), err.read()
    if usage.exit != 0:
        raise RuntimeError(f"bench_child {job} failed ({usage.exit}): {log.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(printed.strip().splitlines()[-1])
    return result


def harvest(sim: SimulatorProcess, out: Path, *flags: str) -> dict[str, Any]:
    return child("harvest", "--base-url", sim.url, "--out", str(out), *flags)


def records_statuses(sim: SimulatorProcess) -> dict[str, int]:
    """Counts by HTTP status of the record calls the simulator answered so far."""
    counts: dict[str, int] = {}
    for route, by_status in sim.stats()["requests"].items():
        if "DeviceLog" in route:
            for status, count in by_status.items():
                counts[status] = counts.get(status, 0) + count
    return counts


def share_429(before: dict[str, int], after: dict[str, int]) -> float:
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(delta.values())
    return delta.get("429", 0) / total if total else 0.0


def scenario_rate(sizes: Sizes, rounds: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """1. Server limit L; harvester --rps L, then 5 L (AIMD must converge on L)."""
    limit = sizes.rate_limit
    runs: dict[str, list[dict[str, Any]]] = {"rps=limit": [], "rps=5x limit": []}
    with SimulatorProcess(
        seed=21, devices=sizes.rate_devices, days=sizes.rate_days, cadence_s=600, rate_limit=limit
    ) as sim:
        for number in range(rounds):
            for name, rps in (("rps=limit", limit), ("rps=5x limit", 5 * limit)):
                time.sleep(sizes.rate_rest_s)  # let the server's bucket refill between runs
                before = records_statuses(sim)
                run = harvest(sim, work / f"rate-{number}-{rps:g}", "--rps", str(rps))
                run["share_429"] = share_429(before, records_statuses(sim))
                run["ratio"] = run["windows"] / run["pool_s"] / limit
                runs[name].append(run)
    return runs


def _plain_baseline(sim: SimulatorProcess, days: int, latency_s: float) -> dict[str, Any]:
    """The vendor document's sequential client over one device's days: windows/s."""
    login = plain_client.sign_in(sim.url, "demo@example.com", "demo")
    device = plain_client.list_devices(sim.url, login)[0]
    started, windows = time.perf_counter(), 0
    for offset in range(days):
        for start, end in plain_client.utc_day_windows(START + dt.timedelta(days=offset)):
            plain_client.fetch_window(
                sim.url, login["accessToken"], device["uuid"], device["type"], start, end
            )
            windows += 1
    seconds = time.perf_counter() - started
    return {"windows": windows, "seconds": seconds, "ratio": windows / seconds * latency_s}


def scenario_latency(sizes: Sizes, rounds: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """2. Latency L, no limit: windows/s ÷ (concurrency ÷ L), c in sizes.concurrencies."""
    latency_s = sizes.latency_ms / 1000
    runs: dict[str, list[dict[str, Any]]] = {f"c={c}": [] for c in sizes.concurrencies}
    runs["plain client"] = []
    devices = max(sizes.concurrencies)
    last = START + dt.timedelta(days=sizes.latency_days - 1)
    with SimulatorProcess(
        seed=22,
        devices=devices,
        days=sizes.latency_days,
        cadence_s=3600,
        latency_ms=sizes.latency_ms,
    ) as sim:
        for number in range(rounds):
            for c in sizes.concurrencies:
                uuids = ",".join(str(1001 + i) for i in range(c))
                run = harvest(
                    sim,
                    work / f"latency-{number}-{c}",
                    *("--concurrency", str(c), "--devices", uuids),
                    *("--since", START.isoformat(), "--until", last.isoformat()),
                )
                run["ratio"] = run["windows"] / run["pool_s"] / (c / latency_s)
                runs[f"c={c}"].append(run)
            runs["plain client"].append(_plain_baseline(sim, sizes.latency_days, latency_s))
    return runs


def scenario_cpu(sizes: Sizes, rounds: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """3 + 5. 1 Hz data, no latency: CPU per million records, harvester vs floor vs pandas.

    SPOD devices only, the issue's reference shape (~380 B and 17 numeric fields a record):
    the simulator spreads its devices over the three types, so it runs three per SPOD.
    """
    runs: dict[str, list[dict[str, Any]]] = {
        "harvester": [],
        "floor-native": [],
        "floor": [],
        "pandas": [],
    }
    spod = ("--device-type", "SPOD")
    with SimulatorProcess(
        seed=23, devices=3 * sizes.cpu_devices, days=sizes.cpu_days, cadence_s=1
    ) as sim:
        bodies = work / "bodies"
        capture = child("capture", "--base-url", sim.url, "--out", str(bodies), *spod)
        for number in range(rounds):
            out = work / f"cpu-{number}"
            runs["harvester"].append(harvest(sim, out / "harvest", "--probe-lag", *spod))
            for job in ("floor-native", "floor", "pandas"):
                runs[job].append(child(job, "--bodies", str(bodies), "--out", str(out / job)))
    for job_runs in runs.values():
        for run in job_runs:
            run["cpu_s_per_m"] = run["cpu_s"] / run["records"] * 1e6
    runs["capture"] = [capture]
    return runs


def scenario_memory(sizes: Sizes, rounds: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """4. Peak RSS of back-fills of N device-days of one device, each in a fresh process."""
    runs: dict[str, list[dict[str, Any]]] = {f"{d} days": [] for d in sizes.memory_days}
    longest = max(sizes.memory_days)
    with SimulatorProcess(
        seed=24, devices=1, days=longest + 1, cadence_s=sizes.memory_cadence_s
    ) as sim:
        for number in range(rounds):
            for days in sizes.memory_days:
                last = START + dt.timedelta(days=days - 1)
                runs[f"{days} days"].append(
                    harvest(
                        sim,
                        work / f"memory-{number}-{days}",
                        *("--since", START.isoformat(), "--until", last.isoformat()),
                    )
                )
    return runs


def scenario_checkpoint(sizes: Sizes, rounds: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """6. Open a checkpoint of N finished windows (snapshot); the cost of recording one."""
    from harvester.archive.checkpoint.journal import CheckpointJournal
    from harvester.archive.storage import LocalStorage

    count = sizes.checkpoint_windows
    entries = bench_checkpoint.windows(count, max(1, count // 1000))
    storage = LocalStorage(work / "checkpoint")
    journal = CheckpointJournal.open(storage, "bench")
    started = time.perf_counter()
    for entry in entries:
        journal.record([entry])
    record_us = (time.perf_counter() - started) / count * 1e6
    journal.close()
    CheckpointJournal.open(storage, "compact").close()  # folds the segments into the snapshot
    runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        started = time.perf_counter()
        opened = CheckpointJournal.open(storage, "reader", compact=False)
        runs.append({"open_s": time.perf_counter() - started, "record_us": record_us})
        del opened
    return {f"{count:,} windows": runs}


def scenario_pacers(sizes: Sizes, rounds: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """asyncio-throttle's two forms beside our RequestGate at 5..500 requests/s."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for row in bench_pacers.compare(sizes.pacer_seconds, sizes.pacer_rates):
            runs.setdefault(f"{row['contender']} R={row['rate']}", []).append(row)
    return runs


def scenario_scale(sizes: Sizes, rounds: int, work: Path) -> dict[str, list[dict[str, Any]]]:
    """7. Issue 13: a fleet of hourly devices planned, and its run's first minutes, into an
    empty archive; a half-done archive of it resumed (plan, run) and a finished one inspected
    (status, verify, report), in month files and in day files, each built once by
    synth_archive and kept for every round (the 5-year day archive's 1.4 M files take ~45
    minutes to build)."""
    devices, days, run_s = sizes.scale_fleet
    run_from = sizes.scale_run_from
    # One simulator for every round of both: it answers each command measured the same.
    with bench_scale.simulator(devices, days) as sim:
        runs = [
            bench_scale.measure(devices, days, run_s, run_from=run_from, base_url=sim.url)
            for _ in range(rounds)
        ]
        resumed = {
            partition: [
                bench_scale.measure_archives(
                    devices,
                    days,
                    run_s,
                    partition,
                    (sizes.scale_archives or work) / partition,
                    run_from=run_from,
                    base_url=sim.url,
                    timeout_s=ARCHIVE_TIMEOUT_S,
                )
                for _ in range(rounds)
            ]
            for partition in ("month", "day")
        }
    return {
        f"{devices} devices x {days} days": runs,
        **{f"{devices} x {days} {p} archive": figures for p, figures in resumed.items()},
    }


SCENARIOS: dict[str, Callable[[Sizes, int, Path], dict[str, list[dict[str, Any]]]]] = {
    "rate": scenario_rate,
    "latency": scenario_latency,
    "cpu": scenario_cpu,
    "memory": scenario_memory,
    "checkpoint": scenario_checkpoint,
    "pacers": scenario_pacers,
    "scale": scenario_scale,
}


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure over the rounds, and its target if it has one."""

    scenario: str
    measure: str
    values: list[float]
    higher_is_better: bool
    target: str = ""
    check: Callable[[float], bool] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def best(self) -> float:
        return max(self.values) if self.higher_is_better else min(self.values)

    @property
    def met(self) -> bool | None:
        """Judged on the median (the best round is shown, never used to pass)."""
        return None if self.check is None else self.check(self.median)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "values": self.values,
            "median": self.median,
            "best": self.best,
            "target": self.target,
            "met": self.met,
        }


def _pick(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(run[key]) for run in runs]


def _at_least(bound: float) -> Callable[[float], bool]:
    """The check of a target ``>= bound``."""
    return lambda v: v >= bound


def _at_most(bound: float) -> Callable[[float], bool]:
    """The check of a target ``<= bound``."""
    return lambda v: v <= bound


def _finished(command: str, figure: str) -> Callable[[dict[str, Any]], float]:
    """``figure`` of ``command`` on the finished archive of a scenario 7 run."""
    return lambda r: r["finished"][command][figure]


def _first_request_gap(run: dict[str, Any]) -> float:
    return _gap_s(run["run"])


def _gap_s(run: dict[str, Any]) -> float:
    """discovered → plan_ready; when the run was stopped before its plan was ready, the run's
    whole wall time (a lower bound of the wait for its first request; JSON keeps None)."""
    gap = run["discovered_to_first_request_s"]
    return float(run["wall_s"]) if gap is None else float(gap)


def rows_of(results: dict[str, dict[str, list[dict[str, Any]]]]) -> list[Row]:
    rows: list[Row] = []
    if "rate" in results:
        for name, ratio_min, share_max in (("rps=limit", 0.95, 0.01), ("rps=5x limit", 0.85, 0.05)):
            runs = results["rate"][name]
            rows.append(
                Row(
                    "1 rate-limited",
                    f"{name}: windows/s ÷ limit",
                    _pick(runs, "ratio"),
                    True,
                    f">= {ratio_min}",
                    _at_least(ratio_min),
                )
            )
            rows.append(
                Row(
                    "1 rate-limited",
                    f"{name}: 429 share",
                    _pick(runs, "share_429"),
                    False,
                    f"<= {share_max:.0%}",
                    _at_most(share_max),
                )
            )
    if "latency" in results:
        for name, runs in results["latency"].items():
            wanted = name in ("c=32", "c=64")
            rows.append(
                Row(
                    "2 latency-bound",
                    f"{name}: windows/s ÷ (c ÷ latency)",
                    _pick(runs, "ratio"),
                    True,
                    ">= 0.9" if wanted else "",
                    (lambda v: v >= 0.9) if wanted else None,
                )
            )
    if "cpu" in results:
        cpu = results["cpu"]
        for job in ("harvester", "floor-native", "floor", "pandas"):
            rows.append(
                Row(
                    "3 CPU-bound",
                    f"{job}: CPU s / M records",
                    _pick(cpu[job], "cpu_s_per_m"),
                    False,
                )
            )
        harvester = cpu["harvester"]

        def ratios(top: str, bottom: str) -> list[float]:
            pairs = zip(cpu[top], cpu[bottom], strict=True)
            return [a["cpu_s_per_m"] / b["cpu_s_per_m"] for a, b in pairs]

        rows += [
            Row(
                "3 CPU-bound",
                "harvester ÷ floor, same parser (same round)",
                ratios("harvester", "floor-native"),
                False,
                "<= 1.5",
                lambda v: v <= 1.5,
            ),
            Row(
                "3 CPU-bound", "harvester ÷ pyarrow.json floor", ratios("harvester", "floor"), False
            ),
            Row(
                "3 CPU-bound",
                "pandas ÷ harvester (same round)",
                ratios("pandas", "harvester"),
                True,
                ">= 1.5",
                lambda v: v >= 1.5,
            ),
            Row("3 CPU-bound", "pandas ÷ pyarrow.json floor", ratios("pandas", "floor"), True),
        ]
        rows.append(
            Row(
                "3 CPU-bound",
                "harvester records/s (wall)",
                [h["records"] / h["wall_s"] for h in harvester],
                True,
            )
        )
        lags = [run["lag"] for run in harvester]
        rows.append(Row("5 loop lag", "p50 ms", [lag["p50_ms"] for lag in lags], False))
        rows.append(
            Row(
                "5 loop lag",
                "p99 ms",
                [lag["p99_ms"] for lag in lags],
                False,
                "<= 20",
                lambda v: v <= 20,
            )
        )
        rows.append(Row("5 loop lag", "max ms", [lag["max_ms"] for lag in lags], False))
    if "memory" in results:
        memory = results["memory"]
        names = list(memory)
        for name in names:
            rows.append(
                Row("4 memory", f"{name}: peak RSS MB", _pick(memory[name], "peak_rss_mb"), False)
            )
        small, large = memory[names[0]], memory[names[-1]]
        rows.append(
            Row(
                "4 memory",
                f"{names[-1]} ÷ {names[0]} peak RSS",
                [b["peak_rss_mb"] / a["peak_rss_mb"] for a, b in zip(small, large, strict=True)],
                False,
                "<= 1.3",
                lambda v: v <= 1.3,
            )
        )
        rows.append(
            Row(
                "4 memory",
                "largest peak RSS MB",
                [max(run["peak_rss_mb"] for runs in memory.values() for run in runs)],
                False,
                "<= 300",
                lambda v: v <= 300,
            )
        )
    if "checkpoint" in results:
        for name, runs in results["checkpoint"].items():
            rows.append(
                Row(
                    "6 checkpoint",
                    f"open {name} (s)",
                    _pick(runs, "open_s"),
                    False,
                    "<= 3",
                    lambda v: v <= 3,
                )
            )
            rows.append(
                Row("6 checkpoint", "record one window (µs)", _pick(runs, "record_us"), False)
            )
    for name, runs in results.get("scale", {}).items():
        if "half" in runs[0]:
            rows += _archive_rows(name, runs)
            continue
        for measure, pick, limit in (
            ("plan peak RSS MB", lambda r: r["plan"]["peak_rss_mb"], 300.0),
            ("plan CPU s", lambda r: r["plan"]["cpu_s"], 20.0),
            ("run peak RSS MB (first minutes)", lambda r: r["run"]["peak_rss_mb"], 300.0),
            ("discovered → first request s", _first_request_gap, 5.0),
        ):
            rows.append(
                Row(
                    "7 scale",
                    f"{name}: {measure}",
                    [pick(run) for run in runs],
                    False,
                    f"<= {limit:g}",
                    _at_most(limit),
                )
            )
    for name, runs in results.get("pacers", {}).items():
        name = name.replace("asyncio-throttle ", "")
        rows.append(Row("pacers", f"{name}: achieved ÷ R", _pick(runs, "achieved_ratio"), True))
        ideal = runs[0]["ideal_per_100ms"]
        rows.append(
            Row(
                "pacers",
                f"{name}: peak/100 ms (ideal {ideal})",
                _pick(runs, "peak_per_100ms"),
                False,
            )
        )
    return rows


def _archive_rows(name: str, runs: list[dict[str, Any]]) -> list[Row]:
    """Scenario 7 on a half-done archive (plan, run) and a finished one (status, verify,
    report): each within 300 MB, nothing finished fetched again."""
    picks: list[tuple[str, Callable[[dict[str, Any]], float], float | None]] = [
        ("half-done plan peak RSS MB", lambda r: r["half"]["plan"]["peak_rss_mb"], 300.0),
        ("half-done plan CPU s", lambda r: r["half"]["plan"]["cpu_s"], 20.0),
        (
            "half-done run peak RSS MB (first minute)",
            lambda r: r["half"]["run"]["peak_rss_mb"],
            300.0,
        ),
        (
            "half-done discovered → first request s",
            lambda r: _gap_s(r["half"]["run"]),
            5.0,
        ),
        (
            "half-done windows fetched again",
            lambda r: r["half"]["run"]["windows_fetched_again"],
            0.0,
        ),
    ]
    for command in ("status", "verify", "report"):
        picks.append((f"finished {command} peak RSS MB", _finished(command, "peak_rss_mb"), 300.0))
        picks.append((f"finished {command} CPU s", _finished(command, "cpu_s"), None))
    return [
        Row(
            "7 scale",
            f"{name}: {measure}",
            [pick(run) for run in runs],
            False,
            "" if limit is None else f"<= {limit:g}",
            None if limit is None else _at_most(limit),
        )
        for measure, pick, limit in picks
    ]


def print_table(rows: list[Row]) -> None:
    width = max(len(row.measure) for row in rows)
    print(f"{'scenario':<16} {'measure':<{width}} {'median':>10} {'best':>10}  target    met")
    for row in rows:
        met = {None: "", True: "yes", False: "NO"}[row.met]
        print(
            f"{row.scenario:<16} {row.measure:<{width}} {row.median:>10.3f} {row.best:>10.3f}"
            f"  {row.target:<9} {met}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: seconds, not minutes")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; smoke 1)")
    parser.add_argument("--results", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--only", help=f"comma list of scenarios ({','.join(SCENARIOS)})")
    parser.add_argument(
        "--scale-archives",
        type=Path,
        help="keep scenario 7's archives here (month/, day/) and reuse a matching build",
    )
    args = parser.parse_args()
    sizes = dataclasses.replace(SMOKE if args.smoke else FULL, scale_archives=args.scale_archives)
    rounds = args.rounds or (1 if args.smoke else 3)
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        for name in chosen:
            started = time.perf_counter()
            results[name] = SCENARIOS[name](sizes, rounds, Path(folder) / name)
            timings[name] = time.perf_counter() - started
            print(f"scenario {name} done in {timings[name]:.0f} s", file=sys.stderr)
    rows = rows_of(results)
    print_table(rows)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results / f"bench-{'smoke-' if args.smoke else ''}{stamp}.json"
    document = {
        "smoke": args.smoke,
        "rounds": rounds,
        "sizes": sizes.__dict__,
        "seconds": timings,
        "table": [row.as_dict() for row in rows],
        "runs": results,
    }
    path.write_text(json.dumps(document, indent=1, default=str))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
