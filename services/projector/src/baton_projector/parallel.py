"""A rebuild spread over processes: each folds a share of the executions into shadow tables.

One process folds at most one core's worth (the GIL): decoding an event with pydantic, folding it
into each view and encoding its rows cost the rebuild's process 100 to 119 µs an event, which
held it near 8,000 to 10,000 events/s on a core of its own. Here each of ``n`` worker processes
folds the events of the executions whose id falls to it (``part_of``), in the order the one
process folds them (the stream's, then the stores' merged in time order), with the same view
code, on a session of its own, into a shadow of the read models (``<schema>_rebuild``) that
nobody reads. The events of no execution (workspaces, keys, saved plans' versions, schedules)
all go to worker 0, in their order, as the one process would fold them. The parent reads the
stream and the stores once and hands each event's JSON to its worker (finding the execution in
the JSON costs about a tenth of what decoding and folding the event cost the worker).

The history rows (``execution_events.seq``: the live list reads across executions in its order,
a restore from the archive puts an execution's rows back at their numbers) are numbered by the
parent, as it hands the events out, in the order the one process folds them: the number the one
process's sequence would give each, written by whichever worker folds it (``Pool._number``).

Each worker decodes with the registry, as the one process does: the events are checked against
the contract here too, not trusted because they were checked when they were appended (an event
of an older version is upcast, one that does not decode is skipped, as live).

Where they write, and how their work becomes the views: ``shadows``.
"""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import os
import queue
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
import psycopg
from baton_common import contracts as c
from baton_common.catchup import Runs, gaps, stores, subject_filter, subject_matcher
from baton_common.contracts import registry
from baton_common.events import Event, EventDecodeError
from psycopg.sql import SQL, Identifier

from baton_projector.access import AccessProjection
from baton_projector.agents import AgentProjection
from baton_projector.approvals import ApprovalProjection
from baton_projector.context import WorkspaceContextProjection
from baton_projector.handlers import SUBJECTS
from baton_projector.logs import LogProjection
from baton_projector.metrics import MetricsProjection
from baton_projector.observed import observed_projections
from baton_projector.plans import PlanProjection
from baton_projector.projections import ExecutionProjection
from baton_projector.shadows import shadow

REBUILD_LOCK = "SELECT pg_advisory_lock(77032, hashtext(%s))"  # a schema's rebuilds take turns
# Forked where the system can (a spawned worker spends a second of CPU importing the views
# again). The parent's other threads are idle then, its sessions (bus, PostgreSQL) untouched by
# the worker, which opens its own and ends with ``os._exit`` (nothing of the parent's closed).
START = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
CHUNK = 10_000  # events a read of a store, and a fold of a worker (as the one process's)
SEND = 1_000  # events handed to a worker at a time


def views_of(
    schema: str, own: str | None = None
) -> tuple[ExecutionProjection, AccessProjection, ApprovalProjection, list[Any]]:
    """Every read model kept in ``schema``: the three the consumer names, then the others. A
    rebuild's worker writes the tables of ``OWN`` into a schema of its ``own``."""
    if own is None:
        extra = [*observed_projections(schema)]
    else:
        extra = [LogProjection(schema), MetricsProjection(schema, sums=own)]
    extra = [
        PlanProjection(schema),
        *extra,
        AgentProjection(schema),
        WorkspaceContextProjection(own or schema),
    ]
    return (
        ExecutionProjection(schema),
        AccessProjection(own or schema),
        ApprovalProjection(schema),
        extra,
    )


def default_workers() -> int:
    """``BATON_REBUILD_WORKERS``: ``auto`` unless set, a worker per core, up to four (past
    that, PostgreSQL's share of each event is the bound); 1, the one-process fold."""
    wanted = os.environ.get("BATON_REBUILD_WORKERS", "auto").strip().lower()
    if wanted == "auto":
        return max(1, min(4, os.cpu_count() or 1))
    try:
        return max(1, int(wanted))
    except ValueError:
        raise ValueError(
            f"BATON_REBUILD_WORKERS={wanted!r}: a number of processes (1: one), or 'auto'"
        ) from None


# Routing ----------------------------------------------------------------------------------------

_PARKED = c.EventParked.TYPE


def part_of(raw: bytes, parts: int) -> int:
    """Which worker folds the event ``raw`` (its JSON): its execution's (the one
    ``views.execution_id_of`` gives, read from the JSON without making the typed event), or
    worker 0 for an event of no execution, or one that does not decode (it skips it)."""
    return route(raw, parts)[0]


def route(raw: bytes, parts: int) -> tuple[int, bool]:
    """``part_of``, and whether the event makes a row of its execution's history (it has an
    execution, as ``views.execution_id_of`` finds it)."""
    try:
        data = orjson.loads(raw)
        if int(data.get("schema_version") or 1) != 1:  # an old version: its fields as now
            data = registry().upcast(data)
    except (ValueError, TypeError, AttributeError, EventDecodeError):
        return 0, False
    return _route(data, parts)


