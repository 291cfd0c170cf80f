"""`make bench-waiting`: what waiting executions cost, and how a burst and a flood are served.

Starts the engine (nats-server, PostgreSQL and every service as processes, as ``make bench``
does) and measures the memory (PSS of every process) and idle CPU of all of them, before and
after parking executions: N on approval gates and N on durable one-hour sleeps (``time.sleep``
3600 s: a timer row, see docs/tools.md). Then it decides every gate over the API and moves the
sleeps' timers forward (their rows in the executor's timer table are made due now: the bench's
own clock jump, nothing an operator does), and checks that every execution succeeds, printing
the time to drain. Then 1,000 submissions at once (submit → first step started, p50/p99), and a
small workspace's latency while a large one floods (``baton_bench.fairness``).

Targets (issue 32): total memory grows by ≤ 100 MB and idle CPU by ≤ 10 % with 10,000 + 10,000
waiting. Figures go to docs/benchmarks.md between their own markers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from baton_common.approvals import approval_id_for
from baton_common.embedded import free_port
from psycopg.sql import SQL, Identifier

from bench import baton_bench as bb
from bench.idle import cpu_s, memory_kb, tree
from bench.run import fmt

BEGIN, END = "<!-- bench-waiting:begin -->", "<!-- bench-waiting:end -->"
SIZES = {  # executions parked on gates (and as many on sleeps); burst; fairness (baton_bench)
    "quick": {"waiting": 200, "burst": 200, "fair": (10, 50, 6), "window": 10.0, "warm_up": 50},
    "full": {
        "waiting": 10_000,
        "burst": 1_000,
        "fair": (50, 100, 15),
        "window": 30.0,
        "warm_up": 50,
    },
}
GATE = {"steps": [{"id": "pay", "tool": "mock.critical", "input": {"action": "pay", "amount": 1}}]}
SLEEP = {"steps": [{"id": "nap", "tool": "time.sleep", "input": {"seconds": 3600}}]}
ONE_STEP = {"steps": [{"id": "s", "tool": "mock.agent", "input": {"task": "burst"}}]}


def log(msg: str) -> None:
    print(msg, flush=True)


# --- the engine's footprint -------------------------------------------------------------------------


def footprint(window_s: float) -> dict[str, tuple[float, float]]:
    """{process: (PSS MB, CPU ms per second over ``window_s``)} of every process this bench
    started: the services, nats-server and PostgreSQL (not this process)."""
    me = os.getpid()
    before = {p: cpu_s(p) for p in tree(me) if p != me}
    t0 = time.monotonic()
    time.sleep(window_s)
    took = time.monotonic() - t0
    rows: dict[str, tuple[float, float]] = {}
    for pid, name in tree(me).items():
        if pid == me:
            continue
        label = "postgres" if name.startswith("postgres") else name
        pss, cpu = rows.get(label, (0.0, 0.0))
        used = cpu_s(pid) - before.get(pid, cpu_s(pid))
        rows[label] = (pss + memory_kb(pid)[1] / 1024, cpu + used * 1000 / took)
    return rows


def total(rows: dict[str, tuple[float, float]]) -> tuple[float, float]:
    return sum(r[0] for r in rows.values()), sum(r[1] for r in rows.values())


async def quiet(
    running: bb.Running, window_s: float, settle_s: float
) -> dict[str, tuple[float, float]]:
    """The footprint once every consumer caught up and the engine had a few seconds to settle."""
    await bb.settle(running, timeout=600)
    await asyncio.sleep(settle_s)
    return await asyncio.to_thread(footprint, window_s)


def dump_heaps(running: bb.Running) -> None:
    """``--dump-heaps``: each service writes what it holds (``baton_common.heap``: SIGUSR2)."""
    folder = os.environ.get("BATON_HEAP_DUMP")
    if not folder:
        return
    lines = []  # PostgreSQL's processes, one a line: what each holds, and what it is
    for pid, name in sorted(tree(os.getpid()).items()):
        if name.startswith("postgres"):
            with contextlib.suppress(OSError):
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                lines.append(f"{memory_kb(pid)[1]:>8} kB PSS  {title[:100]}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # which process holds which connection
        sockets = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
        (Path(folder) / f"sockets-{time.time():.0f}.txt").write_text(sockets)
    (Path(folder) / f"postgres-{time.time():.0f}.txt").write_text("\n".join(lines) + "\n")
    for child in running.engine.children.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.proc.pid, signal.SIGUSR2)


# --- parking ----------------------------------------------------------------------------------------


class Seen:
    """Counts, on the bus, the executions that reached a point (a gate opened, a sleep began)."""

    def __init__(self) -> None:
        self.gated: set[str] = set()
        self.sleeping: set[str] = set()
        self.first_step: dict[str, float] = {}

    async def watch(self, nc: Any) -> None:
        async def on_open(msg: Any) -> None:
            self.gated.add(str(json.loads(msg.data).get("execution_id")))

        async def on_step(msg: Any) -> None:
            data = json.loads(msg.data)
            eid = str(data["aggregate_id"])
            self.first_step.setdefault(eid, time.perf_counter())
            call = data.get("call") or data
            if call.get("tool") == "time.sleep":
                self.sleeping.add(eid)

        await nc.subscribe("baton.*.approval.opened", cb=on_open)
        for subject in ("step_dispatched", "step_dispatched.inline", "step_succeeded"):
            await nc.subscribe(f"baton.*.execution.{subject}", cb=on_step)


async def submit_many(running: bb.Running, plan: dict[str, Any], n: int) -> list[str]:
    """``n`` executions of ``plan`` through the batch API (500 a call); their ids."""
    ids: list[str] = []
    async with bb.client_for(running, 300) as client:
        for start in range(0, n, 500):
            body = {"items": [{"plan": plan}] * min(500, n - start)}
            answer = await bb.post_json(client, f"{running.url}/v1/executions/batch", body)
            ids += [item["id"] for item in answer["items"]]
    return ids


async def until(count: Any, n: int, what: str, timeout: float) -> float:
    """Wait until ``count()`` reaches ``n``; the seconds it took."""
    t0 = time.perf_counter()
    while count() < n:
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"{what}: {count()} of {n} after {timeout:.0f} s")
        await asyncio.sleep(0.2)
    return time.perf_counter() - t0


async def decide_all(running: bb.Running, ids: list[str], parallel: int = 32) -> None:
    """Approve every gate over the HTTP API, ``parallel`` decisions in flight."""
    gate = asyncio.Semaphore(parallel)

    async def one(client: aiohttp.ClientSession, eid: str) -> None:
        url = f"{running.url}/v1/approvals/{approval_id_for(uuid.UUID(eid), 'pay')}/decision"
        async with gate:
            await bb.post_json(client, url, {"decision": "approve", "comment": "bench"})

    async with bb.client_for(running, 300) as client:
        await asyncio.gather(*(one(client, eid) for eid in ids))


def timers_forward(running: bb.Running) -> int:
    """The sleeps' timers made due now, in the executor's timer table: the bench's clock jump."""
    env = running.engine.env
    schema = env.get("BATON_DB_SCHEMA") or "public"
    statement = SQL(
        "UPDATE {s}.executor_timers SET due_at = now() WHERE payload->>'kind' = 'sleep'"
    ).format(s=Identifier(schema))
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(statement).rowcount


