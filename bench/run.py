"""`make bench` / `make bench-quick`: Baton beside Temporal, DBOS and LangGraph, in one run.

Same K, same N, same machine; runs interleaved (Baton, then each peer, then again); medians of the
runs; Baton/peer ratios; each target printed beside its figure. The results table is written to
docs/benchmarks.md between the generated markers (the notes around it are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from baton_common.embedded import free_port

from bench import baton_bench as bb
from bench import saturation, scaleout, worker_path
from bench import services_bench as sb

ROOT = Path(__file__).resolve().parent.parent
PEERS_VENV = ROOT / ".bench" / "peers-venv"
PEERS = {  # name -> (script, variants)
    "temporal": ("temporal_bench.py", ["activities", "local"]),
    "dbos": ("dbos_bench.py", [None]),
    "langgraph": ("langgraph_bench.py", [None]),
    "restate": ("restate_bench.py", [None]),
}
SIZES = {
    "quick": {
        "runs": 1,
        "chain_n": 20,
        "fanout_n": 10,
        "sat_n": 200,
        "scaling": [10, 100, 1000],
        "scaling_steps": 1500,
        "floor": 5000,
        "fair": (10, 100, 8),  # big workspace: executions x parallel steps; small: executions
        "approvals_n": 10,
        "schedule_s": 8,
        "scaleout_n": 100,
    },
    "full": {
        "runs": 3,
        "chain_n": 100,
        "fanout_n": 50,
        "sat_n": 1000,
        "scaling": [10, 100, 1000, 10000],
        "scaling_steps": 5000,
        "floor": 20000,
        "fair": (100, 100, 20),
        "approvals_n": 50,
        "schedule_s": 30,
        "scaleout_n": 1000,
    },
}
K_CHAIN, K_FAN = 5, 10


def log(msg: str) -> None:
    print(msg, flush=True)


# --- peers ------------------------------------------------------------------------------------------


def setup_peers() -> dict[str, bool]:
    script = ROOT / "bench" / "peers" / "setup_peers.sh"
    if not script.exists():
        return {}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=ROOT)
    for line in done.stdout.splitlines():
        if line.startswith("SKIP"):
            log(line)
    try:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        log(f"SKIP all peers: setup failed: {done.stderr[-300:]}")
        return {}


def run_peer(
    peer: str, variant: str | None, workload: str, k: int, n: int, db_url: str
) -> dict[str, Any] | None:
    script, _ = PEERS[peer]
    cmd = [str(PEERS_VENV / "bin" / "python"), str(ROOT / "bench" / "peers" / script),
           "--workload", workload, "--k", str(k), "--n", str(n)]  # fmt: skip
    if variant:
        cmd += ["--variant", variant]
    env = {**os.environ, "DATABASE_URL": db_url}  # not an argument: the URL holds a password
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        log(f"  {peer}/{variant or '-'} {workload}: timed out")
        return None
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        log(f"  {peer}/{variant or '-'} {workload}: failed: {(done.stderr or done.stdout)[-300:]}")
        return None
    return dict(json.loads(lines[-1]))


def summarise_peer(result: dict[str, Any]) -> dict[str, Any]:
    lat = result.get("latencies_ms") or []
    out = {"steps_per_s": result.get("steps_per_s"), "cpu_s": result.get("cpu_s")}
    if result.get("steps") and result.get("cpu_s") is not None:  # its processes and PostgreSQL's
        cpu = result["cpu_s"] + (result.get("db_cpu_s") or 0)
        out["cpu_ms_per_step"] = cpu * 1000 / result["steps"]
    if result.get("durability"):
        out["durability"] = result["durability"]
    if lat:
        k = result["k"] if result["workload"] == "chain" else result["k"] + 1
        out.update(
            p50_ms=statistics.median(lat),
            p99_ms=bb._pct(lat, 99),
            per_step_ms=statistics.median(lat) / k,
        )
    return out


# --- the floor: what the bus and the store can do from Python ---------------------------------------


async def floor(
    nats_url: str, db_url: str, count: int, key: dict[str, str] | None = None
) -> dict[str, float]:
    import nats
    import psycopg

    nc = await nats.connect(nats_url, **(key or {}))
    js = nc.jetstream()
    stream = f"FLOOR_{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    t0 = time.perf_counter()
    futures = [await js.publish_async(f"{stream}.x", b"x" * 200) for _ in range(count)]
    await asyncio.gather(*futures)
    publish_rate = count / (time.perf_counter() - t0)
    await js.delete_stream(stream)
    await nc.close()
    table = f"floor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial primary key, body text)")
        n = max(500, count // 20)
        t0 = time.perf_counter()
        for _ in range(n):
            conn.execute(f"INSERT INTO {table} (body) VALUES (%s)", ("x" * 200,))
        commit_rate = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(n // 100 or 1):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} (body) VALUES (%s)", [("x" * 200,)] * 100)
        batched_rows = (n // 100 or 1) * 100 / (time.perf_counter() - t0)
        conn.execute(f"DROP TABLE {table}")
    return {
        "jetstream_publish_per_s": publish_rate,
        "pg_commits_per_s": commit_rate,
        "pg_rows_per_s_in_100_row_commits": batched_rows,
    }


# --- Baton ------------------------------------------------------------------------------------------


async def baton_run(size: dict[str, Any], workdir: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    data = workdir / f"baton-{tag}"
    data.mkdir(parents=True)
    data.chmod(0o755)
    os.environ["BATON_DB_SCHEMA"] = f"bench_{tag}"  # a fresh schema per run, same server
    running = await bb.start(data, free_port())
    out: dict[str, Any] = {}
    try:
        out["chain"] = await bb.one_at_a_time(running, bb.chain_plan(K_CHAIN), size["chain_n"])
        out["worker_chain"] = await worker_path.worker_hops(running, K_CHAIN, size["chain_n"])
        out["fanout"] = await bb.one_at_a_time(running, bb.fanout_plan(K_FAN), size["fanout_n"])
        out["saturation"] = await bb.saturate(running, bb.chain_plan(K_CHAIN), size["sat_n"])
        out["worker_saturation"] = await bb.saturate(
            running, sb.worker_chain_plan(K_CHAIN), size["sat_n"]
        )
        out["durability"] = await saturation.baton_durability(running.engine.env["DATABASE_URL"])
        out["scaling"] = {
            str(n): await bb.scaling_level(
                running, bb.chain_plan(K_CHAIN), n, size["scaling_steps"]
            )
            for n in size["scaling"]
        }
        out["fairness"] = await bb.fairness(running, *size["fair"])
        out["approvals"] = await sb.approvals(running, size["approvals_n"])
        out["schedules"] = await sb.schedule_lateness(running, size["schedule_s"])
        out["rebuild"] = await rebuild_rate(running)
        out["floor"] = await floor(
            running.engine.env["NATS_URL"],
            running.engine.env["DATABASE_URL"],
            size["floor"],
            bb.bus_key(running.engine),
        )
    finally:
        await bb.stop(running)
    return out


async def unbounded_fairness(size: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The same fairness workload on an engine whose workspaces have no bound on steps in
    flight: what the bound buys."""
    tag = uuid.uuid4().hex[:6]
    data = workdir / f"baton-{tag}"
    data.mkdir(parents=True)
    data.chmod(0o755)
    os.environ["BATON_DB_SCHEMA"] = f"bench_{tag}"
    os.environ["BATON_WORKSPACE_STEPS_IN_FLIGHT"] = "1000000"
    try:
        running = await bb.start(data, free_port())
        try:
            return await bb.fairness(running, *size["fair"])
        finally:
            await bb.stop(running)
    finally:
        del os.environ["BATON_WORKSPACE_STEPS_IN_FLIGHT"]


