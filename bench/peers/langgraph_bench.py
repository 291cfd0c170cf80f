"""LangGraph peer benchmark: a StateGraph of K no-op nodes checkpointed to PostgreSQL.

    .bench/peers-venv/bin/python bench/peers/langgraph_bench.py \
        --workload chain --k 5 --n 20 [--variant sync|async] [--threads 16] \
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Durable here means: the graph is compiled with PostgresSaver (AsyncPostgresSaver for
`async`) and invoked with durability="sync", so each super-step's checkpoint (and
each node's writes) is committed to PostgreSQL before the next super-step starts.
Every execution is a new thread_id. The tables live in a fresh `bench_langgraph_<random>`
database created on --database-url's server for this run and dropped at the end.

A chain of K nodes is K super-steps (plus the input checkpoint); the fan-out is one
super-step with K parallel nodes (LangGraph runs them on its thread pool / as tasks)
then the join node. Saturation: `sync` = N graph.invoke calls on a ThreadPoolExecutor
(--threads workers), `async` = N graph.ainvoke calls under one asyncio.gather. In both,
one saver on a psycopg pool is shared: the saver serialises its own queries with a
lock, as the library ships it (one saver per thread measured only ~10% faster here:
the GIL, not that lock, is the limit). Rows written per chain execution: K+2
checkpoints (input, start, one per node); the JSON's persisted_checkpoints reads
them back (warm-up runs included).
"""

from __future__ import annotations

import asyncio
import operator
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, TypedDict

from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common

# What PostgresSaver.from_conn_string sets on its own connection; required by the saver.
CONN_KW = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}


class State(TypedDict):
    x: int
    parts: Annotated[list[int], operator.add]  # fan-out branches append here


def build(workload: str, k: int, is_async: bool) -> StateGraph:
    # No-op steps: each returns a small dict derived from its input.
    def branch(i: int):
        return lambda s: {"parts": [i]}

    def inc(s: State) -> dict:
        return {"x": s["x"] + 1}

    def join(s: State) -> dict:
        return {"x": sum(s["parts"])}

    wrap = _as_async if is_async else (lambda fn: fn)
    g = StateGraph(State)
    names = [f"s{i}" for i in range(k)]
    for i, name in enumerate(names):
        g.add_node(name, wrap(branch(i) if workload == "fanout" else inc))
    if workload == "fanout":
        g.add_node("join", wrap(join))
        for name in names:
            g.add_edge(START, name)  # all K branches run in the same super-step
        g.add_edge(names, "join")  # join waits for all K branches
        g.add_edge("join", END)
    else:
        for a, b in zip([START, *names], [*names, END], strict=True):
            g.add_edge(a, b)
    return g


def _as_async(fn):
    """Async nodes for ainvoke, so no node is pushed to a thread."""

    async def afn(s: State) -> dict:
        return fn(s)

    return afn


def _cfg() -> dict:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def run_sync(args, url: str, latencies: list[float]) -> tuple[_common.Timer, int]:
    with ConnectionPool(url, min_size=4, max_size=args.threads, kwargs=CONN_KW) as pool:
        saver = PostgresSaver(pool)
        saver.setup()  # creates the checkpoint tables (not timed)
        graph = build(args.workload, args.k, False).compile(checkpointer=saver)

        def one() -> dict:
            return graph.invoke({"x": 0, "parts": []}, _cfg(), durability="sync")

        for _ in range(args.warmup):
            one()
        with _common.Timer(postgres_url=url) as timer:
            if args.workload == "saturation":
                with ThreadPoolExecutor(max_workers=args.threads) as ex:
                    results = list(ex.map(lambda _: one(), range(args.n)))
                assert all(r["x"] == args.k for r in results), results[:3]
            else:
                for _ in range(args.n):
                    t0 = time.perf_counter()
                    one()
                    latencies.append((time.perf_counter() - t0) * 1000)
    return timer, args.threads


async def run_async(args, url: str, latencies: list[float]) -> tuple[_common.Timer, int]:
    pool = AsyncConnectionPool(url, min_size=4, max_size=args.threads, kwargs=CONN_KW, open=False)
    async with pool:
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        graph = build(args.workload, args.k, True).compile(checkpointer=saver)

        async def one() -> dict:
            return await graph.ainvoke({"x": 0, "parts": []}, _cfg(), durability="sync")

        for _ in range(args.warmup):
            await one()
        with _common.Timer(postgres_url=url) as timer:
            if args.workload == "saturation":
                results = await asyncio.gather(*(one() for _ in range(args.n)))
                assert all(r["x"] == args.k for r in results), results[:3]
            else:
                for _ in range(args.n):
                    t0 = time.perf_counter()
                    await one()
                    latencies.append((time.perf_counter() - t0) * 1000)
    return timer, args.threads


def main() -> None:
    def extra(p) -> None:
        p.add_argument("--threads", type=int, default=16, help="pool size / saturation threads")

    args = _common.parse_args("langgraph", ("sync", "async"), extra)
    _common.reserve_stdout()
    latencies: list[float] = []
    with _common.fresh_database(args.database_url, "langgraph") as url:
        if args.variant == "sync":
            timer, threads = run_sync(args, url, latencies)
        else:
            timer, threads = asyncio.run(run_async(args, url, latencies))
        persisted = int(_common.query_one(url, "SELECT count(*) FROM checkpoints"))
        sync_commit = _common.query_one(url, "SHOW synchronous_commit")
    variant = args.variant
    if args.workload == "saturation":
        variant += f"-threadpool{threads}" if args.variant == "sync" else "-gather"
    _common.emit(
        "langgraph",
        variant,
        args,
        timer,
        latencies,
        persisted_checkpoints=persisted,
        durability=f'PostgresSaver, durability="sync", synchronous_commit={sync_commit}',
    )


if __name__ == "__main__":
    main()