async def waiting(
    running: bb.Running, seen: Seen, size: dict[str, Any], park_only: bool = False
) -> dict[str, Any]:
    """Park ``n`` + ``n`` executions; the footprint before and after; then wake them all
    (``park_only``: leave them, for an engine that cannot wake its sleeps early: an old one)."""
    n, window_s, warm_up = size["waiting"], size["window"], size["warm_up"]
    log(f"  warm-up ({warm_up} + {warm_up} parked and woken), then the idle footprint…")
    if warm_up:
        await park_and_wake(running, seen, warm_up)
    idle = await quiet(running, window_s, size["settle"])
    dump_heaps(running)
    t0 = time.perf_counter()
    gated, sleeping = await park(running, seen, n)
    park_s = time.perf_counter() - t0
    log(f"  {2 * n:,} parked in {park_s:.1f} s; footprint…")
    parked = await quiet(running, window_s, size["settle"])
    (mem0, cpu0), (mem1, cpu1) = total(idle), total(parked)
    log(f"  PSS {mem0:.0f} → {mem1:.0f} MB, idle CPU {cpu0:.1f} → {cpu1:.1f} ms/s; waking…")
    out = {"n": n, "park_s": park_s, "mem0": mem0, "mem1": mem1, "cpu0": cpu0, "cpu1": cpu1,
           "cached": executions_cached(running), "idle": idle, "parked": parked}  # fmt: skip
    dump_heaps(running)
    if size.get("late"):  # the same waiting executions once the bus's and heaps' short-lived
        await asyncio.sleep(size["late"])  # memory (de-duplication window: 2 min) is gone
        out["late"], out["late_s"] = await asyncio.to_thread(footprint, window_s), size["late"]
        log(f"  {size['late']:.0f} s later: PSS {total(out['late'])[0]:.0f} MB")
        dump_heaps(running)
    if not park_only:
        t0 = time.perf_counter()
        out["timers_moved"], out["succeeded"] = await wake(running, gated, sleeping)
        out["drain_s"] = time.perf_counter() - t0
    return out


