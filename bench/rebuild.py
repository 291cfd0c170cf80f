"""`make bench-rebuild`: the time to rebuild the views of 100,000 executions.

The executions are written straight into the stores, as the gateway and the executor record a
K=5 chain of pure steps (``execution.requested`` in the gateway's store; ``execution.started``,
five ``execution.step_succeeded`` and ``execution.succeeded`` in the executor's), 2,000
executions per commit; nothing runs and the stream holds none of them, as after the stream's age
limit has passed. Then ``baton projections rebuild``'s own code (``baton_projector.main.rebuild``)
drops every view and folds every event into them again, reading the stores. Printed beside this
run's PostgreSQL single-row commit time (the floor of a durable step).

    .venv/bin/python -m bench.rebuild [--executions 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from baton_common import contracts as c
from baton_common.embedded import NatsServer, PostgresServer
from baton_common.events import Event
from baton_common.settings import Settings
from baton_common.store import Commit, PostgresEventStore

from bench.run import floor

BATCH = 2_000  # executions per commit
K = 5
PLAN = {
    "steps": [
        {"id": f"s{i}", "tool": "mock.agent", "input": {"task": "noop"}}
        | ({"depends_on": [f"s{i - 1}"]} if i else {})
        for i in range(K)
    ]
}
_MS = timedelta(milliseconds=1)


def log(msg: str) -> None:
    print(msg, flush=True)


def history(at: datetime) -> tuple[list[Event], list[Event]]:
    """One execution's events: the gateway's, then the executor's."""
    eid = uuid.uuid4()
    env: dict[str, Any] = {"aggregate_id": eid, "correlation_id": eid}
    requested = c.ExecutionRequested(**env, aggregate_version=1, plan=PLAN, occurred_at=at)
    executor: list[Event] = [
        c.ExecutionStarted(**env, aggregate_version=1, plan=PLAN, occurred_at=at + _MS)
    ]
    for i in range(K):
        call = c.StepCall(
            tool="mock.agent", input={"task": "noop"}, idempotency_key=f"{eid}:s{i}", timeout_s=30
        )
        executor.append(
            c.StepSucceeded(
                **env,
                aggregate_version=i + 2,
                step_id=f"s{i}",
                attempt=1,
                output={"done": True},
                call=call,
                occurred_at=at + _MS * (i + 2),
            )
        )
    executor.append(
        c.ExecutionSucceeded(**env, aggregate_version=K + 2, occurred_at=at + _MS * (K + 2))
    )
    return [requested], executor


def seed(url: str, schema: str, n: int) -> int:
    """``n`` executions in the gateway's and the executor's stores; how many events."""
    gateway = PostgresEventStore(url, "gateway", schema=schema)
    executor = PostgresEventStore(url, "executor", schema=schema)
    start = datetime.now(UTC) - timedelta(days=1)
    events = 0
    try:
        for first in range(0, n, BATCH):
            ours: list[Event] = []
            theirs: list[Event] = []
            for i in range(first, min(n, first + BATCH)):
                g, e = history(start + _MS * 10 * i)
                ours += g
                theirs += e
            gateway.commit(Commit(events=ours))
            executor.commit(Commit(events=theirs))
            events += len(ours) + len(theirs)
            if first and first % (BATCH * 10) == 0:
                log(f"  seeded {first:,} executions")
    finally:
        gateway.close()
        executor.close()
    return events


