"""Baton's workloads, driven as a user drives it: the engine as processes, requests over HTTP.

Completion is observed on the bus (a core NATS subscription to terminal execution events), so
the figures measure the engine, not a polling interval.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nats
from baton_cli.up import Engine

TERMINAL = ("succeeded", "failed", "cancelled")


def chain_plan(k: int) -> dict[str, Any]:
    steps = [{"id": "s0", "tool": "mock.agent", "input": {"task": "noop"}}]
    steps += [
        {
            "id": f"s{i}",
            "tool": "mock.agent",
            "depends_on": [f"s{i - 1}"],
            "input": {"task": "noop"},
        }
        for i in range(1, k)
    ]
    return {"steps": steps, "max_parallel": 64}


def fanout_plan(k: int) -> dict[str, Any]:
    steps = [{"id": f"f{i}", "tool": "mock.agent", "input": {"task": "noop"}} for i in range(k)]
    steps.append(
        {
            "id": "join",
            "tool": "mock.agent",
            "depends_on": [f"f{i}" for i in range(k)],
            "input": {"task": "join"},
        }
    )
    return {"steps": steps, "max_parallel": 64}


def cpu_seconds_of_tree(root: int) -> float:
    """CPU time (user + system) of every live descendant of ``root``, excluding ``root``."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
    total = 0.0
    for pid in cpu:
        p = parents.get(pid)
        while p and p != root:
            p = parents.get(p)
        if p == root:
            total += cpu[pid]
    return total


@dataclass
class Running:
    """An engine started for the benchmark, with the means to observe it."""

    engine: Engine
    nc: Any
    done: dict[str, tuple[float, str]]
    waiters: dict[str, asyncio.Future[float]]

    @property
    def url(self) -> str:
        return self.engine.url

    @property
    def auth(self) -> dict[str, str]:
        """The default workspace's owner key, which `baton up` made."""
        return {"Authorization": f"Bearer {self.engine.owner_key_path.read_text().strip()}"}

    def commits(self) -> float:
        """Store commits so far, summed over every service (consumers, timers, intake)."""
        total = 0.0
        sources = [f"http://127.0.0.1:{p}/metrics" for p in self.engine.health_ports.values()]
        sources.append(f"{self.url}/metrics")
        for src in sources:
            with urllib.request.urlopen(src, timeout=5) as resp:
                text = resp.read().decode()
            for line in text.splitlines():
                if re.match(
                    r"baton_(consumer_commits_total|timer_commits_total|intake_commits_total)", line
                ):
                    total += float(line.rsplit(" ", 1)[1])
        return total


def bus_key(engine: Engine) -> dict[str, str]:
    """The operator's NKey of an engine that runs its own nats-server (every client authenticates)."""
    return {"nkeys_seed": str(engine.nats_keys.seed_path("admin"))} if engine.nats_keys else {}


async def start(data_dir: Path, port: int) -> Running:
    engine = Engine(data_dir, port, log=lambda _m: None)
    await asyncio.to_thread(engine.start)
    await asyncio.to_thread(engine.wait_ready, 120)
    for port in engine.health_ports.values():  # every service, not just the gateway
        await _until_ok(f"http://127.0.0.1:{port}/readyz")
    nc = await nats.connect(engine.env["NATS_URL"], **bus_key(engine))
    running = Running(engine, nc, {}, {})

    async def on_end(msg: Any) -> None:
        data = json.loads(msg.data)
        eid = data["aggregate_id"]
        running.done[eid] = (time.perf_counter(), data["type"])
        fut = running.waiters.pop(eid, None)
        if fut and not fut.done():
            fut.set_result(time.perf_counter())

    for status in TERMINAL:
        await nc.subscribe(f"baton.*.execution.{status}", cb=on_end)
    await nc.subscribe("baton.*.plan.failed", cb=on_end)
    return running


async def _until_ok(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)


async def stop(running: Running) -> None:
    await running.nc.close()
    await asyncio.to_thread(running.engine.stop)


def client_for(running: Running, timeout: float = 60) -> aiohttp.ClientSession:
    """The client the timed paths submit with: aiohttp. httpx costs about 0.5 ms more per
    request on this machine (a GET /healthz round trip: 0.74-0.97 ms with httpx, 0.31-0.44 ms
    with aiohttp, 0.23-0.33 ms for a bare HTTP/1.1 exchange over a socket), and that is the
    client's time, not the engine's."""
    return aiohttp.ClientSession(headers=running.auth, timeout=aiohttp.ClientTimeout(total=timeout))