async def rebuild_rate(running: bb.Running) -> dict[str, float]:
    from baton_common.settings import Settings
    from baton_projector.main import rebuild

    env = running.engine.env
    settings = Settings(  # the data folder: the rebuild's bus key (``busauth``) is there
        NATS_URL=env["NATS_URL"],
        DATABASE_URL=env["DATABASE_URL"],
        BATON_DB_SCHEMA=env["BATON_DB_SCHEMA"],
        BATON_DATA_DIR=env["BATON_DATA_DIR"],
    )
    return await rebuild(settings)


# --- report -----------------------------------------------------------------------------------------


def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, spec: str = ",.0f") -> str:
    return "—" if v is None else format(v, spec)


def report(mode: str, baton: list[dict[str, Any]], peers: dict[str, list[dict[str, Any]]]) -> str:
    lines = [f"Run: {time.strftime('%Y-%m-%d %H:%M')} UTC, `make bench{'-quick' if mode == 'quick' else ''}`, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}, {len(baton)} run(s), medians shown.", ""]  # fmt: skip
    lines += ["| engine | chain K=5 p50 | chain p99 | per-step (chain p50 / K) | fan-out 10+join p50 | saturation N steps/s | executions/s |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    b = {
        "chain_p50": med([r["chain"]["p50_ms"] for r in baton]), "chain_p99": med([r["chain"]["p99_ms"] for r in baton]),
        "per_step": med([r["chain"]["per_step_ms"] for r in baton]), "fan_p50": med([r["fanout"]["p50_ms"] for r in baton]),
        "sps": med([r["saturation"]["steps_per_s"] for r in baton]), "eps": med([r["saturation"]["executions_per_s"] for r in baton]),
    }  # fmt: skip
    lines.append(f"| **Baton** | {fmt(b['chain_p50'], '.1f')} ms | {fmt(b['chain_p99'], '.1f')} ms | {fmt(b['per_step'], '.2f')} ms | "
                 f"{fmt(b['fan_p50'], '.1f')} ms | {fmt(b['sps'])} | {fmt(b['eps'])} |")  # fmt: skip
    for name, runs in peers.items():
        chain = med([r.get("chain", {}).get("p50_ms") for r in runs])
        chain99 = med([r.get("chain", {}).get("p99_ms") for r in runs])
        per = med([r.get("chain", {}).get("per_step_ms") for r in runs])
        fan = med([r.get("fanout", {}).get("p50_ms") for r in runs])
        sps = med([r.get("saturation", {}).get("steps_per_s") for r in runs])
        eps = sps / K_CHAIN if sps else None
        ratio = f" (Baton ×{b['sps'] / sps:.1f})" if sps and b["sps"] else ""
        lines.append(f"| {name} | {fmt(chain, '.1f')} ms | {fmt(chain99, '.1f')} ms | {fmt(per, '.2f')} ms | {fmt(fan, '.1f')} ms | "
                     f"{fmt(sps)}{ratio} | {fmt(eps)} |")  # fmt: skip
    commit_ms = 1000 / (med([r["floor"]["pg_commits_per_s"] for r in baton]) or 1)
    lines += ["", *saturation.lines(baton, peers, commit_ms, baton[0].get("durability", ""))]
    lines += ["", "Scaling (Baton, K=5 chains submitted at once; CPU of every process: services, NATS, PostgreSQL):", "",
              "| concurrent executions | rounds | steps/s | CPU ms per step | store commits per step |", "|---|---|---|---|---|"]  # fmt: skip
    cost: dict[str, float] = {}
    for n in baton[0]["scaling"]:
        sps = med([r["scaling"][n]["steps_per_s"] for r in baton])
        cpu = med([r["scaling"][n]["cpu_ms_per_step"] for r in baton])
        cps = med([r["scaling"][n]["commits_per_step"] for r in baton])
        cost[n] = cpu or 0.0
        rounds = baton[0]["scaling"][n].get("rounds", 1)
        lines.append(
            f"| {int(n):,} | {rounds} | {fmt(sps)} | {fmt(cpu, '.2f')} | {fmt(cps, '.3f')} |"
        )
    reb = med([r["rebuild"]["events_per_s"] for r in baton])
    fl = {k: med([r["floor"][k] for r in baton]) for k in baton[0]["floor"]}
    commits = med([r["saturation"]["commits_per_step"] for r in baton])
    lines += ["", f"Projection rebuild: {fmt(reb)} events/s. Floor from Python on this machine: JetStream acknowledged "
              f"publishes {fmt(fl['jetstream_publish_per_s'])}/s; PostgreSQL single-row commits {fmt(fl['pg_commits_per_s'])}/s, "
              f"rows in 100-row commits {fmt(fl['pg_rows_per_s_in_100_row_commits'])}/s.", ""]  # fmt: skip
    low, high = _flat_levels(cost)
    flat = (cost[low] / cost[high] - 1) * 100 if cost and cost.get(high) else None
    fair = {k: med([r["fairness"][k] for r in baton]) for k in ("alone_p50_ms", "loaded_p50_ms")}
    unbounded = baton[0].get("fairness_unbounded")
    lines += [f"Fairness: a small workspace's single-step executions, one at a time, p50 {fmt(fair['alone_p50_ms'], '.0f')} ms alone "
              f"and {fmt(fair['loaded_p50_ms'], '.0f')} ms while another workspace has {baton[0]['fairness']['big_steps']:,} steps "
              f"queued (executions of {size_k(baton)} parallel 200 ms steps)"
              + (f"; {unbounded['loaded_p50_ms']:,.0f} ms on an engine without the per-workspace bound on steps in flight." if unbounded else "."), ""]  # fmt: skip
    lines += other_paths(baton)
    lines += ["| target | figure | met |", "|---|---|---|"]
    for key, name in (("worker_saturation", "through workers"), ("saturation", "pure steps")):
        sps = med([r[key]["steps_per_s"] for r in baton if key in r])
        peer_sps = {
            n: med([r.get("saturation", {}).get("steps_per_s") for r in rs])
            for n, rs in peers.items()
        }
        v = saturation.verdict(sps, peer_sps)
        lines.append(_target(f"saturation {name}: steps/s ≥ 5× the best peer",
                             f"{fmt(sps)} vs {v.best_peer or 'no peer'} {fmt(v.best_steps_per_s)}"
                             + (f" (×{v.ratio:.1f})" if v.ratio else ""), v.met))  # fmt: skip
    langgraph = med([r.get("chain", {}).get("per_step_ms") for r in peers.get("langgraph", [])])
    lines.append(
        _target(
            "chain K=5: p50 per step ≤ 2 ms and below LangGraph's",
            f"{fmt(b['per_step'], '.2f')} ms (LangGraph {fmt(langgraph, '.2f')} ms)",
            (b["per_step"] or 99) <= 2 and langgraph is not None and b["per_step"] < langgraph,
        )
    )
    lines.append(
        _target(
            "≤ 1 store commit per step under saturation",
            f"{fmt(commits, '.3f')}",
            (commits or 99) <= 1,
        )
    )
    low, high = _flat_levels(cost)
    lines.append(_target(f"CPU per step at {low} concurrent executions within 25% of that at {high}",
                         f"{fmt(cost.get(low), '.2f')} vs {fmt(cost.get(high), '.2f')} ms ({fmt(flat, '+.0f')}%)",
                         flat is not None and abs(flat) <= 25))  # fmt: skip
    return "\n".join(lines)


