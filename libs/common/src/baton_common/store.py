"""The event store: the `eventsourcing` library's recorders, with an inbox and durable timers.

One commit writes a service's new events, the record of the messages that caused them (the inbox)
and its timer changes in a single transaction: this is what makes a consumer exactly-once. The
events table, its notification log (what the relay follows) and optimistic concurrency on
``(aggregate_id, aggregate_version)`` are the library's own.

PostgreSQL (psycopg 3) is the store in every running mode; ``MemoryEventStore`` serves unit tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from baton_common.events import Event, registry

__all__ = [
    "ConcurrencyConflict",
    "MemoryEventStore",
    "PostgresEventStore",
    "Timer",
    "open_store",
]


class ConcurrencyConflict(Exception):
    """A commit lost a race: an aggregate version or an inbox record already exists."""


@dataclass(frozen=True)
class Timer:
    """A durable wake-up: at ``due_at`` the owning service is handed ``payload``."""

    timer_id: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Commit:
    """Everything one transaction writes."""

    events: Sequence[Event] = ()
    handled: Sequence[tuple[str, str]] = ()  # (consumer, message id)
    timers_set: Sequence[Timer] = ()
    timers_clear: Sequence[str] = ()


def _stored(event: Event) -> StoredEvent:
    if event.aggregate_version < 1:
        raise ValueError(f"{event.type} has no aggregate version: only aggregate events are stored")
    return StoredEvent(
        originator_id=event.aggregate_id,
        originator_version=event.aggregate_version,
        topic=event.type,
        state=event.to_json(),
    )


# --- PostgreSQL -----------------------------------------------------------------------------------


class _Recorder(PostgresApplicationRecorder):
    """The library's application recorder, plus inbox and timer rows in the same transaction."""

    def __init__(self, datastore: PostgresDatastore, name: str) -> None:
        super().__init__(datastore, events_table_name=f"{name}_events")
        schema = Identifier(datastore.schema)
        self.inbox = Identifier(f"{name}_inbox")
        self.timers = Identifier(f"{name}_timers")
        self.relay = Identifier(f"{name}_relay")
        for statement in (
            "CREATE TABLE IF NOT EXISTS {s}.{t} (consumer text NOT NULL, message_id text NOT NULL,"
            " handled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, message_id))",
            "CREATE TABLE IF NOT EXISTS {s}.{timers} (timer_id text PRIMARY KEY,"
            " due_at timestamptz NOT NULL, payload jsonb NOT NULL)",
            "CREATE INDEX IF NOT EXISTS {timers_idx} ON {s}.{timers} (due_at)",
            "CREATE TABLE IF NOT EXISTS {s}.{relay} (relay text PRIMARY KEY, position bigint NOT NULL)",
        ):
            self.sql_create_statements.append(
                SQL(statement).format(
                    s=schema,
                    t=self.inbox,
                    timers=self.timers,
                    timers_idx=Identifier(f"{name}_timers_due_idx"),
                    relay=self.relay,
                )
            )

    def _insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        commit: Commit = kwargs["commit"]
        s = Identifier(self.datastore.schema)
        if commit.handled:
            curs.execute(
                SQL(
                    "INSERT INTO {s}.{t} (consumer, message_id) "
                    "SELECT * FROM unnest(%s::text[], %s::text[])"
                ).format(s=s, t=self.inbox),
                ([c for c, _ in commit.handled], [m for _, m in commit.handled]),
            )
        if commit.timers_clear:
            curs.execute(
                SQL("DELETE FROM {s}.{t} WHERE timer_id = ANY(%s)").format(s=s, t=self.timers),
                (list(commit.timers_clear),),
            )
        for timer in commit.timers_set:
            curs.execute(
                SQL(
                    "INSERT INTO {s}.{t} (timer_id, due_at, payload) VALUES (%s, %s, %s) "
                    "ON CONFLICT (timer_id) DO UPDATE SET due_at = EXCLUDED.due_at, "
                    "payload = EXCLUDED.payload"
                ).format(s=s, t=self.timers),
                (timer.timer_id, timer.due_at, Jsonb(timer.payload)),
            )


def _datastore(url: str, schema: str, pool_size: int) -> PostgresDatastore:
    params = conninfo_to_dict(url)
    return PostgresDatastore(
        dbname=str(params.get("dbname", "postgres")),
        host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", 5432)),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        schema=schema,
        pool_size=pool_size,
        max_overflow=pool_size,
    )


def ensure_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