async def post_json(client: aiohttp.ClientSession, url: str, body: Any) -> Any:
    """POST a JSON body; the JSON answer, or an error with the gateway's reason."""
    async with client.post(url, json=body) as resp:
        if resp.status >= 400:
            raise RuntimeError(f"POST {url}: {resp.status} {await resp.text()}")
        return await resp.json()


async def submit_batch(
    client: aiohttp.ClientSession, running: Running, plan: dict[str, Any], n: int
) -> list[asyncio.Future[float]]:
    """Submit ``n`` executions of ``plan`` in one call; a future per execution for its end."""
    answer = await post_json(
        client, f"{running.url}/v1/executions/batch", {"items": [{"plan": plan}] * n}
    )
    return [_end_of(running, item["id"]) for item in answer["items"]]


async def submit(
    client: aiohttp.ClientSession, running: Running, plan: dict[str, Any]
) -> tuple[str, asyncio.Future[float]]:
    eid = (await post_json(client, f"{running.url}/v1/executions", {"plan": plan}))["id"]
    return eid, _end_of(running, eid)


def _end_of(running: Running, execution_id: str) -> asyncio.Future[float]:
    """A future that resolves when the execution's terminal event is seen on the bus."""
    fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
    if execution_id in running.done:
        fut.set_result(running.done[execution_id][0])
    else:
        running.waiters[execution_id] = fut
    return fut


async def one_at_a_time(
    running: Running, plan: dict[str, Any], n: int, warmup: int = 3
) -> dict[str, Any]:
    """Sequential executions: end-to-end latency of each (submit → terminal event on the bus)."""
    latencies = []
    async with client_for(running) as client:
        for i in range(n + warmup):
            t0 = time.perf_counter()
            _, fut = await submit(client, running, plan)
            t1 = await asyncio.wait_for(fut, 60)
            if i >= warmup:
                latencies.append((t1 - t0) * 1000)
    steps = len(plan["steps"])
    return {
        "executions": n, "steps": n * steps, "latencies_ms": latencies,
        "p50_ms": statistics.median(latencies), "p99_ms": _pct(latencies, 99),
        "per_step_ms": statistics.median(latencies) / steps,
    }  # fmt: skip


async def saturate(
    running: Running, plan: dict[str, Any], n: int, batch: int = 500
) -> dict[str, Any]:
    """Submit ``n`` executions at once (the batch API); time until every one has ended."""
    root = os.getpid()
    await settle(running)
    cpu0, commits0 = cpu_seconds_of_tree(root), running.commits()
    futures: list[asyncio.Future[float]] = []
    t0 = time.perf_counter()
    async with client_for(running, 120) as client:
        for start in range(0, n, batch):
            futures += await submit_batch(client, running, plan, min(batch, n - start))
        submitted = time.perf_counter() - t0
        await asyncio.wait_for(asyncio.gather(*futures), timeout=max(120, n * 0.2))
    elapsed = time.perf_counter() - t0
    await settle(running)  # the CPU of everything it caused, the views' included
    steps = n * len(plan["steps"])
    cpu = cpu_seconds_of_tree(root) - cpu0
    commits = running.commits() - commits0
    return {
        "executions": n, "steps": steps, "seconds": elapsed, "submit_seconds": submitted,
        "steps_per_s": steps / elapsed, "executions_per_s": n / elapsed,
        "cpu_s": cpu, "cpu_ms_per_step": cpu * 1000 / steps, "commits": commits,
        "commits_per_step": commits / steps,
    }  # fmt: skip


async def settle(running: Running, timeout: float = 60) -> None:
    """Until every durable consumer of the engine's streams has caught up (nothing pending,
    nothing unacked): the work a measurement caused is done, and none of it is left for the
    next measurement's CPU counters (the projector digests a big batch for a while after the
    executions ended)."""
    jsm = running.nc.jsm()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        behind = 0
        for stream in await jsm.streams_info():
            for info in await jsm.consumers_info(stream.config.name):
                if info.config.durable_name:
                    behind += (info.num_pending or 0) + (info.num_ack_pending or 0)
        if not behind:
            return
        await asyncio.sleep(0.05)