async def measure(work: Path, n: int, workers: Sequence[int | None]) -> list[dict[str, Any]]:
    """Seed ``n`` executions once, then rebuild them with each of ``workers`` in turn (a rebuild
    over 1 worker is the one-process fold: before and after in the same minutes)."""
    from baton_projector.main import rebuild

    nats = NatsServer(work / "nats").start()
    pg = PostgresServer(work / "pg").start()
    try:
        schema = f"rebuild_{uuid.uuid4().hex[:6]}"
        t0 = time.perf_counter()
        events = await asyncio.to_thread(seed, pg.url, schema, n)
        seeded = time.perf_counter() - t0
        log(f"  seeded in {seeded:.1f} s")
        settings = Settings(
            NATS_URL=nats.url, DATABASE_URL=pg.url, BATON_DB_SCHEMA=schema, BATON_DATA_DIR=work
        )
        runs = []
        for w in workers:
            load = os.getloadavg()[0]
            cpu, kids, pg_cpu = time.process_time(), children_cpu(), server_cpu(pg.pgdata)
            result = await rebuild(settings, workers=w)
            await asyncio.sleep(1)  # its sessions' processes gone, their time counted
            cpu, kids = time.process_time() - cpu, children_cpu() - kids
            pg_cpu = server_cpu(pg.pgdata) - pg_cpu
            fl = await floor(nats.url, pg.url, 2000)
            runs.append({
                "executions": n, "seeded_events": events, "seed_seconds": seeded, **result,
                "commit_ms": 1000 / fl["pg_commits_per_s"], "cpu_s": cpu, "workers_cpu_s": kids,
                "pg_cpu_s": pg_cpu, "load_before": load, "load": os.getloadavg()[0],
            })  # fmt: skip
            log("\n".join(lines(runs[-1])))
    finally:
        pg.stop()
        nats.stop()
    return runs


def children_cpu() -> float:
    """CPU seconds of this process's ended children: the rebuild's workers, once joined."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def server_cpu(pgdata: Path) -> float:
    """CPU seconds PostgreSQL has spent: its postmaster's, and that of its sessions that have
    ended (the kernel adds an ended child's time to its parent's). The rebuild's sessions end
    with it, so the difference across the rebuild is what PostgreSQL spent on it (less what its
    background writers spent meanwhile). On a machine shared with other work, CPU seconds say
    more than wall-clock time, which counts the waits for a core."""
    pid = (pgdata / "postmaster.pid").read_text().split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def lines(r: dict[str, Any]) -> list[str]:
    rebuilt = r["events"] + r["read_from_stores"]
    python = r["cpu_s"] + r["workers_cpu_s"]
    out = [
        f"Projection rebuild of {r['executions']:,} executions over {r.get('workers', 1)} "
        f"process(es) ({rebuilt:,} events, all read from the stores): {r['seconds']:.1f} s, "
        f"{r['events_per_s']:,.0f} events/s; one PostgreSQL single-row commit in this run: "
        f"{r['commit_ms']:.2f} ms ({r['seconds'] * 1000 / r['commit_ms']:,.0f} commits' time).",
        f"CPU: the rebuild's process {r['cpu_s']:.1f} s, its workers {r['workers_cpu_s']:.1f} s, "
        f"PostgreSQL {r['pg_cpu_s']:.1f} s: {rebuilt / (python + r['pg_cpu_s']):,.0f} events per "
        f"CPU second ({python * 1e6 / rebuilt:.0f} µs of Python per event, "
        f"{r['pg_cpu_s'] * 1e6 / rebuilt:.0f} µs of PostgreSQL); load average "
        f"{r['load_before']:.1f} at the start, {r['load']:.1f} at the end, on {os.cpu_count()} cores.",
    ]
    if "parallel_seconds" in r:
        out.append(
            f"Parallel part: {r['workers_cpu_s'] / python:.0%} of the Python CPU in the workers; "
            f"{r['parallel_seconds']:.1f} s from the start to the workers' end, then "
            f"{r['merge_seconds']:.1f} s merging their shared tables and indexing the shadow "
            f"(no lock on the views), {r['swap_seconds']:.2f} s in the one transaction that swaps "
            f"the views for the shadow's (readers wait for this part alone)."
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument(
        "--workers", default="",
        help="processes per rebuild, comma-separated, each run in turn on the same seeded"
        " stores (1: the one-process fold); default: the rebuild's own (a worker per core, up to 4)",
    )  # fmt: skip
    args = parser.parse_args()
    workers: list[int | None] = [int(w) for w in args.workers.split(",") if w] or [None]
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    os.environ.setdefault("BATON_REBUILD_WORKERS", "auto")  # the parallel fold unless told
    work = Path(tempfile.mkdtemp(prefix="baton-rebuild-"))
    work.chmod(0o755)
    log(f"seeding {args.executions:,} executions ({K + 3} events each) into the stores")
    try:
        asyncio.run(measure(work, args.executions, workers))
    finally:  # the seeded stores: gigabytes at 100,000 executions
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