def _route(data: dict[str, Any], parts: int) -> tuple[int, bool]:
    try:
        kind = str(data.get("type") or "")
        execution = _execution_of(data, kind)
        if execution:
            return UUID(execution).int % parts, True
        if kind.startswith("log."):  # a step's log lines: only their own rows (spread, not ordered)
            return UUID(data.get("aggregate_id")).int % parts, False
        return 0, False
    except (ValueError, TypeError, AttributeError):
        return 0, False


def _execution_of(data: dict[str, Any], kind: str) -> str | None:
    """``views.execution_id_of``, from the JSON."""
    if kind.startswith(("execution.", "plan.")):
        return data.get("execution_id") or data.get("aggregate_id")
    if kind.startswith(("approval.", "context.")):
        return data.get("execution_id")
    if kind == _PARKED:
        return data.get("correlation_id")
    return None


# The workers -------------------------------------------------------------------------------------


class Pool:
    """``n`` worker processes, each folding its share into its shadow schema. The parent gives
    them the stream's messages (``stream``), then has them read the stores (``stores``)."""

    def __init__(self, url: str, schema: str, root: str, n: int) -> None:
        ctx: Any = multiprocessing.get_context(START)
        self.n = n
        self.numbered = 0  # history rows numbered so far, in the stream's order
        self.wanted = subject_filter(root, SUBJECTS)
        self.inboxes = [ctx.Queue(maxsize=4) for _ in range(n)]
        self.results: Any = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=work,
                args=(url, schema, root, i, n, self.inboxes[i], self.results),
                name=f"rebuild-{i}",
                daemon=True,
            )
            for i in range(n)
        ]
        for p in self.procs:
            p.start()

    def stream(self, messages: Sequence[tuple[str | None, bytes]]) -> None:
        """The stream's messages of a fetch, in order, each to its worker with the number of
        its history row (0: it makes none)."""
        shares: list[list[tuple[str | None, bytes, int]]] = [[] for _ in range(self.n)]
        for hint, data in messages:
            i, row = route(data, self.n)
            shares[i].append((hint, data, self._number(row)))
        for i, share in enumerate(shares):
            if share:
                self._put(i, ("stream", share))

    def stores(
        self, conn: psycopg.Connection[Any], schema: str, delivered: Runs, up_to: dict[str, int]
    ) -> list[dict[str, int]]:
        """Every store's events up to ``up_to`` (less what the stream ``delivered``), read here
        once, in the order the one process folds them, each to its worker (``part_of``), which
        decodes it; then what each did: ``stream`` (events of the stream decoded), ``stores``."""
        shares: list[list[tuple[bytes, int]]] = [[] for _ in range(self.n)]
        for i, row, raw in _read(conn, schema, delivered, up_to, self.n, self.wanted):
            shares[i].append((raw, self._number(row)))
            if len(shares[i]) == SEND:
                self._put(i, ("rows", shares[i]))
                shares[i] = []
        for i, share in enumerate(shares):
            self._put(i, ("rows", share))
            self._put(i, ("end",))
        done: dict[int, dict[str, int]] = {}
        while len(done) < self.n:
            try:
                kind, i, what = self.results.get(timeout=1.0)
            except queue.Empty:
                self._check()
                continue
            if kind == "error":
                raise RuntimeError(f"rebuild worker {i} failed:\n{what}")
            done[i] = what
        return [done[i] for i in range(self.n)]

    def _number(self, row: bool) -> int:
        """The next history row's number, as the one process's sequence would give it: the
        events are numbered here, in the order the one process folds them, so the workers
        write each execution's rows at the positions the stream gives them (not in the
        order the workers happen to write them)."""
        if not row:
            return 0
        self.numbered += 1
        return self.numbered

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.kill()  # only after an error: a finished worker has ended
            p.join()
        for q in [*self.inboxes, self.results]:
            q.close()
            q.cancel_join_thread()

    def _put(self, i: int, item: Any) -> None:
        while True:
            try:
                self.inboxes[i].put(item, timeout=1.0)
                return
            except queue.Full:
                self._check()

    def _check(self) -> None:
        for i, p in enumerate(self.procs):
            if not p.is_alive() and p.exitcode != 0:
                try:  # it may have said why before it ended
                    _, j, what = self.results.get_nowait()
                except queue.Empty:
                    raise RuntimeError(f"rebuild worker {i} died ({p.exitcode})") from None
                raise RuntimeError(f"rebuild worker {j} failed:\n{what}")


