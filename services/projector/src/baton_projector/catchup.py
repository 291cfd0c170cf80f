"""The views catch up from the stores when the stream no longer holds what the projector missed.

The event stream keeps messages for a while (``BATON_STREAM_MAX_AGE``, ``BATON_STREAM_MAX_BYTES``);
PostgreSQL keeps every event. Each message a relay publishes says where it stands in its store's
log (``Baton-Source: <store>:<position>``), and the projector records, in the transaction that
writes the views, the last position of each store it applied. When the stream has dropped
messages the projector was never given (it was stopped, or fell that far behind), it reads every
store's log after those positions and applies what follows, the stores merged in time order. The
views skip what they hold already (by event id): reading an event twice is harmless, missing one
is not, so a position only ever moves past events that were applied.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from baton_common.catchup import (
    Runs,
    delivered,
    last_positions,
    read_after,
    seen_in,
    stores,
    subject_matcher,
)
from baton_common.events import Event
from psycopg.sql import SQL, Identifier

TABLE = "projector_sources"
T = TypeVar("T")
Apply = Callable[[psycopg.Connection[Any], list[Event]], None]
# What the projector's callers also take from here (the shared reading is baton_common.catchup).
__all__ = [
    "Runs",
    "advance",
    "catch_up",
    "create_table",
    "delivered",
    "forget",
    "positions",
    "seen_in",
    "stores",
    "subject_matcher",
]


def create_table(conn: psycopg.Connection[Any], schema: str) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(77002)")  # as the read models' tables
        conn.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (store text PRIMARY KEY, position bigint NOT NULL)"
            ).format(Identifier(schema), Identifier(TABLE))
        )


def forget(conn: psycopg.Connection[Any], schema: str) -> None:
    """Every position back to the start (a rebuild reads every log again)."""
    conn.execute(SQL("DELETE FROM {}.{}").format(Identifier(schema), Identifier(TABLE)))


def positions(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """The last position applied of each store's log."""
    rows = conn.execute(
        SQL("SELECT store, position FROM {}.{}").format(Identifier(schema), Identifier(TABLE))
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def advance(conn: psycopg.Connection[Any], schema: str, seen: dict[str, int]) -> None:
    """Record positions applied (in the caller's transaction, with the views)."""
    if seen:
        conn.execute(
            SQL(
                "INSERT INTO {s}.{t} (store, position) SELECT * FROM unnest(%s::text[], "
                "%s::bigint[]) ON CONFLICT (store) DO UPDATE SET position = "
                "GREATEST({t}.position, EXCLUDED.position)"
            ).format(s=Identifier(schema), t=Identifier(TABLE)),
            (list(seen), list(seen.values())),
        )


def catch_up(
    conn: psycopg.Connection[Any],
    schema: str,
    apply: Apply,
    wanted: Callable[[Event], bool],
    batch: int = 1000,
    delivered: Runs | None = None,
    reader: psycopg.Connection[Any] | None = None,
) -> int:
    """Apply every store's events after the recorded positions, ``batch`` per transaction,
    less what ``delivered`` says the stream gave already (a rebuild); how many were read.
    With a ``reader`` (a second session), the stores are read and decoded on a thread of its
    own, a chunk or two ahead, while ``conn`` writes the last one's views."""
    read = 0
    chunks = read_after(reader or conn, schema, positions(conn, schema), batch, delivered)
    for chunk in chunks if reader is None else ahead(chunks):
        with conn.transaction():
            apply(conn, [e for *_, e in chunk if wanted(e)])
            advance(conn, schema, last_positions(chunk))
        read += len(chunk)
    return read


_DONE = object()


def ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced on a thread of their own up to ``depth`` ahead of the caller. An
    error there is raised here; a caller that stops early stops the thread."""
    out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                out.put(item, timeout=0.1)
                return True
        return False  # the caller has stopped

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:
            put(exc)

    thread = threading.Thread(target=produce, name="catch-up reader", daemon=True)
    thread.start()
    try:
        while (item := out.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
