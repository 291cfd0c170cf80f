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


def postmaster_of(url: str) -> int:
    """The pid of the PostgreSQL server behind ``url``: the parent of a backend of ours."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = int(row[0]) if row else 0
        return _proc_table()[backend][0]


def _reaped_cpu(pid: int) -> float:
    """CPU s of ``pid``'s children that ended and were reaped by it (cutime + cstime): the
    backends a PostgreSQL server closed, whose time /proc no longer shows anywhere else."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[13]) + int(fields[14])) / _TICK


def tree_cpu(table: dict[int, tuple[int, str, float]], root: int) -> float:
    """CPU s of every live descendant of ``root`` (``root`` itself not included)."""
    total, todo = 0.0, [root]
    while todo:
        parent = todo.pop()
        kids = [pid for pid, (ppid, _, _) in table.items() if ppid == parent]
        total += sum(table[k][2] for k in kids)
        todo += kids
    return total


def cpu_now(postmaster: int | None = None, include_self: bool = True) -> tuple[float, float]:
    """(CPU s of this process (``include_self``) + its children, reaped or live; CPU s of the
    PostgreSQL server whose postmaster is ``postmaster``: it, its live backends and the ones it
    reaped).

    Live descendants (the Temporal dev server our SDK spawned, Restate's server) are read from
    /proc since RUSAGE_CHILDREN only counts children once reaped. The PostgreSQL server is not
    our child, so its CPU is reported apart (db_cpu_s), and only that server's: the machine's
    other PostgreSQL servers (other benches, the system's) are not counted. Anything else using
    that server meanwhile counts too.
    """
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = ch.ru_utime + ch.ru_stime + (me.ru_utime + me.ru_stime if include_self else 0.0)
    table = _proc_table()
    own += tree_cpu(table, os.getpid())
    db = 0.0
    if postmaster is not None and postmaster in table:
        db = table[postmaster][2] + tree_cpu(table, postmaster) + _reaped_cpu(postmaster)
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
    """Wall clock + CPU over the timed part of a run only (setup and warm-up excluded).

    ``postgres_url``: also the CPU of the PostgreSQL server behind it (the peer's store).
    ``include_self=False``: leave out this process, when it is only the load generator (the
    Restate client), as Baton's figures leave out the bench that drives it."""

    def __init__(self, postgres_url: str | None = None, include_self: bool = True) -> None:
        self.postmaster = postmaster_of(postgres_url) if postgres_url else None
        self.with_postgres = self.postmaster is not None
        self.include_self = include_self

    def __enter__(self) -> Timer:
        self.cpu0, self.db0 = cpu_now(self.postmaster, self.include_self)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        cpu1, db1 = cpu_now(self.postmaster, self.include_self)
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
