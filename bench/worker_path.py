"""Where a step through a worker spends its time, hop by hop (``make bench`` prints it).

A chain of K no-op worker steps, one execution at a time. Each step's hops are read from the
events themselves and from when the bench sees them on the bus (a core NATS subscription to
the subjects the stream captures):

- **executor commit + relay**: the dispatch decided (its ``occurred_at``) → seen on the bus
  (the rest of the executor's handling, its commit, the relay's publish, JetStream);
- **bus → worker → result made**: seen on the bus → the worker's ``task.finished`` made (its
  ``occurred_at``), less the tool's own time (its ``duration_ms``, printed apart);
- **result → executor's decision**: the result made → the step's outcome decided in the
  executor (``step_succeeded``'s ``occurred_at``; the next dispatch is decided in the same
  handling): the worker's publish, the delivery (direct, or the stream's copy), the decoding;
- **decision → next dispatch**: the step's outcome decided → the next step's dispatch decided
  (``step_dispatched``'s ``occurred_at``): the rest of the decision (admission among it).

And once per execution, what the chain's per-step figure (its p50 / K) carries besides its
steps: **the start** (the submission sent → the first step's dispatch decided: the gateway,
the hand-over, the executor's first decision; that decision alone, from the execution's
``execution.started`` to its first dispatch, both stamped by the executor, is printed too)
and **the end** (the last step's outcome decided → the execution's end seen on the bus: its
commit, the relay, the bus).

Every figure is also stated in commits: the same run's PostgreSQL single-row commit time (the
floor of a durable step), so machines of different speed compare.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import baton_bench as bb
from bench import services_bench as sb

HOPS = (
    ("commit", "executor commit + relay → bus"),
    ("to_worker", "bus → worker → result made (tool excluded)"),
    ("tool", "the tool itself"),
    ("to_executor", "result → executor's decision"),
    ("next", "decision → next step's dispatch decided"),
)


EDGES = (
    ("start", "start: submitted → first dispatch decided"),
    ("first", "of which the executor's first decision: started → first dispatch decided"),
    ("end", "end: last outcome decided → execution's end seen"),
)


class HopClock:
    """Stamps, per execution and step, when each event of a worker step was made and seen."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}
        self.submitted: dict[str, float] = {}  # execution -> when its submission was sent

    async def on_msg(self, msg: Any) -> None:
        now = time.time()
        data = json.loads(msg.data)
        step = data.get("step_id", "" if data["type"] in (_STARTED, _END) else None)
        if step is not None:
            self.seen.setdefault((str(data["aggregate_id"]), step, data["type"]), (now, data))

    def edges(self, execution_id: str, steps: list[str]) -> dict[str, float]:
        """Milliseconds of the execution's start and end (missing events: no figure)."""
        out = {}
        first = self.seen.get((execution_id, steps[0], _TYPES[0]))
        if first is not None and execution_id in self.submitted:
            out["start"] = (_at(first[1]) - self.submitted[execution_id]) * 1000
        started = self.seen.get((execution_id, "", _STARTED))
        if first is not None and started is not None:  # both stamped by the executor's clock
            out["first"] = (_at(first[1]) - _at(started[1])) * 1000
        last = self.seen.get((execution_id, steps[-1], _TYPES[2]))
        end = self.seen.get((execution_id, "", _END))
        if last is not None and end is not None:
            out["end"] = (end[0] - _at(last[1])) * 1000
        return out

    def hops(self, execution_id: str, steps: list[str]) -> dict[str, list[float]]:
        """Milliseconds per hop for each step of one execution (missing events: no figure)."""
        out: dict[str, list[float]] = defaultdict(list)
        for before, step in itertools.pairwise(steps):
            ended = self.seen.get((execution_id, before, _TYPES[2]))
            then = self.seen.get((execution_id, step, _TYPES[0]))
            if ended is not None and then is not None:
                out["next"].append((_at(then[1]) - _at(ended[1])) * 1000)
        for step in steps:
            got = {t: self.seen.get((execution_id, step, t)) for t in _TYPES}
            if None in got.values():
                continue
            (d_seen, d), (_, f), (_, s) = (got[t] for t in _TYPES)  # type: ignore[misc]
            made_d, made_f, made_s = (_at(e) for e in (d, f, s))
            tool = float(f.get("duration_ms") or 0.0)
            out["commit"].append((d_seen - made_d) * 1000)
            out["to_worker"].append((made_f - d_seen) * 1000 - tool)
            out["tool"].append(tool)
            out["to_executor"].append((made_s - made_f) * 1000)
        return out