def _pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def scaling_level(
    running: Running, plan: dict[str, Any], n: int, min_steps: int = 5000
) -> dict[str, Any]:
    """``n`` concurrent executions, round after round until at least ``min_steps`` steps ran, so
    the CPU counters (10 ms ticks) weigh the same at every level. CPU and commits are read once
    around all the rounds: reading them per round (ten /metrics scrapes and a settling pause
    each) cost the engine more than the rounds of ten executions themselves."""
    rounds = max(1, -(-min_steps // (n * len(plan["steps"]))))
    root = os.getpid()
    await settle(running)  # none of the last measurement's work is counted here
    cpu0, commits0 = cpu_seconds_of_tree(root), running.commits()
    t0 = time.perf_counter()
    async with client_for(running, 120) as client:
        for _ in range(rounds):
            futures = []
            for start in range(0, n, 500):  # the batch API takes up to 500 at a time
                futures += await submit_batch(client, running, plan, min(500, n - start))
            await asyncio.wait_for(asyncio.gather(*futures), timeout=max(120, n * 0.2))
    seconds = time.perf_counter() - t0
    await settle(running)  # the CPU of everything the rounds caused, the views' included
    steps = rounds * n * len(plan["steps"])
    cpu = cpu_seconds_of_tree(root) - cpu0
    commits = running.commits() - commits0
    return {
        "executions": n, "rounds": rounds, "steps": steps, "seconds": seconds,
        "steps_per_s": steps / seconds, "cpu_s": cpu, "cpu_ms_per_step": cpu * 1000 / steps,
        "commits_per_step": commits / steps,
    }  # fmt: skip


# --- fairness: one workspace's backlog against another's few steps ------------------------------


def fan_plan(k: int, latency_ms: float = 0) -> dict[str, Any]:
    """``k`` independent steps of ``latency_ms`` each, all ready at once."""
    work = {"task": "work", "latency_ms": latency_ms}
    steps = [{"id": f"f{i}", "tool": "mock.agent", "input": work} for i in range(k)]
    return {"steps": steps, "max_parallel": k}


async def publish_requests(
    running: Running, workspace: str, plan: dict[str, Any], n: int
) -> list[str]:
    """``n`` executions of ``plan`` in ``workspace``, as the gateway records them: requests on
    the bus (the bench needs no API key per workspace this way; the executor sees the same)."""
    from uuid import uuid4

    from baton_common.contracts import ExecutionRequested

    js = running.nc.jetstream()
    ids, acks = [], []
    for _ in range(n):
        eid = uuid4()
        event = ExecutionRequested(aggregate_id=eid, aggregate_version=1, correlation_id=eid,
                                   workspace_id=workspace, plan=plan, source="bench")  # fmt: skip
        acks.append(await js.publish_async(event.subject(), event.to_json(),
                                           headers={"Nats-Msg-Id": str(event.event_id)}))  # fmt: skip
        ids.append(str(eid))
    await asyncio.gather(*acks)
    return ids


async def small_latencies(running: Running, n: int, every_s: float) -> list[float]:
    """A single-step execution in workspace ``small`` every ``every_s`` seconds, whether or not
    the last one ended (so each meets the queue as it is then): submit → terminal event."""

    async def one() -> float:
        t0 = time.perf_counter()
        plan = {"steps": [{"id": "s", "tool": "mock.agent"}]}
        (eid,) = await publish_requests(running, "small", plan, 1)
        return (await asyncio.wait_for(_end_of(running, eid), 300) - t0) * 1000

    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(every_s)
    return list(await asyncio.gather(*tasks))


async def fairness(
    running: Running, big_executions: int, big_k: int, small_n: int
) -> dict[str, Any]:
    """The small workspace's p50 alone, then while the big one's ``big_executions * big_k``
    steps drain (the small executions arrive over the first ``small_n * 0.3`` s of it)."""
    alone = await small_latencies(running, small_n, 0.3)
    t0 = time.perf_counter()
    # Steps that take 200 ms keep the workers busy, so the big backlog really queues.
    ids = await publish_requests(running, "big", fan_plan(big_k, 200), big_executions)
    loaded = await small_latencies(running, small_n, 0.3)
    big_left = sum(1 for i in ids if i not in running.done)
    await asyncio.wait_for(asyncio.gather(*(_end_of(running, i) for i in ids)), 900)
    return {
        "big_steps": big_executions * big_k, "big_k": big_k, "small_n": small_n,
        "alone_p50_ms": statistics.median(alone), "loaded_p50_ms": statistics.median(loaded),
        "big_executions_unfinished_when_small_done": big_left,
        "big_seconds": time.perf_counter() - t0,
    }  # fmt: skip