async def park(running: bb.Running, seen: Seen, n: int) -> tuple[list[str], list[str]]:
    """``n`` executions at gates and ``n`` asleep, once every one is there: their ids."""
    gated = await submit_many(running, GATE, n)
    sleeping = await submit_many(running, SLEEP, n)
    await until(lambda: len(seen.gated & set(gated)), n, "gates opened", 600)
    await until(lambda: len(seen.sleeping & set(sleeping)), n, "sleeps begun", 600)
    return gated, sleeping


async def wake(running: bb.Running, gated: list[str], sleeping: list[str]) -> tuple[int, int]:
    """Approve every gate, move every sleep's timer forward; (timers moved, executions that
    succeeded) once every one ended."""
    await decide_all(running, gated)
    moved = await asyncio.to_thread(timers_forward, running)
    ends = [bb._end_of(running, eid) for eid in gated + sleeping]
    await asyncio.wait_for(asyncio.gather(*ends), timeout=max(600, len(ends) * 0.1))
    ok = sum(1 for eid in gated + sleeping if running.done[eid][1] == "execution.succeeded")
    return moved, ok


async def park_and_wake(running: bb.Running, seen: Seen, n: int) -> None:
    gated, sleeping = await park(running, seen, n)
    await wake(running, gated, sleeping)


