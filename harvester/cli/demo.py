"""``harvester demo``: the simulator in-process on a free port, a back-fill, a sample query.

The simulator, the harvest and pyarrow are imported when the demo runs (see ``harvester.cli``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from harvester.cli.common import HelpFormatter, add_logging_options, setup_logging
from harvester.cli.harvest import run_command
from harvester.cli.inspect import verify_command
from harvester.simulator.options import SimulatorOptions

DEMO_SIMULATOR = SimulatorOptions(
    seed=7, devices=6, days=5, cadence_s=10, latency_ms=20, fault_rate=0.05, slow_fault_s=3.0
)

DEMO_DESCRIPTION = """\
See the harvester at work without an account: start the built-in SENSIT Connect
simulator on a free port (6 devices, 5 days, a few injected faults), back-fill it
into ./demo-data (or --out), verify the archive against the simulator's counts
and print a sample query of the result. Needs no account and no internet.
"""
DEMO_EPILOG = """\
then, for example:
  harvester status --out demo-data
  harvester report --out demo-data
"""


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="back-fill the built-in simulator into ./demo-data, then query it",
        description=DEMO_DESCRIPTION,
        epilog=DEMO_EPILOG,
        formatter_class=HelpFormatter,
    )
    demo.add_argument(
        "--out", type=Path, default=Path("demo-data"), help="archive folder (./demo-data)"
    )
    add_logging_options(demo)
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    setup_logging(args)
    return asyncio.run(_demo_async(args.out))


async def _demo_async(out: Path) -> int:
    from harvester.config import HarvestConfig, Secret
    from harvester.simulator.server import running_simulator

    async with running_simulator(DEMO_SIMULATOR) as base_url:
        print(f"simulator listening on {base_url} (seed {DEMO_SIMULATOR.seed})")
        config = HarvestConfig(
            base_url=base_url,
            email=DEMO_SIMULATOR.email,
            password=Secret(DEMO_SIMULATOR.password),
            out=str(out),
            concurrency=24,
            rps=300,
            read_timeout_s=2.0,
        )
        code = await run_command(config)
        if code == 0:
            code = await verify_command(config)
    print()
    print(sample_query(out))
    return code


def sample_query(out: Path) -> str:
    """Rows and time span per device, read back with pyarrow.dataset (hive partitioning)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(out, format="parquet", partitioning="hive")
    table = dataset.to_table(columns=["device_type", "device_id", "date"])
    grouped = table.group_by(["device_type", "device_id"]).aggregate(
        [("date", "count"), ("date", "min"), ("date", "max")]
    )
    lines = [
        f"sample query: pyarrow.dataset.dataset({str(out)!r}, partitioning='hive')",
        f"{'type':<5} {'device':<8} {'rows':>9}  first record              last record",
    ]
    for row in grouped.sort_by(
        [("device_type", "ascending"), ("device_id", "ascending")]
    ).to_pylist():
        lines.append(
            f"{row['device_type']:<5} {row['device_id']!s:<8} {row['date_count']:>9,}  "
            f"{row['date_min']:%Y-%m-%d %H:%M:%S}Z     {row['date_max']:%Y-%m-%d %H:%M:%S}Z"
        )
    lines.append(f"total rows: {pc.sum(grouped['date_count']).as_py():,}")
    return "\n".join(lines)