_TYPES = ("execution.step_dispatched", "task.finished", "execution.step_succeeded")
_END = "execution.succeeded"
_STARTED = "execution.started"


def _at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["occurred_at"]).timestamp()


class FloorProbe:
    """Single-row commits between a measurement's executions: the floor of the same seconds as
    the chains. On a machine other work loads, the floor moves from minute to minute (here 2.6 to
    7 ms within ten), so a floor measured after the chains can be of another moment. Every
    ``EVERY`` executions, once the engine has settled (its views written: they would slow the
    probe's commits and flatter the chain), ``COMMITS`` commits."""

    EVERY, SETTLE_S, COMMITS = 10, 0.15, 20

    def __init__(self, url: str) -> None:
        self.url, self.samples = url, list[float]()
        self.table = f"floor_probe_{uuid.uuid4().hex[:8]}"

    async def __aenter__(self) -> FloorProbe:
        import psycopg

        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await self.conn.execute(f"CREATE TABLE {self.table} (id bigserial primary key, body text)")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.conn.execute(f"DROP TABLE {self.table}")
        await self.conn.close()

    async def sample(self, done: int) -> None:
        """After the ``done``-th execution measured: a few commits, every ``EVERY``."""
        if done % self.EVERY:
            return
        await asyncio.sleep(self.SETTLE_S)
        for _ in range(self.COMMITS):
            t0 = time.perf_counter()
            await self.conn.execute(f"INSERT INTO {self.table} (body) VALUES (%s)", ("x" * 200,))
            self.samples.append((time.perf_counter() - t0) * 1000)

    def take(self) -> float:
        """The mean commit since the last take, in ms (a mean, as ``bench.run.floor``'s)."""
        samples, self.samples = self.samples, []
        return statistics.mean(samples)


async def worker_hops(
    running: bb.Running, k: int, n: int, probe: FloorProbe | None = None
) -> dict[str, Any]:
    """``n`` worker chains of ``k`` steps, one at a time: the chain's figures and the median of
    each hop over every step (with ``probe``: the floor between the executions too)."""
    clock = HopClock()
    subs = [
        await running.nc.subscribe(f"baton.*.{s}", cb=clock.on_msg)
        for s in (*_TYPES, _STARTED, _END)
    ]
    plan = sb.worker_chain_plan(k)
    steps = [s["id"] for s in plan["steps"]]
    per_hop: dict[str, list[float]] = defaultdict(list)
    per_edge: dict[str, list[float]] = defaultdict(list)
    latencies = []
    try:
        async with bb.client_for(running) as client:
            for i in range(n + 3):
                t0, sent = time.perf_counter(), time.time()
                eid, fut = await bb.submit(client, running, plan)
                clock.submitted[eid] = sent
                t1 = await asyncio.wait_for(fut, 60)
                await asyncio.sleep(0.005)  # the bench's own subscription sees the last events
                if i < 3:
                    continue  # warm-up
                latencies.append((t1 - t0) * 1000)
                for hop, values in clock.hops(eid, steps).items():
                    per_hop[hop] += values
                for edge, value in clock.edges(eid, steps).items():
                    per_edge[edge].append(value)
                if probe is not None:
                    await probe.sample(len(latencies))
    finally:
        for sub in subs:
            await sub.unsubscribe()
    p50 = statistics.median(latencies)
    return {
        "k": k, "executions": n, "p50_ms": p50, "p99_ms": bb._pct(latencies, 99),
        "per_step_ms": p50 / k,
        "hops_ms": {h: statistics.median(v) for h, v in per_hop.items() if v},
        "edges_ms": {e: statistics.median(v) for e, v in per_edge.items() if v},
    }  # fmt: skip


