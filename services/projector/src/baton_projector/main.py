"""Wiring of the projector process, and the rebuild that ``baton projections rebuild`` runs."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from baton_common.archive import open_archive
from baton_common.archived import resummarise
from baton_common.auditarchive import forget_archived
from baton_common.bus import Bus, source_of
from baton_common.consumer import Puller, stream_sequence
from baton_common.contracts import registry
from baton_common.events import Event, EventDecodeError
from baton_common.leader import Leadership
from baton_common.readmodels import SCHEMA_SQL
from baton_common.retention import RetentionSettings, sweep
from baton_common.service import Runtime, every
from baton_common.settings import Settings
from baton_common.store import run_sync
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import FetchTimeoutError
from psycopg.sql import SQL, Composed, Identifier

from baton_projector import catchup, parallel, shadows
from baton_projector.handlers import SUBJECTS, projector_consumer
from baton_projector.projections import create_tables

log = logging.getLogger(__name__)
# Events per chunk of a rebuild's reading of the stores: larger chunks, fewer statements (an
# attempt's dispatch and outcome, an execution's first and last events, fall in one chunk more
# often), at a few tens of megabytes of decoded events in hand.
STORE_BATCH = 10_000


def open_views(settings: Settings) -> psycopg.Connection[Any]:
    conn = psycopg.connect(settings.database_url, autocommit=True)
    create_tables(conn, settings.db_schema)
    catchup.create_table(conn, settings.db_schema)
    return conn


_views = parallel.views_of  # every read model kept in a schema


async def run_projector(settings: Settings) -> None:
    runtime = await Runtime.open("projector", settings)
    # Views are folds in event order: one projector applies at a time; replicas stand by (ready,
    # so rolling updates proceed) and take over when the leader's session ends.
    leader = Leadership(settings.database_url, f"projector:{settings.db_schema}")
    projection, access, approvals, extra = _views(settings.db_schema)
    runtime.metrics["projection_events_applied_total"] = lambda: float(projection.applied)
    conns = []

    async def lead() -> None:
        await leader.acquire()
        conns.append(await run_sync(open_views, settings))
        await runtime.start_consumer(
            projector_consumer(
                runtime,
                conns[0],
                projection,
                access,
                approvals,
                extra,
                lambda: open_views(settings),
            )
        )
        runtime.spawn(
            sweeper(settings, runtime), "retention"
        )  # the leader sweeps, replicas stand by

    runtime.spawn(lead(), "leadership")
    await runtime.serve_forever()
    for conn in conns:
        conn.close()
    leader.release()


def sweeper(settings: Settings, runtime: Runtime) -> Any:
    """Every ``BATON_ARCHIVE_INTERVAL`` seconds: archive and remove the finished executions past
    their workspace's retention period (``retention.sweep``; ``baton archive run`` sweeps now)."""
    retention = RetentionSettings()
    archive = open_archive(settings.data_dir)
    swept = [0]
    runtime.metrics["executions_archived_total"] = lambda: float(swept[0])

    async def once() -> None:
        done = await run_sync(sweep, settings.database_url, settings.db_schema, archive, retention)
        swept[0] += done.archived
        if done.archived or done.failed or done.audit:
            log.info(
                "retention: %d archived, %d audit rows archived, %d failed",
                done.archived,
                done.audit,
                len(done.failed),
            )

    return every(retention.interval_s, once, "retention sweep")


async def rebuild(
    settings: Settings, batch: int = 2000, workers: int | None = None
) -> dict[str, float]:
    """Drop the read models and fold every event into them again, atomically: over ``workers``
    processes (``parallel``; a worker per core, up to four, by default), or in this one."""
    n = parallel.default_workers() if workers is None else workers
    if n > 1:
        return await rebuild_parallel(settings, n, batch)
    return await rebuild_serial(settings, batch)