def _flat_levels(cost: dict[str, float]) -> tuple[str, str]:
    """The issue's comparison: the lowest concurrency against 1,000 (or the largest one below)."""
    levels = sorted(cost, key=int)
    if not levels:
        return "10", "1000"
    return levels[0], max((n for n in levels if int(n) <= 1000), key=int, default=levels[-1])


def other_paths(baton: list[dict[str, Any]]) -> list[str]:
    """Figures of the paths beside the no-op chain: through a worker, a gate, a schedule."""
    if "worker_chain" not in baton[0]:
        return []
    wc = med([r["worker_chain"]["p50_ms"] for r in baton])
    wps = med([r["worker_chain"]["per_step_ms"] for r in baton])
    gate = med([r["approvals"]["to_gate_p50_ms"] for r in baton])
    dec = med([r["approvals"]["decision_to_end_p50_ms"] for r in baton])
    dec99 = med([r["approvals"]["decision_to_end_p99_ms"] for r in baton])
    late = med([r["schedules"]["fire_late_p50_ms"] for r in baton])
    late_max = med([r["schedules"]["fire_late_max_ms"] for r in baton])
    ticks = baton[0]["schedules"]["ticks"]
    commit_ms = 1000 / (med([r["floor"]["pg_commits_per_s"] for r in baton]) or 1)
    hops = {
        h: med([r["worker_chain"].get("hops_ms", {}).get(h) for r in baton])
        for h, _ in worker_path.HOPS
    }
    hop_lines = worker_path.lines(
        {"k": K_CHAIN, "per_step_ms": wps or 0.0, "hops_ms": {h: v for h, v in hops.items() if v}},
        commit_ms,
    )
    return [
        *hop_lines,
        "",
        "Other paths (Baton, one at a time):",
        "",
        "| path | figure |",
        "|---|---|",
        f"| chain K=5 through a worker (`time.sleep` 0 s: bus → worker → bus per step) | p50 {fmt(wc, '.1f')} ms, {fmt(wps, '.2f')} ms per step |",
        f"| approval gate: submit → gate open | p50 {fmt(gate, '.1f')} ms |",
        f"| approval gate: decision (HTTP) → execution ended | p50 {fmt(dec, '.1f')} ms, p99 {fmt(dec99, '.1f')} ms |",
        f"| every-second schedule: tick fired after its time ({ticks} ticks) | p50 {fmt(late, '.0f')} ms, max {fmt(late_max, '.0f')} ms |",
        "",
    ]


