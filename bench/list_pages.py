"""The executions list at scale: 100,000 executions, then its first and its last page.

The executions are seeded through their events, fast: typed ``execution.requested``,
``plan.proposed`` and ``execution.succeeded`` (or ``execution.failed``) events, folded into a
running engine's read models by the projector's own code (``ExecutionProjection.apply_batch``),
a batch of 2,000 executions per transaction, as its projector writes them. Nothing runs and
nothing goes through the store or the bus: the figure is the list, not the engine.

Then every page is walked once through ``GET /v1/executions`` (each execution must be on exactly
one page), and the first and the last page are read again over HTTP, interleaved, ``--rounds``
times each; PostgreSQL's own time for the two queries (``EXPLAIN ANALYZE``) is printed beside.
Last, a text filter that only one request matches, which must read every row.

    .venv/bin/python -m bench.list_pages [--executions 100000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from baton_common import contracts as c
from baton_common.embedded import free_port
from baton_common.events import Event
from baton_projector.projections import ExecutionProjection
from psycopg.sql import SQL, Identifier

from bench import baton_bench as bb

BATCH = 2_000  # executions per transaction
PAGE = 50  # the dashboard's page
PLAN = {"name": "nightly-report", "steps": [{"id": "a", "tool": "mock.agent", "input": {}}]}
SERVICES = ("api", "billing", "search", "auth", "mail")


def log(msg: str) -> None:
    print(msg, flush=True)


def history(i: int, at: datetime) -> list[Event]:
    """One execution's events: requested, planned, then succeeded (or, one in ten, failed)."""
    eid = uuid.uuid4()
    words = f"summarise the incident reports of {SERVICES[i % len(SERVICES)]} (#{i})"
    env = {"aggregate_id": eid, "correlation_id": eid}
    ended: Event = (
        c.ExecutionFailed(**env, aggregate_version=3, error="bench", occurred_at=at + _MS * 2)
        if i % 10 == 0
        else c.ExecutionSucceeded(**env, aggregate_version=3, occurred_at=at + _MS * 2)
    )
    return [
        c.ExecutionRequested(**env, aggregate_version=1, request=words, occurred_at=at),
        c.PlanProposed(
            **env,
            aggregate_version=2,
            execution_id=eid,
            plan=PLAN,
            planner="bench",
            request=words,
            occurred_at=at + _MS,
        ),
        ended,
    ]


_MS = timedelta(milliseconds=1)


def seed(db_url: str, schema: str, n: int) -> float:
    """``n`` executions over the last 30 days, oldest first; returns executions per second."""
    projection = ExecutionProjection(schema)
    start = datetime.now(UTC) - timedelta(days=30)
    spacing = timedelta(days=30) / n
    t0 = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        for first in range(0, n, BATCH):
            events = [
                e
                for i in range(first, min(n, first + BATCH))
                for e in history(i, start + spacing * i)
            ]
            with conn.transaction():
                projection.apply_batch(conn, events)
            if first and first % (BATCH * 10) == 0:
                log(f"  seeded {first:,}")
        conn.execute(SQL("ANALYZE {s}.executions").format(s=Identifier(schema)))
    return n / (time.perf_counter() - t0)


