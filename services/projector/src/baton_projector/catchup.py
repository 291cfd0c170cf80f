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

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
from baton_common.bus import source_of
from baton_common.busauth import subject_matches
from baton_common.consumer import Delivery
from baton_common.contracts import registry
from baton_common.events import Event, EventDecodeError
from psycopg.sql import SQL, Identifier

TABLE = "projector_sources"
Apply = Callable[[psycopg.Connection[Any], list[Event]], None]
Entry = tuple[datetime, str, int, Event]  # when, store, position, event


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


def seen_in(batch: Sequence[Delivery]) -> dict[str, int]:
    """The highest store position among relayed messages of a batch, per store."""
    seen: dict[str, int] = {}
    for d in batch:
        source = source_of(d.msg) if d.msg is not None else None
        if source is not None:
            seen[source[0]] = max(seen.get(source[0], 0), source[1])
    return seen


def stores(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Every service's store in the schema: the tables with the event store's columns."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = %s"
        " AND table_name LIKE '%%\\_events' AND column_name IN ('notification_id', 'state',"
        " 'originator_version') GROUP BY table_name HAVING count(*) = 3 ORDER BY table_name",
        (schema,),
    ).fetchall()
    return [str(r[0]).removesuffix("_events") for r in rows]


Runs = dict[str, list[list[int]]]  # store -> the [first, last] runs of its positions delivered


def delivered(runs: Runs, store: str, position: int) -> None:
    """Note that the stream delivered ``position`` of ``store``'s log (a relay publishes a
    store's events in its log's order, so they come as runs)."""
    spans = runs.setdefault(store, [])
    if spans and spans[-1][1] + 1 == position:
        spans[-1][1] = position
    else:
        spans.append([position, position])


def gaps(spans: Sequence[list[int]], after: int) -> list[tuple[int, int]]:
    """The ``(after, up_to]`` ranges of a log past ``after`` that ``spans`` do not cover."""
    out, low = [], after
    for first, last in sorted(spans):
        if first > low + 1:
            out.append((low, first - 1))
        low = max(low, last)
    out.append((low, END))
    return out


END = 2**63 - 1  # past any position


def catch_up(
    conn: psycopg.Connection[Any],
    schema: str,
    apply: Apply,
    wanted: Callable[[Event], bool],
    batch: int = 1000,
    delivered: Runs | None = None,
) -> int:
    """Apply every store's events after the recorded positions, ``batch`` per transaction,
    less what ``delivered`` says the stream gave already (a rebuild); how many were read."""
    after = positions(conn, schema)
    logs = [
        _log(conn, schema, s, gaps((delivered or {}).get(s, ()), after.get(s, 0)), batch)
        for s in stores(conn, schema)
    ]
    read = 0
    for chunk in _chunks(heapq.merge(*logs, key=_when), batch):
        with conn.transaction():
            apply(conn, [e for *_, e in chunk if wanted(e)])
            advance(conn, schema, _last(chunk))
        read += len(chunk)
    return read


def _log(
    conn: psycopg.Connection[Any],
    schema: str,
    store: str,
    ranges: Sequence[tuple[int, int]],
    batch: int,
) -> Iterator[Entry]:
    """A store's events in the ``(after, up_to]`` ranges of its log, in order."""
    query = SQL(
        "SELECT notification_id, state FROM {}.{} WHERE notification_id > %s"
        " AND notification_id <= %s ORDER BY notification_id LIMIT %s"
    ).format(Identifier(schema), Identifier(f"{store}_events"))
    reg = registry()
    for after, up_to in ranges:
        while True:
            rows = conn.execute(query, (after, up_to, batch)).fetchall()
            for position, state in rows:
                try:
                    event = reg.decode(bytes(state))
                except EventDecodeError:
                    continue  # parked when it was live: no view ever had it
                yield event.occurred_at, store, int(position), event
            if len(rows) < batch:
                break
            after = int(rows[-1][0])


def _when(entry: Entry) -> datetime:
    return entry[0]


def _last(chunk: Iterable[Entry]) -> dict[str, int]:
    last: dict[str, int] = {}
    for _, store, position, _ in chunk:
        last[store] = max(last.get(store, 0), position)
    return last


def _chunks(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def subject_matcher(root: str, patterns: Sequence[str]) -> Callable[[Event], bool]:
    """Whether an event's subject matches one of a consumer's filters (NATS wildcards)."""
    full = [f"{root}.{p}" for p in patterns]

    def wanted(event: Event) -> bool:
        subject = event.subject(root)
        return any(subject_matches(p, subject) for p in full)

    return wanted
