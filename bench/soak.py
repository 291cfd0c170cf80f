"""`make bench-soak`: a steady load for ten minutes; does latency, memory or disk drift?

The engine runs as processes on a private PostgreSQL, like `make bench`. A steady stream of work
arrives (a K=5 chain of pure steps and a K=5 chain through the workers, alternating, at a fixed
rate), and every window the soak records the latency of what ended in it, the resident memory
of every service, and the disk both servers use: PostgreSQL (every table and index of the
engine's schema) and JetStream (the event stream and its dead letters). The engine runs with a
short retention (``--retention-minutes``: ``BATON_RETENTION_DAYS`` for finished executions, and
the stream's age limit ``BATON_STREAM_MAX_AGE``), so after the first retention period the disk
should stay flat: the projector's retention sweep (``BATON_ARCHIVE_INTERVAL``) and every
service's inbox pruning (``BATON_INBOX_PRUNE_EVERY``, ``BATON_INBOX_KEEP``) run several times per
period. The report compares the first window with the last: a leak, a growing queue or
a growing disk shows as drift, and gives bytes per execution and per step. Figures go to
docs/benchmarks.md between their own markers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from baton_common.embedded import PostgresServer, free_port

from bench import baton_bench as bb
from bench import services_bench as sb
from bench.run import ROOT, fmt

WINDOW_S = 30.0
STEPS = 5  # per execution (K=5 chains)
MIB = 1024 * 1024
NONE = (0, 0, 0, 0)  # a table not there (yet): bytes, live rows, dead rows, vacuums


def rss_mb(pid: int) -> float:
    """Resident memory of one process (MB); 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def soak(running: bb.Running, minutes: float, rate: float) -> list[dict[str, Any]]:
    """Submit ``rate`` executions per second for ``minutes``; one record per window."""
    plans = [bb.chain_plan(5), sb.worker_chain_plan(5)]
    windows: list[dict[str, Any]] = []
    latencies: list[float] = []
    pending: set[asyncio.Task[None]] = set()
    end = time.monotonic() + minutes * 60
    next_window = time.monotonic() + WINDOW_S
    sent = 0

    async def one(client: aiohttp.ClientSession, plan: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        _, fut = await bb.submit(client, running, plan)
        latencies.append((await asyncio.wait_for(fut, 120) - t0) * 1000)

    async with bb.client_for(running) as client:
        start = time.monotonic()
        while time.monotonic() < end:
            due = start + sent / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            task = asyncio.create_task(one(client, plans[sent % 2]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
            if time.monotonic() >= next_window:
                next_window += WINDOW_S
                windows.append(await _window(running, latencies, sent))
                latencies = []
        await asyncio.gather(*pending, return_exceptions=True)
    windows.append(await _window(running, latencies, sent))
    return windows


async def _window(running: bb.Running, latencies: list[float], sent: int) -> dict[str, Any]:
    pids = {name: child.proc.pid for name, child in running.engine.children.items()}
    return {
        "sent": sent,
        "ended": len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": bb._pct(latencies, 99) if latencies else None,
        "rss_mb": {name: rss_mb(pid) for name, pid in pids.items()},
        **await asyncio.to_thread(postgres_bytes),
        "js_bytes": await jetstream_bytes(running),
    }


def postgres_bytes() -> dict[str, Any]:
    """Every table of the engine's schema with its indexes and TOAST (what the disk holds): the
    total (``pg_bytes``) and by table with its rows (``pg_tables``: name -> (bytes, live rows,
    dead rows, vacuums so far))."""
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid), s.n_live_tup, s.n_dead_tup,"
            " s.vacuum_count + s.autovacuum_count FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'm')",
            (os.environ["BATON_DB_SCHEMA"],),
        ).fetchall()
    tables = {name: tuple(int(n or 0) for n in rest) for name, *rest in rows}
    return {"pg_bytes": sum(t[0] for t in tables.values()), "pg_tables": tables}


async def jetstream_bytes(running: bb.Running) -> int:
    """The event stream and the dead-letter stream, as the server counts them."""
    js = running.nc.jetstream()
    total = 0
    for stream in ("BATON_EVENTS", "BATON_EVENTS_DLQ"):
        try:
            total += (await js.stream_info(stream)).state.bytes
        except Exception:  # not there (yet): nothing on disk
            pass
    return total


def trend(points: list[float]) -> float:
    """The least-squares slope of ``points`` (one per window): growth per window."""
    n = len(points)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, statistics.fmean(points)
    return sum((i - mx) * (y - my) for i, y in enumerate(points)) / sum(
        (i - mx) ** 2 for i in range(n)
    )


def disk_lines(
    windows: list[dict[str, Any]], retention_min: float, longest_min: float | None = None
) -> list[str]:
    """Disk per window, and what each execution (and step) added while nothing expired yet."""
    lines = [
        "",
        f"Disk, retention {retention_min:g} min (finished executions and the stream's age):",
        "",
        "| window | executions sent | PostgreSQL | JetStream |",
        "|---|---|---|---|",
    ]
    for i, w in enumerate(windows):
        lines.append(
            f"| {i + 1} | {w['sent']:,} | {w['pg_bytes'] / MIB:,.1f} MiB "
            f"| {w['js_bytes'] / MIB:,.1f} MiB |"
        )
    # Growth per execution over the windows before anything could expire.
    young = [w for i, w in enumerate(windows) if (i + 1) * WINDOW_S <= retention_min * 60]
    first, last = windows[0], (young or windows)[-1]
    made = last["sent"] - first["sent"]
    if made > 0:
        pg, js = (last[k] - first[k] for k in ("pg_bytes", "js_bytes"))
        lines += [
            "",
            f"Before the first retention period ended ({made:,} executions): PostgreSQL "
            f"{pg / made / 1024:,.1f} KiB per execution ({pg / made / STEPS / 1024:,.1f} KiB per "
            f"step), JetStream {js / made / 1024:,.1f} KiB per execution "
            f"({js / made / STEPS / 1024:,.1f} KiB per step).",
        ]
    tail = windows[len(young) :] if young and len(young) < len(windows) else []
    if len(tail) >= 2:
        pg, js = (tail[-1][k] - tail[0][k] for k in ("pg_bytes", "js_bytes"))
        made = tail[-1]["sent"] - tail[0]["sent"]
        per = f" ({pg / made / 1024:+,.2f} KiB per execution sent meanwhile)" if made > 0 else ""
        lines.append(
            f"After it, from window {len(young) + 1} to the last: PostgreSQL {pg / MIB:+,.1f} MiB"
            f"{per}, JetStream {js / MIB:+,.1f} MiB. Flat is the goal: what an archived execution "
            "keeps (its summary row, its archive record, its tool attempts and audit row) is all "
            "that should still grow."
        )
    longest = max(longest_min or retention_min, retention_min)
    settled = [w for i, w in enumerate(windows) if (i + 1) * WINDOW_S > longest * 60]
    settled = (
        settled[:-1] if len(settled) > 2 and settled[-1]["sent"] == settled[-2]["sent"] else settled
    )
    if len(settled) >= 3:
        pg = [w["pg_bytes"] for w in settled]
        steps = [b - a for a, b in itertools.pairwise(pg)]
        slope, made = trend(pg), settled[-1]["sent"] - settled[0]["sent"]
        per_window = made / (len(settled) - 1)
        start = windows.index(settled[0]) + 1
        lines.append(
            f"After the longest retention period ({longest:g} min: executions, summaries, audit), "
            f"windows {start} to {start + len(settled) - 1}: PostgreSQL "
            f"{(pg[-1] - pg[0]) / MIB:+,.1f} MiB; trend (least squares) "
            f"{slope / 1024:+,.0f} KiB per window = {slope / per_window:+,.0f} bytes per "
            f"execution sent; window-to-window changes {min(steps) / 1024:+,.0f} … "
            f"{max(steps) / 1024:+,.0f} KiB. JetStream "
            f"{(settled[-1]['js_bytes'] - settled[0]['js_bytes']) / MIB:+,.1f} MiB."
        )
    settled_at = windows.index(settled[0]) if len(settled) >= 3 else None
    return lines + table_lines(windows, len(young), settled_at)


def table_lines(windows: list[dict[str, Any]], young: int, settled: int | None = None) -> list[str]:
    """Where PostgreSQL's bytes go: each table's size (with its indexes) and live rows after the
    first window, at the end of the first retention period, at the end of the longest one (when
    it ended within the soak), and at the end; the tables that changed by at least 64 KiB,
    largest first."""
    longest = windows[settled - 1] if settled else windows[max(young, 1) - 1]
    marks = [windows[0], windows[max(young, 1) - 1], longest, windows[-1]]
    names = sorted(
        set().union(*(w["pg_tables"] for w in marks)),
        key=lambda n: -max(w["pg_tables"].get(n, NONE)[0] for w in marks),
    )

    def cell(w: dict[str, Any], name: str) -> str:
        size, live, dead, vacuums = w["pg_tables"].get(name, NONE)
        return f"{size / MIB:,.2f} MiB ({live:,} / {dead:,}; {vacuums})"

    lines = [
        "",
        "PostgreSQL by table (with its indexes and TOAST; live rows / dead rows; vacuums so far), "
        "after window 1, at the end "
        f"of the first retention period (window {max(young, 1)}), at the end of the longest "
        f"(window {settled or max(young, 1)}) and at the end:",
        "",
        "| table | window 1 | end of the first period | end of the longest | end "
        "| growth after the longest |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        sizes = [w["pg_tables"].get(name, NONE)[0] for w in marks]
        if max(sizes) - min(sizes) < 64 * 1024:
            continue
        lines.append(
            f"| {name} | {' | '.join(cell(m, name) for m in marks)} "
            f"| {(sizes[3] - sizes[2]) / 1024:+,.0f} KiB |"
        )
    return lines


def report(
    windows: list[dict[str, Any]],
    minutes: float,
    rate: float,
    retention_min: float,
    longest_min: float | None = None,
) -> str:
    first, last = windows[0], windows[-2] if len(windows) > 2 else windows[-1]
    total_first = sum(first["rss_mb"].values())
    total_last = sum(last["rss_mb"].values())
    lines = [
        f"Soak: {minutes:g} min at {rate:g} executions/s (K=5 chains, inline and through the "
        f"workers, alternating), {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores.",
        "",
        "| window | ended | p50 | p99 | memory of all services |",
        "|---|---|---|---|---|",
    ]
    for i, w in enumerate(windows):
        lines.append(
            f"| {i + 1} | {w['ended']} | {fmt(w['p50_ms'], '.1f')} ms | {fmt(w['p99_ms'], '.1f')} ms "
            f"| {sum(w['rss_mb'].values()):,.0f} MB |"
        )
    drift = (
        (last["p50_ms"] / first["p50_ms"] - 1) * 100 if first["p50_ms"] and last["p50_ms"] else None
    )
    growth = {n: last["rss_mb"].get(n, 0) - v for n, v in first["rss_mb"].items()}
    worst = max(growth, key=lambda n: growth[n]) if growth else "-"
    lines += [
        "",
        f"p50 drift from the first full window to the last: {fmt(drift, '+.0f')}%. Memory: "
        f"{total_first:,.0f} → {total_last:,.0f} MB; most growth in {worst} "
        f"({growth.get(worst, 0):+.1f} MB).",
    ]
    return "\n".join(lines + disk_lines(windows, retention_min, longest_min))


def write_doc(text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    begin, end = "<!-- soak:begin -->", "<!-- soak:end -->"
    body = doc.read_text()
    if begin not in body:
        body += f"\n## Soak (`make bench-soak`)\n\n{begin}\n{end}\n"
    head, rest = body.split(begin, 1)
    doc.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


async def main_async(minutes: float, rate: float, workdir: Path) -> list[dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    data = workdir / f"baton-{tag}"
    data.mkdir(parents=True)
    os.environ["BATON_DB_SCHEMA"] = f"soak_{tag}"
    running = await bb.start(data, free_port())
    try:
        return await soak(running, minutes, rate)
    finally:
        await bb.stop(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="executions per second")
    parser.add_argument(
        "--retention-minutes",
        type=float,
        default=3.0,
        help="how long finished executions and the stream's messages are kept",
    )
    parser.add_argument(
        "--summary-minutes",
        type=float,
        default=0.0,
        help="how long archived executions' summary rows are kept before they are folded into "
        "per-day counts (BATON_SUMMARY_RETENTION_DAYS; 0: the installation's default, a year)",
    )
    parser.add_argument(
        "--audit-minutes",
        type=float,
        default=0.0,
        help="how long audit rows are kept before they are archived and removed "
        "(BATON_AUDIT_RETENTION_DAYS; 0: the installation's default, a year)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.retention_minutes <= 0:
        parser.error("--minutes, --rate and --retention-minutes must be positive")
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    os.environ["BATON_RETENTION_DAYS"] = str(args.retention_minutes / (24 * 60))
    os.environ["BATON_STREAM_MAX_AGE"] = str(args.retention_minutes * 60)
    if args.summary_minutes > 0:
        os.environ["BATON_SUMMARY_RETENTION_DAYS"] = str(args.summary_minutes / (24 * 60))
    if args.audit_minutes > 0:
        os.environ["BATON_AUDIT_RETENTION_DAYS"] = str(args.audit_minutes / (24 * 60))
    longest = max(args.retention_minutes, args.summary_minutes, args.audit_minutes)
    # The sweeps run within the soak: retention's a few times per period (in its batches of
    # BATON_ARCHIVE_BATCH, one transaction each); inbox rows kept one period (never less than the
    # floor service.inbox_keep holds them to: the duplicate window, here the stream's age, plus
    # two redelivery waits).
    period_s = args.retention_minutes * 60
    os.environ["BATON_ARCHIVE_INTERVAL"] = str(max(5.0, period_s / 6))
    os.environ["BATON_INBOX_KEEP"] = str(period_s)
    os.environ["BATON_INBOX_PRUNE_EVERY"] = str(max(5.0, period_s / 6))
    workdir = Path(tempfile.mkdtemp(prefix="baton-soak-"))
    pg = PostgresServer(workdir / "pg").start()
    os.environ["DATABASE_URL"] = pg.url
    try:
        windows = asyncio.run(main_async(args.minutes, args.rate, workdir))
    finally:
        pg.stop()
    text = report(windows, args.minutes, args.rate, args.retention_minutes, longest)
    print(text, flush=True)
    if not args.no_write:
        write_doc(text)
        print("written to docs/benchmarks.md")


if __name__ == "__main__":
    main()
