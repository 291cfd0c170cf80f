"""Benchmarks of the paths around the engine: a step through a worker, an approval gate's round
trip, and how late a schedule's ticks fire. Each runs on the engine ``baton_bench.start`` started,
observed on the bus like the other workloads."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from datetime import datetime
from typing import Any

import httpx

from bench import baton_bench as bb


def worker_chain_plan(k: int) -> dict[str, Any]:
    """K steps in a row of a tool with no inline path (a zero-second sleep): every step goes
    through the bus to a worker and back, the path a step with side effects takes."""
    steps: list[dict[str, Any]] = [{"id": "s0", "tool": "time.sleep", "input": {"seconds": 0}}]
    steps += [
        {"id": f"s{i}", "tool": "time.sleep", "input": {"seconds": 0}, "depends_on": [f"s{i - 1}"]}
        for i in range(1, k)
    ]
    return {"steps": steps, "max_parallel": 64}


def gate_plan() -> dict[str, Any]:
    """One critical step (its gate always asks a person), then a step that uses its output."""
    return {
        "steps": [
            {"id": "pay", "tool": "mock.critical", "input": {"action": "pay", "amount": 1}},
            {
                "id": "note",
                "tool": "text.template",
                "input": {"template": "{d}", "values": {"d": "${steps.pay.output.done}"}},
                "depends_on": ["pay"],
            },
        ]
    }


async def approvals(running: bb.Running, n: int) -> dict[str, Any]:
    """Gate round trips, one at a time: submit → the gate is open (``approval.opened`` on the
    bus) → approve over HTTP → the execution ends. A person's thinking time is not in it."""
    opened: dict[str, asyncio.Future[str]] = {}

    async def on_open(msg: Any) -> None:
        data = json.loads(msg.data)
        fut = opened.pop(str(data.get("execution_id")), None)
        if fut is not None and not fut.done():
            fut.set_result(str(data["aggregate_id"]))

    sub = await running.nc.subscribe("baton.*.approval.opened", cb=on_open)
    to_gate, to_end = [], []
    try:
        async with bb.client_for(running) as client:
            for _ in range(n):
                t0 = time.perf_counter()
                eid_future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                eid, ended = await bb.submit(client, running, gate_plan())
                opened[eid] = eid_future
                approval = await asyncio.wait_for(eid_future, 60)
                t1 = time.perf_counter()
                await bb.post_json(
                    client,
                    f"{running.url}/v1/approvals/{approval}/decision",
                    {"decision": "approve", "comment": "bench"},
                )
                t2 = await asyncio.wait_for(ended, 60)
                to_gate.append((t1 - t0) * 1000)
                to_end.append((t2 - t1) * 1000)
    finally:
        await sub.unsubscribe()
    return {
        "n": n,
        "to_gate_p50_ms": statistics.median(to_gate),
        "decision_to_end_p50_ms": statistics.median(to_end),
        "decision_to_end_p99_ms": bb._pct(to_end, 99),
    }


async def schedule_lateness(running: bb.Running, seconds: float) -> dict[str, Any]:
    """An every-second schedule for ``seconds``: how late each tick fired (``fired_at`` minus
    ``scheduled_for``, from its events) and how late its execution ended."""
    fired: list[dict[str, Any]] = []

    async def on_fire(msg: Any) -> None:
        fired.append(json.loads(msg.data))

    sub = await running.nc.subscribe("baton.*.schedule.fired", cb=on_fire)
    async with httpx.AsyncClient(timeout=60, headers=running.auth) as client:
        body = {
            "name": f"bench-{uuid.uuid4().hex[:6]}",
            "every_seconds": 1,
            "plan": {"steps": [{"id": "t", "tool": "mock.agent", "input": {"task": "tick"}}]},
        }
        resp = await client.post(f"{running.url}/v1/schedules", json=body)
        resp.raise_for_status()
        sid = resp.json()["id"]
        await asyncio.sleep(seconds)
        await client.post(f"{running.url}/v1/schedules/{sid}/pause", json={"note": "bench over"})
        await asyncio.sleep(1.0)
    await sub.unsubscribe()
    late = [
        (_at(f["fired_at"]) - _at(f["scheduled_for"])).total_seconds() * 1000
        for f in fired
        if f.get("reason", "tick") == "tick"
    ]
    return {
        "ticks": len(late),
        "fire_late_p50_ms": statistics.median(late) if late else None,
        "fire_late_max_ms": max(late) if late else None,
        "executions_ended": sum(1 for f in fired if str(f["execution_id"]) in running.done),
    }


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