async def pure_chain(running: bb.Running, k: int, n: int, probe: FloorProbe) -> dict[str, Any]:
    """``n`` chains of ``k`` pure steps (run inside the executor), one at a time, the floor
    probed between them."""
    latencies = []
    async with bb.client_for(running) as client:
        for i in range(n + 3):
            t0 = time.perf_counter()
            _, fut = await bb.submit(client, running, bb.chain_plan(k))
            t1 = await asyncio.wait_for(fut, 60)
            if i >= 3:
                latencies.append((t1 - t0) * 1000)
                await probe.sample(len(latencies))
    p50 = statistics.median(latencies)
    return {"k": k, "executions": n, "p50_ms": p50, "per_step_ms": p50 / k}


def lines(result: dict[str, Any], commit_ms: float) -> list[str]:
    """The chain and its hops, each in ms and in commits of this run's floor."""

    def both(ms: float) -> str:
        return f"{ms:.2f} ms ({ms / commit_ms:.1f} commits)"

    out = [
        f"Worker chain K={result['k']}: p50 per step {both(result['per_step_ms'])}; "
        f"one PostgreSQL single-row commit in this run: {commit_ms:.2f} ms.",
        "",
        "| hop (median per step) | time |",
        "|---|---|",
    ]
    hops = result["hops_ms"]
    for key, name in HOPS:
        if key in hops:
            out.append(f"| {name} | {both(hops[key])} |")
    out.append(f"| sum of the hops | {both(sum(hops.values()))} |")
    edges = result.get("edges_ms", {})
    for key, name in EDGES:  # once per execution: a K-th of each is in the per-step figure
        if key in edges:
            out.append(f"| {name} (once; per step /{result['k']}) | {both(edges[key])} |")
    return out


def pure_line(result: dict[str, Any], commit_ms: float) -> str:
    """The chain of pure steps (run inside the executor) of the same round, in commits too."""
    per = result["per_step_ms"]
    return (
        f"Pure chain K={result['k']}: p50 {result['p50_ms']:.2f} ms, per step {per:.2f} ms "
        f"({per / commit_ms:.1f} commits); one PostgreSQL single-row commit between its "
        f"executions: {commit_ms:.2f} ms."
    )


async def _measure(data: Path, n: int, rounds: int) -> list[dict[str, Any]]:
    """``rounds`` of (worker chain, pure chain) on one engine, each stated in the commits of
    its own seconds (``FloorProbe``), and the floor after them as ``make bench`` measures it."""
    from baton_common.embedded import free_port

    from bench.run import floor

    os.environ["BATON_DB_SCHEMA"] = f"hops_{uuid.uuid4().hex[:6]}"
    running = await bb.start(data, free_port())
    out = []
    try:
        env = running.engine.env
        async with FloorProbe(env["DATABASE_URL"]) as probe:
            for _ in range(rounds):
                result = await worker_hops(running, 5, n, probe)
                result["commit_ms"] = probe.take()
                result["pure"] = await pure_chain(running, 5, n, probe)
                result["pure"]["commit_ms"] = probe.take()
                fl = await floor(
                    env["NATS_URL"], env["DATABASE_URL"], 2000, bb.bus_key(running.engine)
                )
                result["floor_after_ms"] = 1000 / fl["pg_commits_per_s"]
                result["load"] = os.getloadavg()[0]
                out.append(result)
    finally:
        await bb.stop(running)
    return out


def main() -> None:
    """``python -m bench.worker_path [N] [ROUNDS]``: the hop table and the pure chain, on a
    private engine."""
    import sys
    import tempfile

    from baton_common.embedded import PostgresServer

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    work = Path(tempfile.mkdtemp(prefix="baton-hops-pg-"))
    work.chmod(0o755)
    (work / "engine").mkdir(mode=0o755)
    pg = PostgresServer(work / "pg").start()
    os.environ["DATABASE_URL"] = pg.url
    try:
        for result in asyncio.run(_measure(work / "engine", n, rounds)):
            print("\n".join(lines(result, result["commit_ms"])), flush=True)
            print(pure_line(result["pure"], result["pure"]["commit_ms"]), flush=True)
            print(
                f"(the floor after both, as make bench measures it: {result['floor_after_ms']:.2f}"
                f" ms; load average {result['load']:.1f})\n",
                flush=True,
            )
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