class _Recorded:
    """Events in and out of an ``eventsourcing`` application recorder (either back end)."""

    recorder: Any

    def commit(self, commit: Commit) -> list[tuple[int, bytes]]:
        """Write it all in one transaction; returns (position, stored bytes) of each new event."""
        stored = [_stored(e) for e in commit.events]
        try:
            ids = self.recorder.insert_events(stored, commit=commit) or []
        except IntegrityError as exc:
            raise ConcurrencyConflict(str(exc)) from None
        return list(zip(ids, (s.state for s in stored), strict=True))

    def load(self, aggregate_id: UUID) -> list[Event]:
        reg = registry()
        return [reg.decode(s.state) for s in self.recorder.select_events(aggregate_id)]

    def notifications(self, after: int, limit: int) -> list[tuple[int, Event]]:
        reg = registry()
        return [(p, reg.decode(state)) for p, state in self.raw_notifications(after, limit)]

    def raw_notifications(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self.recorder.select_notifications(after, limit, inclusive_of_start=False)
        return [(n.id, n.state) for n in rows]

    def max_position(self) -> int:
        return int(self.recorder.max_notification_id() or 0)


class PostgresEventStore(_Recorded):
    """A service's events, inbox, timers and relay position in PostgreSQL."""

    def __init__(self, url: str, name: str, *, schema: str = "public", pool_size: int = 4) -> None:
        self.name = name
        ensure_schema(url, schema)
        self.datastore = _datastore(url, schema, pool_size)
        self.recorder = _Recorder(self.datastore, name)
        with psycopg.connect(url, autocommit=True) as conn:
            # Services start together and the library's DDL (types, functions) is not safe to
            # run concurrently: one process at a time creates what is missing.
            conn.execute("SELECT pg_advisory_lock(77001)")
            self.recorder.create_table()
        self._s = Identifier(self.datastore.schema)

    def _query(self, statement: str, params: Sequence[Any] = (), **names: Identifier) -> list[Any]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL(statement).format(s=self._s, **names), params)
            return curs.fetchall() if curs.description else []

    def handled(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        if not message_ids:
            return set()
        rows = self._query(
            "SELECT message_id FROM {s}.{t} WHERE consumer = %s AND message_id = ANY(%s)",
            (consumer, list(message_ids)),
            t=self.recorder.inbox,
        )
        return {r["message_id"] for r in rows}

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        rows = self._query(
            "SELECT timer_id, due_at, payload FROM {s}.{t} WHERE due_at <= %s "
            "ORDER BY due_at LIMIT %s",
            (now, limit),
            t=self.recorder.timers,
        )
        return [Timer(r["timer_id"], r["due_at"], r["payload"]) for r in rows]

    def relay_position(self, relay: str) -> int:
        rows = self._query(
            "SELECT position FROM {s}.{t} WHERE relay = %s", (relay,), t=self.recorder.relay
        )
        return int(rows[0]["position"]) if rows else 0

    def set_relay_position(self, relay: str, position: int) -> None:
        self._query(
            "INSERT INTO {s}.{t} (relay, position) VALUES (%s, %s) ON CONFLICT (relay) "
            "DO UPDATE SET position = GREATEST({t}.position, EXCLUDED.position)",
            (relay, position),
            t=self.recorder.relay,
        )

    def close(self) -> None:
        self.datastore.close()


# --- in memory (unit tests only) ------------------------------------------------------------------


class _MemoryRecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.inbox: set[tuple[str, str]] = set()
        self.timers: dict[str, Timer] = {}

    def _insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        commit: Commit = kwargs["commit"]
        with self._database_lock:
            if self.inbox.intersection(commit.handled):
                raise IntegrityError("message already handled")
            self._assert_uniqueness(stored_events)
            self.inbox.update(commit.handled)
            for timer_id in commit.timers_clear:
                self.timers.pop(timer_id, None)
            self.timers.update({t.timer_id: t for t in commit.timers_set})
            return self._update_table(stored_events)


class MemoryEventStore(_Recorded):
    """The same contract as PostgresEventStore, in process memory. For unit tests."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.recorder = _MemoryRecorder()
        self._positions: dict[str, int] = {}
        self._lock = threading.Lock()

    def handled(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        return {m for m in message_ids if (consumer, m) in self.recorder.inbox}

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        due = sorted((t for t in self.recorder.timers.values() if t.due_at <= now), key=_due)
        return due[:limit]

    def relay_position(self, relay: str) -> int:
        return self._positions.get(relay, 0)

    def set_relay_position(self, relay: str, position: int) -> None:
        with self._lock:
            self._positions[relay] = max(position, self._positions.get(relay, 0))

    def close(self) -> None:
        pass


def _due(timer: Timer) -> datetime:
    return timer.due_at


def open_store(
    url: str | None, name: str, *, schema: str = "public"
) -> PostgresEventStore | MemoryEventStore:
    """PostgreSQL for a URL; ``memory://`` (unit tests) for the in-memory store."""
    if not url or url.startswith("memory://"):
        return MemoryEventStore(name)
    return PostgresEventStore(url, name, schema=schema)


async def run_sync(fn: Any, *args: Any) -> Any:
    """Run a blocking store call off the event loop."""
    return await asyncio.to_thread(fn, *args)
