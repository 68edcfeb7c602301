"""``harvester plan`` and ``harvester run``: options in, one call into ``harvester.harvest``,
the outcome printed. The harvest itself is imported when a command runs (see ``harvester.cli``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harvester.cli.common import (
    HelpFormatter,
    add_common_options,
    add_run_options,
    load_config,
    printable,
    setup_logging,
)
from harvester.errors import Interrupted

if TYPE_CHECKING:
    from harvester.cli.progress import RunProgress
    from harvester.config import HarvestConfig
    from harvester.harvest import PlanPreview, RunSummary

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

PLAN_DESCRIPTION = """\
Sign in, list your devices and the days each has data for, compare them with the
archive's checkpoint, and print what 'harvester run' with the same options would
fetch: devices, device-days, windows (and how many are already done) and how long
it should take. Fetches no records and writes nothing.
"""
PLAN_EPILOG = """\
example:
  harvester plan --since 2024-01-01 --until 2024-03-31 --timezone America/Chicago
"""
RUN_DESCRIPTION = """\
Back-fill the archive: fetch every two-hour window of the selected devices' days
that is not in OUT yet and store each device-day as one Parquet file. Run it again
at any time: it resumes where the last run stopped and fetches only what is new.
Ctrl-C stops taking work, saves what is in flight and exits 130; a second Ctrl-C
quits at once. Either way the next run resumes.
"""
RUN_EPILOG = """\
examples:
  export SENSIT_EMAIL=you@example.com SENSIT_PASSWORD='...'
  harvester run --since 2024-01-01 --until 2024-03-31 --out sensit-data
  harvester run --out s3://bucket/sensit --s3-endpoint http://minio:9000 --shard 0/4

exit codes: 0 done; 1 some windows or devices failed (listed; run again to retry
them); 2 usage, configuration or storage error; 3 sign-in refused; 130 interrupted.
"""


def register(commands: Any) -> None:
    plan = commands.add_parser(
        "plan",
        help="show what a run would fetch, and how long it would take",
        description=PLAN_DESCRIPTION,
        epilog=PLAN_EPILOG,
        formatter_class=HelpFormatter,
    )
    add_common_options(plan)
    add_run_options(plan)
    plan.set_defaults(handler=_plan)
    run = commands.add_parser(
        "run",
        help="back-fill the archive; resumes where the last run stopped",
        description=RUN_DESCRIPTION,
        epilog=RUN_EPILOG,
        formatter_class=HelpFormatter,
    )
    add_common_options(run)
    add_run_options(run)
    run.set_defaults(handler=_run)


@contextlib.contextmanager
def stop_on_signals(detail: str) -> Iterator[asyncio.Event]:
    """An event the first SIGINT or SIGTERM sets (the command winds down, as ``detail`` tells
    the user, and exits 130); a second quits at once with 130. Call it in the running loop.

    Signals reach the main thread only: a command run on another (a test's worker) gets an
    event that nothing sets.
    """
    import structlog  # loads rich: only once a command runs

    log = structlog.get_logger(__name__)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("stopping_now", signal=signal.Signals(signum).name)
            os._exit(130)
        log.warning(
            "stopping",
            signal=signal.Signals(signum).name,
            detail=f"{detail}; signal again to quit at once",
        )
        stop.set()

    signals = _SIGNALS if threading.current_thread() is threading.main_thread() else ()
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield stop
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _plan(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    return asyncio.run(_plan_async(config))


async def _plan_async(config: HarvestConfig) -> int:
    from harvester.harvest import preview_plan

    with stop_on_signals("stopping at the end of the step under way") as stop:
        preview = await preview_plan(config, stop)
    print_plan(preview, config)
    return 1 if preview.discovery.failed else 0


def print_plan(preview: PlanPreview, config: HarvestConfig) -> None:
    plan = preview.plan
    print(f"devices          {plan.devices}")
    print(f"device-days      {plan.days} ({plan.days_up_to_date} up to date, nothing to fetch)")
    print(f"windows          {plan.windows_total} ({plan.windows_reused} already done)")
    print(f"to fetch         {plan.windows_to_fetch} windows")
    print("                 (and the days of any file a run finds damaged as it fetches)")
    print(
        f"estimated time   {_duration(preview.eta_s)} at --rps {config.rps:g}, "
        f"--concurrency {config.concurrency}"
    )
    for device, days in preview.discovery.availability.items():
        print(f"  {device.type:<5} {printable(device.uuid):<10} {len(days):>5} days with data")
    for failed in preview.discovery.failed:
        print(
            f"  {failed.device.type:<5} {printable(failed.device.uuid):<10} FAILED, not planned: "
            f"{printable(failed.reason)}"
        )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _run(args: argparse.Namespace) -> int:
    setup_logging(args)
    config = load_config(args)
    return asyncio.run(run_command(config))


async def run_command(config: HarvestConfig, progress: RunProgress | None = None) -> int:
    """The run with signal handling, progress and the final summary; returns the exit code."""
    from harvester.cli.progress import RunProgress
    from harvester.entry import tune_heap
    from harvester.harvest import run_harvest

    shown = progress or RunProgress()

    def on_pool(*live: Any) -> None:
        tune_heap()
        shown.attach(*live)

    with stop_on_signals("draining in-flight windows") as stop:
        watcher = asyncio.create_task(shown.watch())
        try:
            summary = await run_harvest(config, stop, on_pool=on_pool)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    print_summary(summary)
    if summary.failure is not None:
        raise summary.failure
    if summary.interrupted:
        raise Interrupted("interrupted: in-flight windows saved; run again to resume")
    unsettled = summary.pool.failures or summary.pool.windows_left or summary.days_short
    return 1 if unsettled or summary.devices_failed else 0


def print_summary(summary: RunSummary) -> None:
    import structlog

    data = summary.as_dict()
    client = data["client"]
    listed_below = ("failed_windows", "devices_failed", "client")
    structlog.get_logger(__name__).info(
        "run_done", **{k: v for k, v in data.items() if k not in listed_below}
    )
    out = sys.stdout
    print(
        f"windows  {data['windows_done']} done, {data['windows_failed']} failed, "
        f"{data['windows_reused']} already done, {data['windows_left']} left for next run",
        file=out,
    )
    print(
        f"records  {data['records']:,} in {data['days_written']} device-days written "
        f"({data['bytes_written'] / 1e6:.1f} MB)",
        file=out,
    )
    print(
        f"requests {client.get('requests', 0)} ({data['retries']} retries, "
        f"{data['rate_limited']} rate-limited, {client.get('sign_ins', 0)} sign-ins)",
        file=out,
    )
    print(f"time     {data['wall_s']:.1f} s ({data['records_per_s']:,.0f} records/s)", file=out)
    for failure in data["failed_windows"]:
        print(
            f"FAILED   device {printable(failure['device'])} {failure['start']} .. "
            f"{failure['end']} after {failure['attempts']} attempts: "
            f"{printable(failure['reason'])}",
            file=out,
        )
    if data["days_short"]:
        print(
            f"SHORT    {data['days_short']} device-days: every window fetched, yet their "
            "records do not add up to the server's count (`harvester verify` names them; "
            "the next run fetches them again)",
            file=out,
        )
    for failure in data["devices_failed"]:
        print(
            f"FAILED   device {printable(failure['device'])} ({failure['type']}), nothing "
            f"fetched: {printable(failure['reason'])}",
            file=out,
        )
    if data["failed_windows"] or data["devices_failed"]:
        print("run again to retry the failed windows and devices", file=out)