async def rebuild_serial(settings: Settings, batch: int = 2000) -> dict[str, float]:
    """Drop the read models and fold every event into them again, atomically: those the
    stream holds in its order, then whatever the stores hold that it no longer does (the
    stream keeps only its last days, ``BATON_STREAM_MAX_AGE``; events seen already are
    skipped by the views). What only ever went over the stream (step log lines, agent
    messages) is rebuilt as far as the stream still holds it."""
    bus = await Bus.connect(settings, "rebuild")
    conn = await run_sync(open_views, settings)
    projection, access, approvals, extra = _views(settings.db_schema)
    views = [projection, access, approvals, *extra]
    started = time.perf_counter()
    last = (await bus.js.stream_info(settings.stream)).state.last_seq
    sub = await bus.js.pull_subscribe(
        f"{settings.subject_root}.>",
        stream=settings.stream,
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, inactive_threshold=60.0, max_waiting=1
        ),
    )
    puller = Puller(sub)
    seen = skipped = 0
    runs: catchup.Runs = {}  # what the stream gave of each store: not read again from it
    try:
        with conn.transaction():
            for view in views:
                await run_sync(view.truncate, conn)
            await run_sync(drop_indexes, conn, settings.db_schema)
            seq = 0
            while seq < last:
                try:
                    msgs = await puller.fetch(batch, timeout=2.0)
                except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                    break
                events, seq = _decoded(msgs, last, runs)
                skipped += len(msgs) - len(events)
                seen += len(events)
                await run_sync(_apply_all, conn, views, events)
            caught_up = await run_sync(catch_up_all, conn, settings, views, STORE_BATCH, runs)
            await run_sync(create_indexes, conn, settings.db_schema)
            # archived executions are summaries again (their detail is in the archive)
            archive = open_archive(settings.data_dir)
            await run_sync(resummarise, conn, settings.db_schema, archive)
            # audit rows of events still stored whose rows were archived: not kept twice
            await run_sync(forget_archived, conn, settings.db_schema)
    finally:
        await sub.unsubscribe()
        await bus.close()
        conn.close()
    elapsed = time.perf_counter() - started
    return {
        "events": seen,
        "read_from_stores": caught_up,
        "applied": projection.applied,
        "skipped": skipped,
        "seconds": elapsed,
        "events_per_s": (seen + caught_up) / elapsed if elapsed else 0.0,
    }


async def rebuild_parallel(settings: Settings, n: int, batch: int = 2000) -> dict[str, float]:
    """``rebuild_serial``'s result, the folding spread over ``n`` processes (``parallel``):
    each folds its executions into a shadow of the read models while readers and the live
    projector go on with the old ones; then, in one transaction, the real tables are swapped
    for the shadow's, and what came meanwhile (the stream's messages and the
    stores' events after the workers' reading) is folded on top, here. A rebuild that fails
    or is killed anywhere leaves the old views serving."""
    s = settings.db_schema
    bus = await Bus.connect(settings, "rebuild")
    conn = await run_sync(open_views, settings)
    started = time.perf_counter()
    pool: parallel.Pool | None = None
    try:
        await run_sync(conn.execute, parallel.REBUILD_LOCK, (s,))
        await run_sync(shadows.drop_shadows, conn, s)
        await run_sync(shadows.create_shadows, conn, s, n, create_tables, drop_indexes)
        pool = parallel.Pool(settings.database_url, s, settings.subject_root, n)
        runs: catchup.Runs = {}
        last = (await bus.js.stream_info(settings.stream)).state.last_seq
        messages = 0
        async for msgs in _stream(bus, settings, 1, last, batch, runs):
            messages += len(msgs)
            await run_sync(pool.stream, [(_hint(m), m.data) for m in msgs])
        up_to = await run_sync(parallel.positions_of, conn, s)
        done = await run_sync(pool.stores, conn, s, runs, up_to)
        folded = time.perf_counter()
        await run_sync(shadows.merge, conn, s, n)
        await run_sync(shadows.close_history, conn, s)
        await run_sync(create_indexes, conn, shadows.shadow(s), settings.database_url, n)
        built = time.perf_counter()
        with conn.transaction():
            tail = await _swap(settings, bus, conn, last, batch, runs, up_to)
        swapped = time.perf_counter()
    finally:
        if pool is not None:
            pool.close()
        with contextlib.suppress(psycopg.Error):
            await run_sync(shadows.drop_shadows, conn, s)
        await bus.close()
        conn.close()
    elapsed = time.perf_counter() - started
    streamed = sum(d["stream"] for d in done) + tail["stream"]
    stored = sum(d["stores"] for d in done) + tail["stores"]
    return {
        "events": streamed,
        "read_from_stores": stored,
        "applied": streamed + stored,
        "skipped": messages + tail["messages"] - streamed,
        "seconds": elapsed,
        "parallel_seconds": folded - started,  # the workers' (from their start)
        "merge_seconds": built - folded,  # their shared tables merged, the shadow's indexes
        "swap_seconds": swapped - built,  # the one transaction readers wait for
        "events_per_s": (streamed + stored) / elapsed if elapsed else 0.0,
        "workers": n,
    }


