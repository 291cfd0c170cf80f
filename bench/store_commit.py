"""`PostgresEventStore.commit`: the one-statement path against the library's path, interleaved.

Four shapes: a commit of 1 event + 1 inbox row; the same as an executor's chain step writes it
(plus the next step's place in the workspace's slot and the release of the last one's); a step
with fan-out (12 events of one aggregate + 1 inbox row); a saturation batch (500 events + 500
inbox rows). Each commit is timed from the call to its return (durable: the server's commit
settings are left alone), in a private schema dropped afterwards. The two paths alternate, so
load on the machine falls on both.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.store_commit
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
from baton_common.contracts import ExecutionRequested
from baton_common.store import Commit, LockRow, PostgresEventStore, _Recorded

# events, inbox rows, slot places (put + release), commits
SHAPES = [(1, 1, 0, 400), (1, 1, 1, 400), (12, 1, 0, 400), (500, 500, 0, 100)]


def _commit(events: int, inbox: int, places: int) -> Commit:
    ids = [uuid.uuid4()] * events if events < 100 else [uuid.uuid4() for _ in range(events)]
    versions = range(1, events + 1) if events < 100 else [1] * events
    return Commit(
        events=[
            ExecutionRequested(aggregate_id=a, aggregate_version=v, request="hello world " * 4)
            for a, v in zip(ids, versions, strict=True)
        ],
        handled=[("bench", uuid.uuid4().hex) for _ in range(inbox)],
        locks_put=[_place(uuid.uuid4().hex) for _ in range(places)],
        locks_release=[uuid.uuid4().hex for _ in range(places)],
    )


def _place(holder: str) -> LockRow:
    lease = datetime.now(UTC) + timedelta(minutes=5)
    return LockRow("slot:steps:bench", holder, "slot", time.time_ns(), True, 1000, lease)


def _quantile(times: list[float], q: float) -> float:
    return sorted(times)[int(q * (len(times) - 1))]


def run(url: str, scale: float = 1.0) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = PostgresEventStore(url, "bench", schema=schema)
    paths: dict[str, Callable[[Commit], object]] = {
        "library": lambda c: _Recorded.commit(store, c),
        "one statement": store.commit,
    }
    try:
        for events, inbox, places, n in SHAPES:
            n = max(10, int(n * scale))
            times: dict[str, list[float]] = {name: [] for name in paths}
            for i in range(n + 10):  # the first 10 warm up
                for name, commit in paths.items():
                    c = _commit(events, inbox, places)
                    start = time.perf_counter()
                    commit(c)
                    if i >= 10:
                        times[name].append((time.perf_counter() - start) * 1000)
            for name, ts in times.items():
                print(
                    f"{events:3d} events + {inbox:3d} inbox rows + {places} places, {name:13s}:"
                    f" p50 {_quantile(ts, 0.5):7.3f} ms  p90 {_quantile(ts, 0.9):7.3f} ms  (n={n})"
                )
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="commits per shape, x")
    args = parser.parse_args()
    run(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"), args.scale)
