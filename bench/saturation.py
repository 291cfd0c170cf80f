"""Saturation through workers beside the peers (issue 32): one table of one run.

N executions of K=5 no-op steps submitted at once, on each engine in its own form:

- Baton, pure: ``mock.agent`` steps the executor runs itself (one commit per step's outcome);
- Baton, through workers: ``time.sleep`` 0 s steps, every step through the bus to a worker
  process and back (the path a step with side effects takes);
- Temporal: activities (a worker polls the dev server's task queue) and local activities;
- DBOS: ``@DBOS.step`` functions in the workflow's process;
- LangGraph: nodes of a StateGraph (sync, on a thread pool);
- Restate: ``ctx.run`` steps in a service the server calls.

Each row says its steps/s, its CPU per step (and which processes that counts), and what durable
means for it. Beside them: the run's commit floor (one PostgreSQL single-row commit) and the
ratio of Baton through workers to the best peer, against the issue's target (at least 5 times).

``make bench`` prints this table from its own runs (``bench.run``); alone, with rounds that
alternate Baton and the peers on one PostgreSQL:

    python -m bench.saturation --n 1000 --rounds 2 [--peers temporal,dbos,langgraph,restate]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

K = 5
TARGET = 5.0  # Baton through workers at least 5 times the best peer (issue 32)

BATON_FORMS = {
    "saturation": "pure steps, run inside the executor (`mock.agent`)",
    "worker_saturation": "steps through a worker (`time.sleep` 0 s: bus → worker → bus)",
    "worker_unbounded": "the same through a worker, no per-workspace bound on steps in flight "
    "(`BATON_WORKSPACE_STEPS_IN_FLIGHT` unbounded; not the default: what the bound costs)",
}
PEER_FORMS = {
    "temporal (activities)": "activities (a worker polls the dev server's task queue)",
    "temporal (local)": "local activities (in the workflow worker)",
    "dbos": "`@DBOS.step` functions (sync workflows on DBOS's thread pool)",
    "langgraph": "nodes of a StateGraph (sync `invoke` on 16 threads)",
    "restate": "`ctx.run` steps in a hypercorn service the server calls",
}
CPU_COUNTED = {
    "baton": "every engine process: the services, nats-server, PostgreSQL (not the bench)",
    "temporal": "the bench process (client and worker in one) and the dev server",
    "dbos": "the bench process (DBOS runs in it) and the PostgreSQL server",
    "langgraph": "the bench process (the graph runs in it) and the PostgreSQL server",
    "restate": "restate-server and the service's hypercorn (not the client)",
}


@dataclass(frozen=True)
class Verdict:
    """Baton's steps/s against the best peer's, and whether the target holds."""

    best_peer: str | None
    best_steps_per_s: float | None
    ratio: float | None
    met: bool


def verdict(baton_steps_per_s: float | None, peers: dict[str, float | None]) -> Verdict:
    """The best peer (the most steps/s among those with a figure) and Baton's ratio to it; the
    target is met only when both figures exist and the ratio is ≥ ``TARGET``."""
    measured = {name: sps for name, sps in peers.items() if sps}
    if not measured:
        return Verdict(None, None, None, False)
    best = max(measured, key=lambda name: measured[name])
    if not baton_steps_per_s:
        return Verdict(best, measured[best], None, False)
    ratio = baton_steps_per_s / measured[best]
    return Verdict(best, measured[best], ratio, ratio >= TARGET)


def in_commits(steps_per_s: float | None, commit_ms: float | None) -> float | None:
    """Time per step at saturation (1 / steps/s), in the run's single-row commits."""
    if not steps_per_s or not commit_ms:
        return None
    return 1000 / steps_per_s / commit_ms