async def get(client: Any, url: str, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    async with client.get(url, params=params) as resp:
        if resp.status != 200:
            raise RuntimeError(f"GET {url} {params}: {resp.status} {await resp.text()}")
        body = await resp.json()
    return (time.perf_counter() - t0) * 1000, body


async def walk(client: Any, url: str, n: int) -> tuple[int, str | None]:
    """Every page, newest first: (pages, the cursor of the last full page)."""
    seen: set[str] = set()
    pages, cursor, last = 0, None, None
    while True:
        params = {"limit": PAGE, **({"before": cursor} if cursor else {})}
        _, body = await get(client, url, params)
        if not body["items"]:
            break
        pages += 1
        last = cursor
        seen.update(item["id"] for item in body["items"])
        cursor = body["next_before"]
        if cursor is None:
            break
    if len(seen) != n:
        raise RuntimeError(f"the pages held {len(seen):,} executions, not {n:,}")
    return pages, last


def explain(db_url: str, schema: str, cursor: str | None) -> float:
    """PostgreSQL's execution time (ms) of the list's query for a page (EXPLAIN ANALYZE)."""
    where = "workspace_id = 'default'" + (" AND created_at < %s::timestamptz" if cursor else "")
    query = (
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id, status, request, created_at, view->>'planner'"
        f" FROM {{s}}.executions WHERE {where} ORDER BY created_at DESC LIMIT {PAGE}"
    )
    with psycopg.connect(db_url) as conn:
        row = conn.execute(SQL(query).format(s=Identifier(schema)), (cursor,) if cursor else ())
        plan = row.fetchone()[0][0]  # type: ignore[index]
    return float(plan["Execution Time"])


async def measure(n: int, rounds: int, data: Path) -> dict[str, Any]:
    running = await bb.start(data, free_port())
    try:
        db_url = running.engine.env["DATABASE_URL"]
        schema = running.engine.env.get("BATON_DB_SCHEMA", "public")
        log(f"seeding {n:,} executions (batches of {BATCH:,}, the projector's code)")
        rate = await asyncio.to_thread(seed, db_url, schema, n)
        url = f"{running.url}/v1/executions"
        async with bb.client_for(running) as client:
            pages, last = await walk(client, url, n)
            log(f"walked {pages:,} pages of {PAGE}: every execution once")
            timings: dict[str, list[float]] = {"first": [], "last": []}
            for _ in range(rounds):
                for name, cursor in (("first", None), ("last", last)):
                    params = {"limit": PAGE, **({"before": cursor} if cursor else {})}
                    ms, _ = await get(client, url, params)
                    timings[name].append(ms)
            # words that one request holds: no index helps ILIKE '%…%', every row is read
            rare = {"limit": PAGE, "q": f"(#{n // 2})"}
            timings["rare"] = [
                (await get(client, url, rare))[0] for _ in range(max(3, rounds // 6))
            ]
        sql = {
            name: statistics.median(
                [await asyncio.to_thread(explain, db_url, schema, cur) for _ in range(5)]
            )
            for name, cur in (("first", None), ("last", last))
        }
        from bench.run import floor  # the machine's floor, as `make bench` prints it

        fl = await floor(running.engine.env["NATS_URL"], db_url, 2000, bb.bus_key(running.engine))
    finally:
        await bb.stop(running)
    return {"n": n, "rate": rate, "pages": pages, "timings": timings, "sql": sql, "floor": fl}


def report(r: dict[str, Any]) -> str:
    lines = [
        f"Executions list, {r['n']:,} executions ({r['pages']:,} pages of {PAGE}); seeded at "
        f"{r['rate']:,.0f} executions/s.",
        "",
        "| page | HTTP median | HTTP p95 | PostgreSQL (EXPLAIN ANALYZE, median) |",
        "|---|---|---|---|",
    ]
    for name in ("first", "last"):
        times = sorted(r["timings"][name])
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        lines.append(
            f"| {name} | {statistics.median(times):.1f} ms | {p95:.1f} ms | {r['sql'][name]:.2f} ms |"
        )
    rare = statistics.median(r["timings"]["rare"])
    lines += [
        "",
        f"A text filter that one request matches (`q=(#{r['n'] // 2})`): {rare:.1f} ms median.",
    ]
    fl = r["floor"]
    lines += [
        "",
        f"Floor from Python on this machine: PostgreSQL single-row commits "
        f"{fl['pg_commits_per_s']:,.0f}/s, rows in 100-row commits "
        f"{fl['pg_rows_per_s_in_100_row_commits']:,.0f}/s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    if args.executions < PAGE * 2 or args.rounds < 1:
        parser.error(f"--executions must be at least {PAGE * 2} and --rounds at least 1")
    data = Path(tempfile.mkdtemp(prefix="baton-list-"))
    data.chmod(0o755)  # the private PostgreSQL's user must reach its folder
    log(report(asyncio.run(measure(args.executions, args.rounds, data))))


if __name__ == "__main__":
    main()