def work(url: str, schema: str, root: str, i: int, n: int, inbox: Any, results: Any) -> None:
    """Worker ``i`` of ``n``: its share of what the parent sends, folded into the shadow (and
    into its own schema, the tables of ``OWN``), each history row at the number the parent
    gave it; then what it did, or why it failed, told."""
    quiet_collector()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            projection, access, approvals, extra = views_of(shadow(schema), shadow(schema, i))
            views = [projection, access, approvals, *extra]
            numbers = projection.numbers = {}  # each event's history row number, by id
            counts = {"stream": 0, "stores": 0}
            wanted = subject_matcher(root, SUBJECTS)
            chunk: list[Event] = []  # the stores' events, folded CHUNK at a time
            while (item := inbox.get())[0] != "end":
                if item[0] == "stream":
                    events = _decoded(item[1], numbers)
                    counts["stream"] += len(events)
                    _apply(conn, views, events, numbers)
                    continue
                chunk += _decoded([(None, raw, number) for raw, number in item[1]], numbers)
                if len(chunk) >= CHUNK:
                    counts["stores"] += len(chunk)
                    _apply(conn, views, [e for e in chunk if wanted(e)], numbers)
                    chunk = []
            counts["stores"] += len(chunk)
            _apply(conn, views, [e for e in chunk if wanted(e)], numbers)
            results.put(("done", i, counts))
    except BaseException:
        results.put(("error", i, traceback.format_exc()))
        raise SystemExit(1) from None


def quiet_collector() -> None:
    """The cyclic collector kept off what the worker does not make. Forked, it holds a copy of
    the parent's heap (every module, the contracts, the views' code), which each full pass of
    the collector walked and wrote to (copying its pages): a third of a worker's CPU. Frozen,
    the passes skip it; and the fold's young objects, which hold few cycles, are looked at
    every 20,000 allocations rather than every 700."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _decoded(
    messages: Sequence[tuple[str | None, bytes, int]], numbers: dict[UUID, int]
) -> list[Event]:
    """The events that decode; each one's history row number noted in ``numbers``."""
    reg, events = registry(), []
    for hint, data, number in messages:
        try:
            event = reg.decode(data, hint)
        except EventDecodeError:
            continue  # parked when it was live: a view never saw it either (a gap, closed later)
        events.append(event)
        if number:  # an event read twice is written where it came first (the later one skipped)
            numbers.setdefault(event.event_id, number)
    return events


def _apply(
    conn: psycopg.Connection[Any], views: list[Any], events: list[Event], numbers: dict[UUID, int]
) -> None:
    with conn.transaction():
        for view in views:
            view.apply_batch(conn, events)
    numbers.clear()  # written: the next events bring theirs


def _read(
    conn: psycopg.Connection[Any],
    schema: str,
    delivered: Runs,
    up_to: dict[str, int],
    n: int,
    wanted: Callable[[str, str], bool],
) -> Iterator[tuple[int, bool, bytes]]:
    """Each event of every store up to ``up_to``, less what the stream delivered, with its
    worker and whether it makes a history row (one the views are ``wanted`` to fold): the
    stores merged in time order, as ``catchup.read_after`` gives them to the one process.
    Only the JSON is read here (what a worker needs to know is in it), not the typed event:
    that is the workers' work."""
    logs = []
    for store in stores(conn, schema):
        end = up_to.get(store, 0)
        ranges = [(a, min(b, end)) for a, b in gaps(delivered.get(store, ()), 0) if a < end]
        logs.append(_log(conn, schema, store, ranges, n, wanted))
    for _, i, row, raw in heapq.merge(*logs, key=lambda entry: entry[0]):
        yield i, row, raw


def _log(
    conn: psycopg.Connection[Any],
    schema: str,
    store: str,
    ranges: Sequence[tuple[int, int]],
    n: int,
    wanted: Callable[[str, str], bool],
) -> Iterator[tuple[datetime, int, bool, bytes]]:
    query = SQL(
        "SELECT notification_id, state FROM {}.{} WHERE notification_id > %s"
        " AND notification_id <= %s ORDER BY notification_id LIMIT %s"
    ).format(Identifier(schema), Identifier(f"{store}_events"))
    reg = registry()
    for after, end in ranges:
        low = after
        while True:
            rows = conn.execute(query, (low, end, CHUNK)).fetchall()
            for _, state in rows:
                raw = bytes(state)
                try:
                    data = orjson.loads(raw)
                    if int(data.get("schema_version") or 1) != 1:  # an old version: as now
                        data = reg.upcast(data)
                    when = datetime.fromisoformat(data["occurred_at"])
                    i, row = _route(data, n)
                    row = row and wanted(str(data.get("workspace_id")), str(data["type"]))
                except (ValueError, TypeError, KeyError, AttributeError, EventDecodeError):
                    continue  # it does not decode: parked when it was live, no view had it
                yield when, i, row, raw
            if len(rows) < CHUNK:
                break
            low = int(rows[-1][0])


def positions_of(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """Each store's last position now: what the workers read up to."""
    out = {}
    for store in stores(conn, schema):
        row = conn.execute(
            SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(
                Identifier(schema, f"{store}_events")
            )
        ).fetchone()
        out[store] = int(row[0]) if row else 0
    return out