def _med(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def lines(
    baton: list[dict[str, Any]],
    peers: dict[str, list[dict[str, Any]]],
    commit_ms: float | None,
    baton_durability: str = "",
) -> list[str]:
    """The table: ``baton`` is a list of runs with ``saturation`` / ``worker_saturation``
    results (``bb.saturate``); ``peers`` maps a label to its runs' summaries (each with a
    ``saturation`` dict: ``steps_per_s``, ``cpu_ms_per_step``, ``durability``)."""
    n = next((r[f]["executions"] for r in baton for f in BATON_FORMS if f in r), None)
    out = [
        f"Saturation (N={_fmt(n, ',.0f')} executions × K={K} no-op steps submitted at once; "
        f"medians of {len(baton)} run(s); one PostgreSQL single-row commit in this run: "
        f"{_fmt(commit_ms, '.2f')} ms):",
        "",
        "| engine | form | steps/s | per step, in commits | CPU ms per step | CPU counted | durable |",
        "|---|---|---|---|---|---|---|",
    ]
    figures: dict[str, float | None] = {}
    for key, form in BATON_FORMS.items():
        runs = [r[key] for r in baton if key in r]
        if not runs:
            continue
        sps = _med([r["steps_per_s"] for r in runs])
        cpu = _med([r["cpu_ms_per_step"] for r in runs])
        figures[key] = sps
        out.append(
            f"| **Baton** | {form} | {_fmt(sps, ',.0f')} | {_fmt(in_commits(sps, commit_ms), '.1f')}"
            f" | {_fmt(cpu, '.2f')} | {CPU_COUNTED['baton']} | {baton_durability} |"
        )
    peer_sps: dict[str, float | None] = {}
    for label, runs in peers.items():
        sat = [r["saturation"] for r in runs if r.get("saturation")]
        sps = _med([s.get("steps_per_s") for s in sat])
        cpu = _med([s.get("cpu_ms_per_step") for s in sat])
        said = next((s["durability"] for s in sat if s.get("durability")), "")
        peer_sps[label] = sps
        out.append(
            f"| {label} | {PEER_FORMS.get(label, '')} | {_fmt(sps, ',.0f')} | "
            f"{_fmt(in_commits(sps, commit_ms), '.1f')} | {_fmt(cpu, '.2f')} | "
            f"{CPU_COUNTED.get(label.split(' ')[0], '')} | {said} |"
        )
    out.append("")
    for key, name in (("worker_saturation", "through workers"), ("saturation", "pure")):
        v = verdict(figures.get(key), peer_sps)
        met = "**yes**" if v.met else "**no**"
        out.append(
            f"- Baton {name}: {_fmt(figures.get(key), ',.0f')} steps/s, "
            f"×{_fmt(v.ratio, '.1f')} the best peer ({v.best_peer or '—'}, "
            f"{_fmt(v.best_steps_per_s, ',.0f')} steps/s); ≥ {TARGET:.0f}×: {met}"
        )
    return [*out, ""]


async def baton_durability(db_url: str) -> str:
    """What durable means for Baton in this run, read back from its PostgreSQL."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        got = []
        for name in ("fsync", "synchronous_commit"):
            row = await (await conn.execute(f"SHOW {name}")).fetchone()
            got.append(f"{name}={row[0] if row else '?'}")
    return (
        "every step's outcome committed to PostgreSQL before the step after it is dispatched "
        f"({', '.join(got)}); tasks on a JetStream work queue (file storage)"
    )


# --- alone: rounds that alternate Baton and the peers ----------------------------------------------


async def baton_round(n: int, workdir: Path, unbounded: bool = False) -> dict[str, Any]:
    """A fresh engine: a warm-up of both forms, saturation through workers, then pure, then the
    floor (single-row commits on the engine's PostgreSQL, the engine idle)."""
    from baton_common.embedded import free_port

    from bench import baton_bench as bb
    from bench import services_bench as sb
    from bench.run import floor

    tag = uuid.uuid4().hex[:6]
    data = workdir / f"sat-{tag}"
    data.mkdir(parents=True)
    data.chmod(0o755)
    os.environ["BATON_DB_SCHEMA"] = f"sat_{tag}"
    running = await bb.start(data, free_port())
    out: dict[str, Any] = {}
    try:
        env = running.engine.env
        await bb.saturate(running, bb.chain_plan(K), min(n, 100))  # warm-up, as the peers do
        await bb.saturate(running, sb.worker_chain_plan(K), min(n, 100))
        out["worker_saturation"] = await bb.saturate(running, sb.worker_chain_plan(K), n)
        out["saturation"] = await bb.saturate(running, bb.chain_plan(K), n)
        out["floor"] = await floor(
            env["NATS_URL"], env["DATABASE_URL"], 2000, bb.bus_key(running.engine)
        )
        out["durability"] = await baton_durability(env["DATABASE_URL"])
        out["load"] = os.getloadavg()[0]
    finally:
        await bb.stop(running)
    if unbounded:
        out["worker_unbounded"] = await _unbounded(n, workdir)
    return out


async def _unbounded(n: int, workdir: Path) -> dict[str, Any]:
    """Saturation through workers on a second engine whose workspaces have no bound on steps in
    flight: steps over the bound (256 by default) wait in the admission queue, and their
    executions leave the executor's memory until a place frees (a store read each)."""
    from baton_common.embedded import free_port

    from bench import baton_bench as bb
    from bench import services_bench as sb

    tag = uuid.uuid4().hex[:6]
    data = workdir / f"sat-{tag}"
    data.mkdir(parents=True)
    data.chmod(0o755)
    os.environ["BATON_DB_SCHEMA"] = f"sat_{tag}"
    os.environ["BATON_WORKSPACE_STEPS_IN_FLIGHT"] = "1000000"
    try:
        running = await bb.start(data, free_port())
    finally:
        del os.environ["BATON_WORKSPACE_STEPS_IN_FLIGHT"]
    try:
        await bb.saturate(running, sb.worker_chain_plan(K), min(n, 100))
        return await bb.saturate(running, sb.worker_chain_plan(K), n)
    finally:
        await bb.stop(running)


def peer_round(n: int, names: list[str], db_url: str) -> dict[str, dict[str, Any]]:
    """Each peer's saturation form once: label → summary (with the load average after it)."""
    from bench.run import PEERS, run_peer, summarise_peer

    out = {}
    for peer in names:
        for variant in PEERS[peer][1]:
            label = f"{peer} ({variant})" if variant else peer
            res = run_peer(peer, variant, "saturation", K, n, db_url)
            if res:
                out[label] = {"saturation": summarise_peer(res), "load": os.getloadavg()[0]}
                print(f"  {label}: {out[label]['saturation']['steps_per_s']:,.0f} steps/s, "
                      f"{out[label]['saturation'].get('cpu_ms_per_step', 0):.2f} CPU ms/step, "
                      f"load {out[label]['load']:.1f}", flush=True)  # fmt: skip
    return out


def run_alone(n: int, rounds: int, names: list[str], unbounded: bool = False) -> str:
    from baton_common.embedded import PostgresServer

    from bench.run import setup_peers

    available = setup_peers()
    names = [p for p in names if available.get(p)]
    work = Path(tempfile.mkdtemp(prefix="baton-sat-"))
    work.chmod(0o755)
    pg = PostgresServer(work / "pg").start()
    os.environ["DATABASE_URL"] = pg.url
    baton: list[dict[str, Any]] = []
    peers: dict[str, list[dict[str, Any]]] = {}
    try:
        for i in range(rounds):
            order = ("baton", "peers") if i % 2 == 0 else ("peers", "baton")
            for side in order:
                print(f"round {i + 1}/{rounds}: {side} ({time.strftime('%H:%M:%S')})", flush=True)
                if side == "baton":
                    got = asyncio.run(baton_round(n, work, unbounded))
                    baton.append(got)
                    print(f"  Baton: through workers {got['worker_saturation']['steps_per_s']:,.0f}, "
                          f"pure {got['saturation']['steps_per_s']:,.0f} steps/s; commit "
                          f"{1000 / got['floor']['pg_commits_per_s']:.2f} ms; load {got['load']:.1f}",
                          flush=True)  # fmt: skip
                else:
                    for label, res in peer_round(n, names, pg.url).items():
                        peers.setdefault(label, []).append(res)
    finally:
        pg.stop()
    commit_ms = _med([1000 / r["floor"]["pg_commits_per_s"] for r in baton])
    table = lines(baton, peers, commit_ms, baton[0]["durability"] if baton else "")
    floors = ", ".join(f"{1000 / r['floor']['pg_commits_per_s']:.2f}" for r in baton)
    loads = [r["load"] for r in baton] + [r["load"] for runs in peers.values() for r in runs]
    table.append(
        f"Single-row commit per round: {floors} ms; load average (1 min) after each "
        f"measurement: {min(loads, default=0):.1f}–{max(loads, default=0):.1f} on "
        f"{os.cpu_count()} cores."
    )
    return "\n".join(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1000, help="executions submitted at once")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peers", default="temporal,dbos,langgraph,restate")
    parser.add_argument(
        "--unbounded",
        action="store_true",
        help="also saturate through workers with no per-workspace bound on steps in flight",
    )
    args = parser.parse_args()
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    names = [p for p in args.peers.split(",") if p]
    print(run_alone(args.n, args.rounds, names, args.unbounded), flush=True)


if __name__ == "__main__":
    main()
