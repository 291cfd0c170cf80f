"""Scale-out: saturation steps/s with one and with two executor replicas (``BATON_REPLICAS``).

The same workloads on two engines that differ only in how many executor processes they run:
N chains of K=5 pure steps (run inside the executor) and N chains of K=5 steps through a worker
(one worker process in both, so only the executor's share changes). On a 2-core machine the
second replica competes for the same cores as everything else: the figure says what two
executors cost or give there, not what they give on a machine with cores to spare.

``python -m bench.scaleout --n 1000`` runs it alone; ``make bench`` / ``bench-quick`` run it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from baton_common.embedded import free_port

from bench import baton_bench as bb
from bench import services_bench as sb

K = 5


async def one_engine(executors: int, n: int, workdir: Path) -> dict[str, Any]:
    """Start an engine with ``executors`` executor processes; saturate it both ways."""
    tag = uuid.uuid4().hex[:6]
    data = workdir / f"scaleout-{tag}"
    data.mkdir(parents=True)
    data.chmod(0o755)
    saved = {k: os.environ.get(k) for k in ("BATON_DB_SCHEMA", "BATON_REPLICAS")}
    os.environ["BATON_DB_SCHEMA"] = f"bench_{tag}"
    os.environ["BATON_REPLICAS"] = f"executor={executors}"
    try:
        running = await bb.start(data, free_port())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        pure = await bb.saturate(running, bb.chain_plan(K), n)
        worker = await bb.saturate(running, sb.worker_chain_plan(K), n)
    finally:
        await bb.stop(running)
    return {"executors": executors, "pure": pure, "worker": worker}


async def measure(n: int, workdir: Path) -> list[dict[str, Any]]:
    """One executor, then two: the same N and K on fresh engines (and schemas)."""
    return [await one_engine(count, n, workdir) for count in (1, 2)]


def lines(results: list[dict[str, Any]]) -> list[str]:
    """The report's table: one row per executor count."""
    n = results[0]["pure"]["executions"]
    out = [
        f"Scale-out (Baton, N={n:,} chains of K={K} submitted at once, on fresh engines that differ "
        "only in their executor processes; one worker process; on this machine's cores a figure, "
        "not a speed-up claim):",
        "",
        "| executor replicas | pure steps/s | CPU ms per step | through a worker: steps/s | CPU ms per step |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        p, w = r["pure"], r["worker"]
        out.append(
            f"| {r['executors']} | {p['steps_per_s']:,.0f} | {p['cpu_ms_per_step']:.2f} | "
            f"{w['steps_per_s']:,.0f} | {w['cpu_ms_per_step']:.2f} |"
        )
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="executions per workload")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    workdir = Path(tempfile.mkdtemp(prefix="baton-scaleout-"))
    workdir.chmod(0o755)
    from baton_common.embedded import PostgresServer

    pg = PostgresServer(workdir / "pg").start()
    os.environ["DATABASE_URL"] = pg.url
    try:
        results = asyncio.run(measure(args.n, workdir))
    finally:
        pg.stop()
    print(json.dumps(results, indent=2) if args.json else "\n".join(lines(results)))


if __name__ == "__main__":
    main()