async def _swap(
    settings: Settings,
    bus: Bus,
    conn: psycopg.Connection[Any],
    last: int,
    batch: int,
    runs: catchup.Runs,
    up_to: dict[str, int],
) -> dict[str, int]:
    """In the caller's transaction: the real tables swapped for the shadow's, then what came
    while the workers folded folded on top; how many of the stream's messages and events, and
    of the stores' events, that was."""
    s = settings.db_schema
    projection, access, approvals, extra = _views(s)
    views = [projection, access, approvals, *extra]
    await run_sync(shadows.swap, conn, s)
    await run_sync(catchup.forget, conn, s)
    # every event up to these positions is in the views (the stream's or the workers'); an
    # empty store has none to record, as the one-process fold records none
    await run_sync(catchup.advance, conn, s, {k: v for k, v in up_to.items() if v})
    tail = {"messages": 0, "stream": 0, "stores": 0}
    end = (await bus.js.stream_info(settings.stream)).state.last_seq
    async for msgs in _stream(bus, settings, last + 1, end, batch, runs):
        events, _ = _decoded(msgs, end, {})
        tail["messages"] += len(msgs)
        tail["stream"] += len(events)
        await run_sync(_apply_all, conn, views, events)
    wanted = catchup.subject_matcher(settings.subject_root, SUBJECTS)

    def apply(conn: psycopg.Connection[Any], events: list[Event]) -> None:
        _apply_all(conn, views, events)

    # the stores' events after the workers' reading (not forgotten: read from ``up_to`` on)
    tail["stores"] = await run_sync(catchup.catch_up, conn, s, apply, wanted, STORE_BATCH, runs)
    await run_sync(resummarise, conn, s, open_archive(settings.data_dir))
    await run_sync(forget_archived, conn, s)
    return tail


async def _stream(
    bus: Bus, settings: Settings, first: int, last: int, batch: int, runs: catchup.Runs
) -> AsyncIterator[list[Any]]:
    """The stream's messages from sequence ``first`` to ``last``, a fetch at a time; each
    relayed message's store position noted in ``runs``."""
    if first > last:
        return
    sub = await bus.js.pull_subscribe(
        f"{settings.subject_root}.>",
        stream=settings.stream,
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=60.0,
            max_waiting=1,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first,
        ),
    )
    puller = Puller(sub)
    try:
        seq = first - 1
        while seq < last:
            try:
                msgs = await puller.fetch(batch, timeout=2.0)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                break
            kept, seen = _kept(msgs, last, runs)
            seq = seen or seq
            yield kept
    finally:
        await sub.unsubscribe()


def _hint(m: Any) -> str | None:
    return (m.headers or {}).get("Baton-Type")


