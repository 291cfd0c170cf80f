"""Shared plumbing for the peer benchmarks (stdlib only; psycopg imported lazily).

Every peer script measures the same three workloads the same way, so the CLI, the
CPU accounting, the throw-away database and the one-line JSON result live here.
Run the scripts as files (``python bench/peers/dbos_bench.py ...``) with a venv
that has only that peer installed: this module needs nothing from Baton.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO
from urllib.parse import quote

WORKLOADS = ("chain", "fanout", "saturation")
_TICK = os.sysconf("SC_CLK_TCK")


def parse_args(
    peer: str,
    variants: tuple[str, ...],
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=f"{peer} side-by-side benchmark")
    p.add_argument("--workload", choices=WORKLOADS, required=True)
    p.add_argument("--k", type=int, default=5, help="steps per chain / parallel branches")
    p.add_argument("--n", type=int, default=20, help="executions")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server to create a throw-away database on (ignored by temporal); "
        "default $DATABASE_URL",
    )
    p.add_argument("--variant", choices=variants, default=variants[0])
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed executions first, so connection/registration costs are not timed",
    )
    if extra:
        extra(p)
    return p.parse_args()


_RESULT_OUT: TextIO = sys.stdout


def reserve_stdout() -> None:
    """Keep stdout for the one JSON line: fd 1 now points at stderr, so banners that
    engines or their child processes (the Temporal dev server) print cannot mix in."""
    global _RESULT_OUT
    sys.stdout.flush()
    _RESULT_OUT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """{pid: (parent pid, command name, utime+stime seconds)} of every live process."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
                fields = rest.split()
                cpu = (int(fields[11]) + int(fields[12])) / _TICK
                table[int(d)] = (int(fields[1]), head.split("(", 1)[1], cpu)
            except (OSError, IndexError, ValueError):
                pass  # the process ended while we looked
    return table


def cpu_now(with_postgres: bool = False) -> tuple[float, float]:
    """(CPU s of this process + its children, reaped or live; CPU s of all postgres processes).

    Live descendants (the Temporal dev server our SDK spawned) are read from /proc since
    RUSAGE_CHILDREN only counts children once reaped. The PostgreSQL server is not our
    child, so its CPU is reported apart (db_cpu_s); it is machine-wide, so anything else
    using that server meanwhile counts too, and backends that exit mid-run are missed.
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime
    table = _proc_table()
    todo = [os.getpid()]
    while todo:
        parent = todo.pop()
        kids = [pid for pid, (ppid, _, _) in table.items() if ppid == parent]
        own += sum(table[k][2] for k in kids)
        todo += kids
    db = sum(cpu for _, comm, cpu in table.values() if comm == "postgres") if with_postgres else 0.0
    return own, db


@contextlib.contextmanager
def fresh_database(base_url: str, peer: str) -> Iterator[str]:
    """CREATE a database bench_<peer>_<random> next to ``base_url``; DROP it afterwards.

    A fresh database per run keeps runs from seeing each other's rows/queues and
    keeps table sizes (and so index depth) identical from run to run.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"bench_{peer}_{secrets.token_hex(4)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(base_url)
    params["dbname"] = name
    user, host = quote(str(params.get("user", "postgres"))), params.get("host", "127.0.0.1")
    port = params.get("port", 5432)
    pw = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    url = f"postgresql://{user}{pw}@{host}:{port}/{name}"  # a URL: DBOS/SQLAlchemy want one
    try:
        yield url
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Timer:
    """Wall clock + CPU over the timed part of a run only (setup and warm-up excluded)."""

    def __init__(self, with_postgres: bool = False) -> None:
        self.with_postgres = with_postgres

    def __enter__(self) -> Timer:
        self.cpu0, self.db0 = cpu_now(self.with_postgres)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        cpu1, db1 = cpu_now(self.with_postgres)
        self.cpu_s, self.db_cpu_s = cpu1 - self.cpu0, db1 - self.db0


def steps_per_execution(workload: str, k: int) -> int:
    return k + 1 if workload == "fanout" else k


def emit(
    peer: str,
    variant: str,
    args: argparse.Namespace,
    timer: Timer,
    latencies_ms: list[float],
    **extra: object,
) -> None:
    """Print the single JSON result line (the only thing written to stdout)."""
    steps = steps_per_execution(args.workload, args.k) * args.n
    out = {
        "peer": peer,
        "variant": variant,
        "workload": args.workload,
        "k": args.k,
        "n": args.n,
        "executions": args.n,
        "steps": steps,
        "seconds": round(timer.seconds, 4),
        "steps_per_s": round(steps / timer.seconds, 2),
        "executions_per_s": round(args.n / timer.seconds, 2),
        "latencies_ms": [round(x, 3) for x in latencies_ms],
        "cpu_s": round(timer.cpu_s, 3),
    }
    if timer.with_postgres:
        out["db_cpu_s"] = round(timer.db_cpu_s, 3)
    out.update(extra)
    print(json.dumps(out), file=_RESULT_OUT, flush=True)


def scratch_dir() -> str:
    """Where on-disk engine files go: .bench/ under the repo (same disk as PostgreSQL
    here), not /tmp, which may be a tmpfs on other machines and would fake durability."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".bench")
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)


def query_one(url: str, sql: str) -> str:
    """First column of the first row, e.g. a COUNT that shows the engine really wrote
    rows, or a SHOW of the server's durability settings."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return str(row[0]) if row else ""
