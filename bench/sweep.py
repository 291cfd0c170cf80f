"""`make bench-sweep`: how many expired executions the retention sweep archives and removes per
second.

Runs ``--executions`` K=5 chains (inline and through the workers, alternating) on the engine as
processes with a private PostgreSQL and the default retention (nothing expires), stops the
engine, then runs one sweep (``retention.sweep``) with a retention of a moment over all of them,
into a local folder archive, and times it. Nothing else runs meanwhile, so the figure is the
sweep's own: gather, write and verify the archive objects, remove in transactions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from baton_common.archive import LocalArchive
from baton_common.embedded import PostgresServer, free_port
from baton_common.retention import RetentionSettings, sweep

from bench import baton_bench as bb
from bench import services_bench as sb

CHUNK = 100  # executions per batch request


async def load(workdir: Path, executions: int) -> None:
    """Run ``executions`` K=5 chains to their end, wait until the views hold them, stop."""
    running = await bb.start(workdir / "baton", free_port())
    try:
        plans = [bb.chain_plan(5), sb.worker_chain_plan(5)]
        async with bb.client_for(running, timeout=300) as client:
            ends = []
            for start in range(0, executions, CHUNK):
                n = min(CHUNK, executions - start)
                ends += await bb.submit_batch(client, running, plans[(start // CHUNK) % 2], n)
                await asyncio.gather(*ends[-n:])
        await bb.settle(running, timeout=120)
    finally:
        await bb.stop(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, default=1000)
    args = parser.parse_args()
    if args.executions <= 0:
        parser.error("--executions must be positive")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    schema = os.environ["BATON_DB_SCHEMA"] = f"sweep_{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="baton-sweep-"))
    pg = PostgresServer(workdir / "pg").start()
    os.environ["DATABASE_URL"] = pg.url
    try:
        asyncio.run(load(workdir, args.executions))
        moment = RetentionSettings(BATON_RETENTION_DAYS=1e-9)  # type: ignore[call-arg]
        t0 = time.perf_counter()
        done = sweep(pg.url, schema, LocalArchive(workdir / "archive"), moment)
        took = time.perf_counter() - t0
    finally:
        pg.stop()
    print(
        f"sweep: {done.archived:,} executions archived and removed in {took:.1f} s: "
        f"{done.archived / took:,.1f} executions/s ({done.skipped} skipped, "
        f"{len(done.failed)} failed), {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