# The read models' secondary indexes (none that a fold looks rows up by: those are primary keys
# and unique constraints), as ``create_tables`` makes them. A rebuild drops them after emptying
# the tables and builds each once at the end, from all the rows at once, rather than keeping
# each up to date row by row; in its one transaction, so readers see the old tables and their
# indexes until it commits, and a rebuild that fails leaves both as they were.
_INDEX = re.compile(r"CREATE INDEX IF NOT EXISTS (\w+) ON \{s\}\.(\w+)")
_KEPT = ("archived_executions",)  # not emptied by a rebuild (where archived histories went)
INDEXES = [
    (found[1], statement)
    for statement in SCHEMA_SQL
    if (found := _INDEX.match(statement)) and found[2] not in _KEPT
]


def drop_indexes(conn: psycopg.Connection[Any], schema: str) -> None:
    for name, _ in INDEXES:
        conn.execute(SQL("DROP INDEX IF EXISTS {}.{}").format(Identifier(schema), Identifier(name)))


def create_indexes(
    conn: psycopg.Connection[Any], schema: str, url: str | None = None, sessions: int = 1
) -> None:
    """Every index, on ``conn`` (in its transaction); or, given the database's ``url``, each on
    a session of its own, ``sessions`` at a time (a parallel rebuild's shadow, which nobody
    reads: building them one after the other was most of its serial part)."""
    statements = [SQL(statement).format(s=Identifier(schema)) for _, statement in INDEXES]
    if url is None or sessions <= 1:
        for statement in statements:
            conn.execute(statement)
        return

    def build(statement: Composed) -> None:
        with psycopg.connect(url, autocommit=True) as session:
            session.execute(statement)

    with ThreadPoolExecutor(sessions, thread_name_prefix="rebuild-index") as pool:
        list(pool.map(build, statements))


def _decoded(msgs: list[Any], last: int, runs: catchup.Runs) -> tuple[list[Event], int]:
    """The events of a fetched batch up to stream sequence ``last``, the last sequence seen;
    each relayed message's store position is noted in ``runs``. What does not decode was
    parked when it was live: a view never saw it either."""
    events, reg = [], registry()
    kept, seq = _kept(msgs, last, runs)
    for m in kept:
        with contextlib.suppress(EventDecodeError):
            events.append(reg.decode(m.data, (m.headers or {}).get("Baton-Type")))
    return events, seq


def _kept(msgs: list[Any], last: int, runs: catchup.Runs) -> tuple[list[Any], int]:
    """The messages of a fetched batch up to stream sequence ``last``, and the last sequence
    seen (past ``last`` when the batch went beyond it); each relayed message's store position
    is noted in ``runs``."""
    kept, seq = [], 0
    for m in msgs:
        seq = stream_sequence(m)
        if seq > last:
            break
        if (source := source_of(m)) is not None:
            catchup.delivered(runs, *source)
        kept.append(m)
    return kept, seq


def _apply_all(conn: psycopg.Connection[Any], views: list[Any], events: list[Event]) -> None:
    for view in views:
        view.apply_batch(conn, events)


def catch_up_all(
    conn: psycopg.Connection[Any],
    settings: Settings,
    views: list[Any],
    batch: int = STORE_BATCH,
    delivered: catchup.Runs | None = None,
) -> int:
    """Every store's log from its start into ``views`` (inside the rebuild's transaction),
    less the positions the stream ``delivered`` already. The logs are read and decoded on a
    session and a thread of their own, while this one writes the views."""

    def apply(conn: psycopg.Connection[Any], events: list[Event]) -> None:
        for view in views:
            view.apply_batch(conn, events)

    catchup.forget(conn, settings.db_schema)
    wanted = catchup.subject_matcher(settings.subject_root, SUBJECTS)
    with psycopg.connect(settings.database_url, autocommit=True) as reader:
        return catchup.catch_up(
            conn, settings.db_schema, apply, wanted, batch, delivered, reader=reader
        )