def executions_cached(running: bb.Running) -> float:
    """The executor's gauge of executions it holds in memory."""
    import urllib.request

    port = running.engine.health_ports["executor"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("baton_executions_cached"):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


# --- a burst ----------------------------------------------------------------------------------------


async def burst(running: bb.Running, seen: Seen, n: int) -> dict[str, Any]:
    """``n`` single submissions sent at once (no batch call): submit → first step started."""
    await bb.settle(running)
    sent: dict[str, tuple[float, float]] = {}  # id -> (sent, accepted)

    async def one(client: aiohttp.ClientSession) -> str:
        t0 = time.perf_counter()
        answer = await bb.post_json(client, f"{running.url}/v1/executions", {"plan": ONE_STEP})
        sent[answer["id"]] = (t0, time.perf_counter())
        return str(answer["id"])

    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(
        headers=running.auth, timeout=aiohttp.ClientTimeout(total=300), connector=connector
    ) as client:
        ids = await asyncio.gather(*(one(client) for _ in range(n)))
    await until(lambda: sum(1 for i in ids if i in seen.first_step), n, "first steps", 300)
    lat = [(seen.first_step[i] - sent[i][0]) * 1000 for i in ids]
    accepted = [(sent[i][1] - sent[i][0]) * 1000 for i in ids]
    return {"n": n, "p50_ms": statistics.median(lat), "p99_ms": bb._pct(lat, 99),
            "accepted_p50_ms": statistics.median(accepted),
            "accepted_p99_ms": bb._pct(accepted, 99)}  # fmt: skip


# --- report -----------------------------------------------------------------------------------------


def late_lines(w: dict[str, Any], late_s: float | None) -> list[str]:
    """``--late``: the footprint of the same waiting executions ``late_s`` seconds later."""
    if "late" not in w:
        return []
    mem = total(w["late"])[0]
    rows = ", ".join(f"{k} {w['idle'].get(k, (0.0,))[0]:.0f} → {v[0]:.0f}"
                     for k, v in sorted(w["late"].items(), key=lambda kv: -kv[1][0])[:7])  # fmt: skip
    return [
        f"- {late_s:.0f} s later (nothing woken): {mem:.0f} MB, **{mem - w['mem0']:+.0f} MB** "
        f"over the idle engine ({(mem - w['mem0']) * 1024 / (2 * w['n']):.1f} kB per waiting "
        f"execution); PSS MB idle → then: {rows}.",
    ]


def parked_report(w: dict[str, Any], late_s: float | None = None) -> str:
    """The footprint table alone."""
    n, grow_mb = w["n"], w["mem1"] - w["mem0"]
    return "\n".join([
        *footprint_table(w), "", *late_lines(w, late_s),
        f"- {n:,} + {n:,} parked in {w['park_s']:.1f} s: {grow_mb * 1024 / (2 * n):.1f} kB per "
        f"waiting execution; the executor held {w['cached']:.0f} executions in memory.",
    ])  # fmt: skip


def footprint_table(w: dict[str, Any]) -> list[str]:
    grow_mb = w["mem1"] - w["mem0"]
    grow_cpu = w["cpu1"] - w["cpu0"]
    rel = grow_cpu / w["cpu0"] * 100 if w["cpu0"] else float("nan")
    return [
        f"Run: {time.strftime('%Y-%m-%d %H:%M')} UTC, `make bench-waiting`, {os.cpu_count()} cores; "
        "the whole engine as processes (services, nats-server, PostgreSQL), PSS summed.",
        "",
        "| | idle engine | with waiting executions | growth |",
        "|---|---|---|---|",
        f"| memory (PSS, MB) | {w['mem0']:.0f} | {w['mem1']:.0f} | {grow_mb:+.0f} MB |",
        f"| idle CPU (ms per s) | {w['cpu0']:.1f} | {w['cpu1']:.1f} | {grow_cpu:+.1f} ms/s ({rel:+.0f} %) |",
        "",
        "By process (the largest changes):",
        "",
        "| process | PSS MB idle → waiting | CPU ms/s idle → waiting |",
        "|---|---|---|",
        *by_process(w["idle"], w["parked"]),
    ]


def report(w: dict[str, Any], b: dict[str, Any], fair: dict[str, Any]) -> str:
    n = w["n"]
    grow_mb = w["mem1"] - w["mem0"]
    grow_cpu = w["cpu1"] - w["cpu0"]
    rel = grow_cpu / w["cpu0"] * 100 if w["cpu0"] else float("nan")
    lines = [
        *footprint_table(w),
        "",
        f"- {n:,} executions on approval gates and {n:,} on durable one-hour sleeps, parked in "
        f"{w['park_s']:.1f} s: **{grow_mb * 1024 / (2 * n):.1f} kB per waiting execution**; the "
        f"executor held {w['cached']:.0f} executions in memory meanwhile.",
        *late_lines(w, w.get("late_s")),
        f"- Woken (every gate approved over HTTP, {w['timers_moved']:,} sleep timers moved "
        f"forward): {w['succeeded']:,} of {2 * n:,} succeeded, drained in {w['drain_s']:.1f} s.",
        f"- Burst: {b['n']:,} submissions at once (one HTTP call each): submit → first step "
        f"started p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms (of which submit → "
        f"202 Accepted p50 {b['accepted_p50_ms']:.0f} ms, p99 {b['accepted_p99_ms']:.0f} ms).",
        f"- Fairness: a small workspace's single-step executions p50 {fair['alone_p50_ms']:.0f} ms "
        f"alone, {fair['loaded_p50_ms']:.0f} ms while another workspace has "
        f"{fair['big_steps']:,} steps queued.",
        "",
        "| target | figure | met |",
        "|---|---|---|",
        f"| memory grows ≤ 100 MB with {n:,} + {n:,} waiting | {grow_mb:+.0f} MB "
        f"| {'yes' if grow_mb <= 100 else '**no**'} |",
        f"| idle CPU grows ≤ 10 % | {fmt(rel, '+.0f')} % ({grow_cpu:+.1f} ms/s) "
        f"| {'yes' if rel <= 10 else '**no**'} |",
        f"| every one resumes and succeeds | {w['succeeded']:,} of {2 * n:,} "
        f"| {'yes' if w['succeeded'] == 2 * n else '**no**'} |",
    ]
    return "\n".join(lines)


def by_process(
    idle: dict[str, tuple[float, float]], parked: dict[str, tuple[float, float]]
) -> list[str]:
    def change(name: str) -> float:
        a, b = idle.get(name, (0.0, 0.0)), parked.get(name, (0.0, 0.0))
        return abs(b[0] - a[0]) + abs(b[1] - a[1]) * 5  # 1 ms/s of CPU weighs as 5 MB

    rows = []
    for name in sorted(set(idle) | set(parked), key=change, reverse=True)[:6]:
        a, b = idle.get(name, (0.0, 0.0)), parked.get(name, (0.0, 0.0))
        rows.append(f"| {name} | {a[0]:.0f} → {b[0]:.0f} | {a[1]:.1f} → {b[1]:.1f} |")
    return rows


def write_doc(text: str) -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    body = doc.read_text()
    if BEGIN not in body:
        body += f"\n## Waiting executions, bursts and fairness (`make bench-waiting`)\n\n{BEGIN}\n{END}\n"
    head, rest = body.split(BEGIN, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")


async def burst_only(n: int) -> str:
    """``--burst-only``: the burst on a fresh engine, nothing parked before it."""
    workdir = Path(tempfile.mkdtemp(prefix="baton-burst-"))
    os.chmod(workdir, 0o755)
    running = await bb.start(workdir, free_port())
    try:
        seen = Seen()
        await seen.watch(running.nc)
        b = await burst(running, seen, n)
    finally:
        await bb.stop(running)
    return (
        f"Burst: {n:,} single submissions at once (load average before: {_load()}): submit → "
        f"first step started p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms; the gateway's "
        f"202 p50 {b['accepted_p50_ms']:.0f} ms, p99 {b['accepted_p99_ms']:.0f} ms."
    )


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run(size: dict[str, Any], park_only: bool = False) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="baton-waiting-"))
    os.chmod(workdir, 0o755)
    running = await bb.start(workdir, free_port())
    try:
        seen = Seen()
        await seen.watch(running.nc)
        w = await waiting(running, seen, size, park_only)
        if park_only:
            return parked_report(w, size.get("late"))
        log(f"  drained: {w['succeeded']:,} succeeded in {w['drain_s']:.1f} s")
        b = await burst(running, seen, size["burst"])
        log(f"  burst p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms")
        fair = await bb.fairness(running, *size["fair"])
        return report(w, b, fair)
    finally:
        await bb.stop(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (make bench-quick)")
    parser.add_argument("--waiting", type=int, help="executions on gates (as many on sleeps)")
    parser.add_argument(
        "--warm-up", type=int, help="executions of each kind parked and woken before the idle "
        "footprint (default 50: lazy imports and pools count in the idle figure)"
    )  # fmt: skip
    parser.add_argument("--settle", type=float, default=5, help="seconds before each footprint")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--park-only", action="store_true", help="the footprints only, no warm-up, nothing woken "
        "(to measure an engine from before durable sleeps: PYTHONPATH=<its services' src>)"
    )  # fmt: skip
    parser.add_argument(
        "--burst-only", type=int, metavar="N", help="only N submissions at once on a fresh engine"
    )
    parser.add_argument(
        "--late", type=float, metavar="S", help="the waiting footprint again S seconds later"
    )
    parser.add_argument(
        "--dump-heaps", metavar="DIR", help="each service traces its allocations and writes "
        "what it holds to DIR after each footprint (slower; a diagnostic, not a figure)"
    )  # fmt: skip
    args = parser.parse_args()
    if args.dump_heaps:
        os.environ["BATON_HEAP_DUMP"] = str(Path(args.dump_heaps).absolute())
    if args.burst_only:
        os.environ.setdefault("OTEL_SDK_DISABLED", "true")
        for private in ("NATS_URL", "DATABASE_URL"):
            os.environ.pop(private, None)
        print(asyncio.run(burst_only(args.burst_only)))
        return
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.waiting:
        size["waiting"] = args.waiting
    if args.warm_up is not None:
        size["warm_up"] = args.warm_up
    size["settle"] = args.settle
    size["late"] = args.late
    if args.park_only:
        size["warm_up"] = 0  # an old engine's sleeps cannot be woken early
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    for private in ("NATS_URL", "DATABASE_URL"):  # its own servers: their processes are counted
        os.environ.pop(private, None)
    text = asyncio.run(run(size, args.park_only))
    print("\n" + text)
    if not args.no_write and not args.park_only:
        write_doc(text)


if __name__ == "__main__":
    main()
