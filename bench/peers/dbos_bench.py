"""DBOS peer benchmark: @DBOS.workflow of K no-op @DBOS.step functions on PostgreSQL.

    .bench/peers-venv/bin/python bench/peers/dbos_bench.py \
        --workload chain --k 5 --n 20 [--variant sync|async] \
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Durable here means: DBOS records the workflow (inputs, status) and every step's
output in its system database before the workflow moves on, each in a committed
PostgreSQL transaction (the server's synchronous_commit applies; it is on here).
The system database is a fresh `bench_dbos_<random>` created on --database-url's
server for this run and dropped at the end.

Variants: `sync` (default) = plain functions; a started workflow runs on DBOS's own
thread pool, so saturation is N DBOS.start_workflow calls then handle.get_result().
`async` = async workflow/steps on this process's event loop; saturation is N
DBOS.start_workflow_async calls then awaiting the handles. DBOS has no in-workflow way
to run *sync* steps in parallel, so the fan-out always runs the async workflow: K steps
started as asyncio tasks in a fixed order, then gathered (DBOS's documented pattern);
the JSON's "variant" says "async" for it whatever was asked. On this machine sync beat
async at saturation (348 vs 216 steps/s at N=1000), hence the default.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from dbos import DBOS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common


@DBOS.step()
def noop(x: int) -> int:
    return x


@DBOS.step()
async def anoop(x: int) -> int:
    return x


@DBOS.workflow()
def chain_wf(k: int) -> int:
    x = 0
    for _ in range(k):  # each step's output is checkpointed before the next starts
        x = noop(x + 1)
    return x


@DBOS.workflow()
async def achain_wf(k: int) -> int:
    x = 0
    for _ in range(k):
        x = await anoop(x + 1)
    return x


@DBOS.workflow()
async def afanout_wf(k: int) -> int:
    # Created in a fixed order, so step ids are deterministic on recovery.
    tasks = [asyncio.create_task(anoop(i)) for i in range(k)]
    parts = await asyncio.gather(*tasks)
    return await anoop(sum(parts))  # the join step


def run_sync(args, latencies: list[float]) -> None:
    if args.workload == "saturation":
        handles = [DBOS.start_workflow(chain_wf, args.k) for _ in range(args.n)]
        assert all(h.get_result() == args.k for h in handles)
        return
    for _ in range(args.n):
        t0 = time.perf_counter()
        chain_wf(args.k)
        latencies.append((time.perf_counter() - t0) * 1000)


async def run_async(args, latencies: list[float]) -> None:
    if args.workload == "saturation":
        handles = await asyncio.gather(
            *(DBOS.start_workflow_async(achain_wf, args.k) for _ in range(args.n))
        )
        results = await asyncio.gather(*(h.get_result() for h in handles))
        assert all(r == args.k for r in results), results[:3]
        return
    wf = afanout_wf if args.workload == "fanout" else achain_wf
    for _ in range(args.n):
        t0 = time.perf_counter()
        await wf(args.k)
        latencies.append((time.perf_counter() - t0) * 1000)


async def warmup(args) -> None:
    for _ in range(args.warmup):
        if args.variant == "sync":
            chain_wf(args.k)
        else:
            await (afanout_wf if args.workload == "fanout" else achain_wf)(args.k)


def main() -> None:
    args = _common.parse_args("dbos", ("sync", "async"))
    if args.workload == "fanout":
        args.variant = "async"  # the only way DBOS runs steps in parallel inside a workflow
    _common.reserve_stdout()  # DBOS logs to the console; keep stdout for the result
    latencies: list[float] = []
    with _common.fresh_database(args.database_url, "dbos") as url:
        DBOS(config={"name": "bench", "system_database_url": url, "log_level": "WARNING"})
        DBOS.launch()  # creates the system tables (not timed)
        try:
            if args.variant == "sync":
                asyncio.run(warmup(args))
                with _common.Timer(postgres_url=url) as timer:
                    run_sync(args, latencies)
            else:

                async def timed() -> _common.Timer:
                    await warmup(args)
                    with _common.Timer(postgres_url=url) as t:
                        await run_async(args, latencies)
                    return t

                timer = asyncio.run(timed())
            # Evidence of durability: one row per step, as read back from PostgreSQL.
            persisted = int(_common.query_one(url, "SELECT count(*) FROM dbos.operation_outputs"))
            sync_commit = _common.query_one(url, "SHOW synchronous_commit")
        finally:
            DBOS.destroy()
    _common.emit(
        "dbos",
        args.variant,
        args,
        timer,
        latencies,
        persisted_step_rows=persisted,
        durability=f"PostgreSQL system db (fresh database), synchronous_commit={sync_commit}",
    )


if __name__ == "__main__":
    main()