def size_k(baton: list[dict[str, Any]]) -> int:
    f = baton[0]["fairness"]
    return int(f.get("big_k", 0)) or 100


def fairness_line(result: dict[str, Any]) -> str:
    f, u = result["fairness"], result.get("fairness_unbounded")
    line = (f"small workspace p50 {f['alone_p50_ms']:.0f} ms alone, {f['loaded_p50_ms']:.0f} ms beside "
            f"the big one's {f['big_steps']:,} queued steps")  # fmt: skip
    if u:
        line += f" ({u['loaded_p50_ms']:,.0f} ms without the per-workspace bound)"
    return line


def _target(name: str, figure: str, met: bool) -> str:
    return f"| {name} | {figure} | {'yes' if met else '**no**'} |"


def write_doc(table: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    doc.write_text(f"{head}{begin}\n{table}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone"
    )
    args = parser.parse_args()
    mode = "quick" if args.quick or not args.full else "full"
    size = SIZES[mode]
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    available = {} if args.no_peers else setup_peers()
    workdir = Path(tempfile.mkdtemp(prefix="baton-bench-"))
    workdir.chmod(0o755)
    # One PostgreSQL for Baton and the peers that use one, durable settings (fsync on).
    from baton_common.embedded import PostgresServer

    pg = PostgresServer(workdir / "pg").start()
    os.environ["DATABASE_URL"] = pg.url
    try:
        run_all(mode, size, available, workdir, pg.url, args.no_write)
    finally:
        pg.stop()


def run_all(
    mode: str,
    size: dict[str, Any],
    available: dict[str, bool],
    workdir: Path,
    db_url: str,
    no_write: bool,
) -> None:
    baton: list[dict[str, Any]] = []
    peers: dict[str, list[dict[str, Any]]] = {}
    for run in range(size["runs"]):
        log(f"run {run + 1}/{size['runs']}: Baton")
        result = asyncio.run(baton_run(size, workdir))
        if run == 0:
            result["fairness_unbounded"] = asyncio.run(unbounded_fairness(size, workdir))
        baton.append(result)
        s = result["saturation"]
        log(f"  chain p50 {result['chain']['p50_ms']:.1f} ms · fan-out p50 {result['fanout']['p50_ms']:.1f} ms · "
            f"saturation {s['steps_per_s']:,.0f} steps/s, {s['commits_per_step']:.3f} commits/step")  # fmt: skip
        log("  fairness: " + fairness_line(result))
        for peer, (_, variants) in PEERS.items():
            if not available.get(peer):
                continue
            for variant in variants:
                label = f"{peer} ({variant})" if variant else peer
                log(f"run {run + 1}/{size['runs']}: {label}")
                one: dict[str, Any] = {}
                for workload, k, n in (("chain", K_CHAIN, size["chain_n"]), ("fanout", K_FAN, size["fanout_n"]),
                                       ("saturation", K_CHAIN, size["sat_n"])):  # fmt: skip
                    res = run_peer(peer, variant, workload, k, n, db_url)
                    if res:
                        one[workload] = summarise_peer(res)
                if one:
                    peers.setdefault(label, []).append(one)
    for name in PEERS:
        if not available.get(name):
            log(f"peer {name}: skipped (not installed or not installable here)")
    from bench import calendar_slots  # no engine: the calendar application on its own

    log("scale-out: one executor, then two")
    scaled = asyncio.run(scaleout.measure(size["scaleout_n"], workdir))
    table = report(mode, baton, peers)
    table += "\n\n" + "\n".join(scaleout.lines(scaled))
    table += "\n\n" + calendar_slots.line(calendar_slots.measure(5 if mode == "full" else 1))
    from bench import planner_quality  # no engine: the planners on the quality suite

    table += "\n\n" + "\n".join(planner_quality.lines())
    print("\n" + table)
    if not no_write:
        write_doc(table)
        log("\nwritten to docs/benchmarks.md")


if __name__ == "__main__":
    sys.exit(main())
