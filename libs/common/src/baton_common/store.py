"""The event store: the `eventsourcing` library's recorders, with an inbox and durable timers.

One commit writes a service's new events, the record of the messages that caused them (the inbox)
and its timer changes in a single transaction: this is what makes a consumer exactly-once. The
events table, its notification log (what the relay follows) and optimistic concurrency on
``(aggregate_id, aggregate_version)`` are the library's own.

PostgreSQL (psycopg 3) is the store in every running mode; ``MemoryEventStore`` serves unit tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier, Literal
from psycopg.types.json import Jsonb, set_json_dumps

from baton_common.aggregate import Aggregate
from baton_common.contracts import registry
from baton_common.events import Event
from baton_common.limits import human, limits

log = logging.getLogger(__name__)
# A ``\u0000`` escape that is not itself an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _json_dumps(value: Any) -> bytes:
    """JSON for the jsonb parameters of every query here and in the services (views, payloads,
    claims): orjson, several times faster than ``json`` on the projector's views; ``json`` for
    what orjson refuses (an integer beyond 64 bits).

    PostgreSQL's jsonb cannot hold the NUL character, which arrives in tool outputs, webhook
    payloads and requests: in a view it becomes U+FFFD (the events keep the exact text), so one
    such string never stops a projection."""
    try:
        out = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        out = json.dumps(value).encode()
    return without_nul(out)


def without_nul(doc: bytes) -> bytes:
    """JSON text with each escaped NUL character replaced by U+FFFD (see ``_json_dumps``)."""
    if b"\\u0000" not in doc:
        return doc
    return _NUL_ESCAPE.sub(rb"\1\\ufffd", doc)


def json_text(doc: str) -> str:
    """``without_nul`` for JSON held as ``str`` (written to a jsonb column as text)."""
    return doc if "\\u0000" not in doc else without_nul(doc.encode()).decode()


def plain_text(value: str | None) -> str | None:
    """Text for a PostgreSQL text column, which cannot hold NUL: U+FFFD in its place."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


# Process-wide: every psycopg connection of the service. Reading stays ``json``: orjson turns an
# integer beyond 64 bits into a float.
set_json_dumps(_json_dumps)


__all__ = [
    "ConcurrencyConflict",
    "EventTooLarge",
    "LockRow",
    "MemoryEventStore",
    "PostgresEventStore",
    "Timer",
    "open_store",
]


# The last check on every event before it is stored (BATON_MAX_EVENT_BYTES): the field limits
# (limits.py) keep callers well under it; this catches what they missed, e.g. many outputs folded
# into one event.
MAX_EVENT_BYTES = limits().event


class EventTooLarge(ValueError):
    """An event larger than the bus accepts: nothing of its commit is stored."""

    def __init__(self, event: Event, size: int) -> None:
        self.event_type, self.size = event.type, size
        super().__init__(
            f"{event.type} of {event.aggregate_id} is {human(size)} encoded, the limit of one "
            f"event is {human(MAX_EVENT_BYTES)} (BATON_MAX_EVENT_BYTES): nothing was stored"
        )


class ConcurrencyConflict(Exception):
    """A commit lost a race: an aggregate version or an inbox record already exists."""


@dataclass(frozen=True)
class Timer:
    """A durable wake-up: at ``due_at`` the owning service is handed ``payload``."""

    timer_id: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LockRow:
    """One holder's claim on a named resource: held (``granted``) or queued by ``ticket``.

    ``mode`` is ``exclusive``, ``shared`` or ``slot`` (one of ``capacity`` places). A held claim
    lapses at ``lease_until`` (a dead holder frees it). A queued one is woken by the timer
    ``wake_timer`` (with ``wake`` as its payload) when a claim on its name is released.
    """

    name: str
    holder: str
    mode: str
    ticket: int
    granted: bool
    capacity: int = 1
    lease_until: datetime | None = None
    wake_timer: str | None = None
    wake: dict[str, Any] = field(default_factory=dict)

    def live(self, now: datetime) -> bool:
        return self.granted and (self.lease_until is None or self.lease_until > now)


@dataclass(frozen=True)
class Commit:
    """Everything one transaction writes."""

    events: Sequence[Event] = ()
    handled: Sequence[tuple[str, str]] = ()  # (consumer, message id)
    timers_set: Sequence[Timer] = ()
    timers_clear: Sequence[str] = ()
    # Lock claims: every claim of a released holder goes first, then claims are written; a
    # granted claim that clashes with another live one refuses the whole commit.
    locks_release: Sequence[str] = ()
    locks_put: Sequence[LockRow] = ()
    locks_extend: Sequence[tuple[str, datetime]] = ()  # (holder, lease until): held claims live on
    # (slot, capacity) of each slot this commit grants places in without having read it: the
    # commit is refused if, once written, the slot's live places would be more than that.
    places_checked: Sequence[tuple[str, int]] = ()


Usage = tuple[set[str], int | None]  # holders of live claims on a name, first queued ticket


class LockClash(IntegrityError):
    """A commit would grant a claim that another holder's live claim excludes."""


class PlacesTaken(LockClash):
    """A commit would take a slot past its capacity (a place granted without a read)."""


def clashes(row: LockRow, others: Sequence[LockRow], now: datetime) -> bool:
    """Would granting ``row`` break a live claim in ``others`` (the same name's claims)?"""
    live = [o for o in others if o.holder != row.holder and o.live(now)]
    if row.mode == "slot":
        return len(live) >= row.capacity
    if row.mode == "shared":
        return any(o.mode == "exclusive" for o in live)
    return bool(live)


def _stored(event: Event) -> StoredEvent:
    if event.aggregate_version < 1:
        raise ValueError(f"{event.type} has no aggregate version: only aggregate events are stored")
    state = event.to_json()
    if len(state) > MAX_EVENT_BYTES:  # the bus would refuse it: never commit it (a len(), cheap)
        raise EventTooLarge(event, len(state))
    return StoredEvent(
        originator_id=event.aggregate_id,
        originator_version=event.aggregate_version,
        topic=event.type,
        state=state,
    )


# --- PostgreSQL -----------------------------------------------------------------------------------

# A whole commit (inbox, timers, lock claims, events) in one statement. The library's path
# (``insert_events``) waits on the server ~15 times per commit: pipeline, BEGIN, LOCK, NOTIFY,
# the inserts, COMMIT. Called in autocommit mode, this does the same work in one round trip and
# one implicit transaction (all or nothing). It takes the library's table lock, so notification
# ids are issued in commit order (the relay and the library's ``subscribe`` rely on it); a
# duplicate event version or inbox row raises the same unique violation. It sends no NOTIFY
# (see ``_Recorder._notify_channel``).
# The events take the library's columns and sequence, so its reads are unchanged. Lock claims
# are written as ``_Recorder._write_locks`` writes them; a commit that grants an exclusive or
# shared lock (checked against the other holders' claims, in Python) keeps the library's path.
# The version in the name keeps a changed signature from meeting an older definition.
# Both functions end with the events, in the library's way: the table locked so that positions
# are committed in order (a reader never skips a gap that fills later).
_APPEND = """SET LOCAL lock_timeout = '{lock_timeout}s';
    LOCK TABLE {s}.{events} IN EXCLUSIVE MODE;
    RETURN QUERY
    INSERT INTO {s}.{events} (originator_id, originator_version, topic, state)
    SELECT * FROM unnest(_ids, _versions, _topics, _states)
    RETURNING notification_id;"""

# Places granted without a read (``Commit.places_checked``): the commits that check a slot take
# turns on it (a transaction lock per slot, taken in the keys' order, held to the commit), so
# each counts the claims that every commit before it left: two replicas can never both take
# the last place. The count includes this commit's own claims and releases.
_CHECK_PLACES = """FOR _key IN SELECT DISTINCT hashtext(n) FROM unnest(_checked) AS n ORDER BY 1 LOOP
            PERFORM pg_advisory_xact_lock({lock_key}, _key);
        END LOOP;
        SELECT c.name INTO _over FROM unnest(_checked, _capacities) AS c(name, cap)
        WHERE (SELECT count(*) FROM {s}.{locks} l WHERE l.name = c.name AND l.granted
            AND (l.lease_until IS NULL OR l.lease_until > now())) > c.cap
        LIMIT 1;
        IF _over IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'exclusion_violation',
                MESSAGE = format('every place of %L is taken', _over);
        END IF;"""

_COMMIT_FUNCTION = """
CREATE OR REPLACE FUNCTION {s}.{f}(
    _ids {id}[], _versions bigint[], _topics text[], _states bytea[],
    _consumers text[], _messages text[],
    _cleared text[], _timer_ids text[], _due timestamptz[], _payloads jsonb[],
    _claims jsonb, _released text[], _extended text[], _until timestamptz[],
    _checked text[], _capacities int[]
) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
DECLARE
    _freed text[];  -- the name of each claim released
    _key int;
    _over text;  -- a checked slot that this commit would take past its capacity
BEGIN
    IF cardinality(_consumers) > 0 THEN
        INSERT INTO {s}.{inbox} (consumer, message_id)
        SELECT * FROM unnest(_consumers, _messages);
    END IF;
    IF cardinality(_cleared) > 0 THEN
        DELETE FROM {s}.{timers} WHERE timer_id = ANY(_cleared);
    END IF;
    IF cardinality(_timer_ids) > 0 THEN
        INSERT INTO {s}.{timers} (timer_id, due_at, payload)
        SELECT * FROM unnest(_timer_ids, _due, _payloads)
        ON CONFLICT (timer_id) DO UPDATE SET due_at = EXCLUDED.due_at, payload = EXCLUDED.payload;
    END IF;
    IF _claims IS NOT NULL THEN
        INSERT INTO {s}.{locks} (name, holder, mode, capacity, ticket, granted, lease_until,
            wake_timer, wake)
        SELECT * FROM jsonb_to_recordset(_claims) AS x(name text, holder text, mode text,
            capacity int, ticket bigint, granted bool, lease_until timestamptz, wake_timer text,
            wake jsonb)
        ON CONFLICT (name, holder) DO UPDATE SET mode = EXCLUDED.mode,
            capacity = EXCLUDED.capacity, ticket = LEAST({locks}.ticket, EXCLUDED.ticket),
            granted = EXCLUDED.granted, lease_until = EXCLUDED.lease_until,
            wake_timer = EXCLUDED.wake_timer, wake = EXCLUDED.wake;
    END IF;
    IF cardinality(_released) > 0 THEN
        -- As _Recorder._release_and_wake, in two statements: the waiters are looked up only
        -- on the names that lost claims, not on the whole table, and only if any did.
        WITH gone AS (
            DELETE FROM {s}.{locks} WHERE holder = ANY(_released) AND (name, holder) NOT IN (
                SELECT x.name, x.holder FROM jsonb_to_recordset(_claims) AS x(name text, holder text))
            RETURNING name)
        SELECT array_agg(name) INTO _freed FROM gone;
    END IF;
    IF _freed IS NOT NULL THEN
        INSERT INTO {s}.{timers} (timer_id, due_at, payload)
        SELECT DISTINCT ON (wake_timer) wake_timer, now(), wake FROM (
            SELECT l.wake_timer, l.wake, f.k,
                row_number() OVER (PARTITION BY l.name ORDER BY l.ticket) AS n
            FROM {s}.{locks} l
            -- one more than the claims lost and not granted again in this commit (_woken)
            JOIN (SELECT g.name, greatest(count(*) - coalesce(max(t.n), 0), 0) + 1 AS k
                FROM unnest(_freed) AS g(name) LEFT JOIN (
                    SELECT x.name, count(*) AS n FROM jsonb_to_recordset(_claims)
                        AS x(name text, granted bool) WHERE x.granted GROUP BY x.name) t
                    ON t.name = g.name
                GROUP BY g.name) f
                ON l.name = f.name
            WHERE l.name = ANY(_freed) AND NOT l.granted AND l.wake_timer IS NOT NULL
                AND NOT (l.holder = ANY(_released))) w
        WHERE n <= k
        ON CONFLICT (timer_id) DO UPDATE SET due_at = LEAST({timers}.due_at, now());
    END IF;
    IF cardinality(_extended) > 0 THEN
        UPDATE {s}.{locks} l SET lease_until = GREATEST(l.lease_until, x.until)
        FROM unnest(_extended, _until) AS x(holder, until)
        WHERE l.holder = x.holder AND l.granted;
    END IF;
    IF cardinality(_checked) > 0 THEN
        {check_places}
    END IF;
    IF cardinality(_ids) > 0 THEN
        {append}
    END IF;
END
$body$
""".replace("{append}", _APPEND).replace("{check_places}", _CHECK_PLACES)


# The commit that carries events only (most of them: an intake, a chain's next step): the same
# insert without the other thirteen arguments to dump, send and test. Measured here: 0.31 ms
# against 0.40 ms for the full function with the same one event.
_APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION {s}.{f}(
    _ids {id}[], _versions bigint[], _topics text[], _states bytea[]
) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
BEGIN
    {append}
END
$body$
""".replace("{append}", _APPEND)


class _Recorder(PostgresApplicationRecorder):
    """The library's application recorder, plus inbox and timer rows in the same transaction
    (in one statement, ``commit_in_one``, unless the commit grants a checked lock)."""

    def __init__(self, datastore: PostgresDatastore, name: str) -> None:
        super().__init__(datastore, events_table_name=f"{name}_events")
        schema = Identifier(datastore.schema)
        self.inbox = Identifier(f"{name}_inbox")
        self.timers = Identifier(f"{name}_timers")
        self.relay = Identifier(f"{name}_relay")
        self.locks = Identifier(f"{name}_locks")
        self.buckets = Identifier(f"{name}_buckets")
        self.lock_key = zlib.crc32(f"{datastore.schema}.{name}_locks".encode()) & 0x7FFFFFFF
        for statement in (
            "CREATE TABLE IF NOT EXISTS {s}.{t} (consumer text NOT NULL, message_id text NOT NULL,"
            " handled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, message_id))",
            # BRIN: rows arrive in time order, so pruning by age costs a few pages of index and
            # next to nothing per insert.
            "CREATE INDEX IF NOT EXISTS {inbox_idx} ON {s}.{t} USING brin (handled_at)",
            "CREATE TABLE IF NOT EXISTS {s}.{timers} (timer_id text PRIMARY KEY,"
            " due_at timestamptz NOT NULL, payload jsonb NOT NULL)",
            "CREATE INDEX IF NOT EXISTS {timers_idx} ON {s}.{timers} (due_at)",
            "CREATE TABLE IF NOT EXISTS {s}.{relay} (relay text PRIMARY KEY, position bigint NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {s}.{locks} (name text NOT NULL, holder text NOT NULL,"
            " mode text NOT NULL, capacity int NOT NULL, ticket bigint NOT NULL,"
            " granted boolean NOT NULL, lease_until timestamptz, wake_timer text, wake jsonb,"
            " PRIMARY KEY (name, holder))",
            "CREATE INDEX IF NOT EXISTS {locks_idx} ON {s}.{locks} (holder)",
            "CREATE TABLE IF NOT EXISTS {s}.{buckets} (key text PRIMARY KEY, tat timestamptz NOT NULL)",
        ):
            self.sql_create_statements.append(
                SQL(statement).format(
                    s=schema,
                    t=self.inbox,
                    inbox_idx=Identifier(f"{name}_inbox_handled_idx"),
                    timers=self.timers,
                    timers_idx=Identifier(f"{name}_timers_due_idx"),
                    relay=self.relay,
                    locks=self.locks,
                    locks_idx=Identifier(f"{name}_locks_holder_idx"),
                    buckets=self.buckets,
                )
            )
        self.commit_function = Identifier(f"{name}_commit_v2")
        self.append_function = Identifier(f"{name}_append_v1")
        self.sql_create_statements.append(self._commit_function_ddl())
        self.sql_create_statements.append(
            SQL(_APPEND_FUNCTION).format(
                s=schema,
                f=self.append_function,
                id=Identifier(datastore.originator_id_type),
                events=Identifier(self.events_table_name),
                lock_timeout=datastore.lock_timeout,
            )
        )
        # Rendered once: psycopg renders a composed query again at every execute.
        self.commit_statement = (
            SQL(
                "SELECT n FROM {s}.{f}(%b::{id}[], %b::bigint[], %b::text[], %b::bytea[],"
                " %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::jsonb[],"
                " %b::jsonb, %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::int[])"
                " AS n"
            )
            .format(s=schema, f=self.commit_function, id=Identifier(datastore.originator_id_type))
            .as_string()
        )

        self.append_statement = (
            SQL("SELECT n FROM {s}.{f}(%b::{id}[], %b::bigint[], %b::text[], %b::bytea[]) AS n")
            .format(s=schema, f=self.append_function, id=Identifier(datastore.originator_id_type))
            .as_string()
        )

    def _commit_function_ddl(self) -> Any:
        return SQL(_COMMIT_FUNCTION).format(
            s=Identifier(self.datastore.schema),
            f=self.commit_function,
            id=Identifier(self.datastore.originator_id_type),
            inbox=self.inbox,
            timers=self.timers,
            locks=self.locks,
            events=Identifier(self.events_table_name),
            lock_timeout=self.datastore.lock_timeout,
            lock_key=Literal(self.lock_key),
        )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def commit_in_one(self, commit: Commit) -> list[tuple[int, bytes]]:
        """Write a commit that grants no checked lock in one statement (``_COMMIT_FUNCTION``);
        returns (position, stored bytes) of each new event, in order. Retried on a lost
        connection as the library retries ``insert_events``."""
        statement, events, params = self.commit_params(commit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            ids = [row["n"] for row in curs.fetchall()]
        return list(zip(ids, (e.state for e in events), strict=True))

    def commit_params(self, commit: Commit) -> tuple[str, list[StoredEvent], tuple[Any, ...]]:
        """The statement that writes a commit, its stored events, and the statement's arguments."""
        events = [_stored(e) for e in commit.events]
        if _events_only(commit):
            return self.append_statement, events, tuple(_arrays(events, *_EVENT_FIELDS))
        # The last one of an id wins; ids in order, so two commits lock the same rows alike.
        timers = sorted({t.timer_id: t for t in commit.timers_set}.values(), key=_timer_id)
        # No rows go as NULL, not as an empty array: less to dump for the usual commit.
        params = (
            *_arrays(events, *_EVENT_FIELDS),
            *_arrays(commit.handled, 0, 1),
            list(commit.timers_clear) or None,
            *_arrays(timers, "timer_id", "due_at"),
            [Jsonb(t.payload) for t in timers] or None,
            # One JSON document for the claims, as _put_locks sends them.
            Jsonb([_lock_json(r) for r in commit.locks_put]) if commit.locks_put else None,
            list(commit.locks_release) or None,
            *_arrays(commit.locks_extend, 0, 1),
            *_arrays(commit.places_checked, 0, 1),
        )
        return self.commit_statement, events, params

    def _notify_channel(self, curs: Any) -> None:
        """No NOTIFY in the commit: the relay is woken by the committing process (a replica whose
        relay does not lead notifies after the commit, ``notify_async``), and PostgreSQL
        serialises every notifying commit of a cluster behind one lock held through the WAL
        flush. Measured with pgbench on this machine
        (insert + commit, 4 clients): 5,890 commits/s without NOTIFY, 3,231 with it."""

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
        if commit.locks_release or commit.locks_put or commit.locks_extend:
            self._write_locks(curs, commit)

    def _write_locks(self, curs: Any, commit: Commit) -> None:
        """Claim, release and wake, then check the grants of locks, and the slots that the
        commit takes places in without having read them (``places_checked``). A place granted
        after a read is a soft bound, not checked."""
        checked = [r for r in commit.locks_put if r.granted and r.mode != "slot"]
        if checked:  # replicas take turns to check grants
            curs.execute("SELECT pg_advisory_xact_lock(%s)", (self.lock_key,))
        if commit.locks_put:
            self._put_locks(curs, commit.locks_put)
        if commit.locks_release:
            self._release_and_wake(curs, commit)
        if commit.locks_extend:
            curs.execute(
                SQL(
                    "UPDATE {s}.{t} l SET lease_until = GREATEST(l.lease_until, x.until)"
                    " FROM unnest(%s::text[], %s::timestamptz[]) AS x(holder, until)"
                    " WHERE l.holder = x.holder AND l.granted"
                ).format(s=Identifier(self.datastore.schema), t=self.locks),
                ([h for h, _ in commit.locks_extend], [u for _, u in commit.locks_extend]),
            )
        if checked:
            self._check(curs, checked)
        if commit.places_checked:
            self._check_places(curs, commit.places_checked)

    def _put_locks(self, curs: Any, rows: Sequence[LockRow]) -> None:
        # One JSON document for the batch: dumping arrays element by element cost more than
        # the statement itself at saturation.
        batch = json.dumps([_lock_json(r) for r in rows])
        curs.execute(
            SQL(
                "INSERT INTO {s}.{t} (name, holder, mode, capacity, ticket, granted, lease_until,"
                " wake_timer, wake) SELECT * FROM jsonb_to_recordset(%s::jsonb) AS x(name text,"
                " holder text, mode text, capacity int, ticket bigint, granted bool,"
                " lease_until timestamptz, wake_timer text, wake jsonb)"
                " ON CONFLICT (name, holder) DO UPDATE SET mode = EXCLUDED.mode,"
                " capacity = EXCLUDED.capacity, ticket = LEAST({t}.ticket, EXCLUDED.ticket),"
                " granted = EXCLUDED.granted, lease_until = EXCLUDED.lease_until,"
                " wake_timer = EXCLUDED.wake_timer, wake = EXCLUDED.wake"
            ).format(s=Identifier(self.datastore.schema), t=self.locks),
            (batch,),
        )

    def _release_and_wake(self, curs: Any, commit: Commit) -> None:
        """Delete the released holders' claims (not the ones this commit writes anew) and give
        the first waiters (by ticket) on each name that lost claims a due-now timer: one more
        than the claims it lost and did not grant again in this commit (``_woken``)."""
        curs.execute(
            SQL(
                "WITH gone AS (DELETE FROM {s}.{t} WHERE holder = ANY(%(rel)s) AND (name, holder)"
                "  NOT IN (SELECT * FROM unnest(%(names)s::text[], %(holders)s::text[]))"
                "  RETURNING name),"
                " taken AS (SELECT name, count(*) AS n FROM unnest(%(taken)s::text[]) AS t(name)"
                "  GROUP BY name),"
                " freed AS (SELECT g.name, greatest(count(*) - coalesce(max(t.n), 0), 0) + 1 AS k"
                "  FROM gone g LEFT JOIN taken t ON t.name = g.name GROUP BY g.name)"
                " INSERT INTO {s}.{timers} (timer_id, due_at, payload)"
                " SELECT DISTINCT ON (wake_timer) wake_timer, now(), wake FROM ("
                "  SELECT l.wake_timer, l.wake, f.k, row_number() OVER"
                "   (PARTITION BY l.name ORDER BY l.ticket) AS n"
                "  FROM {s}.{t} l JOIN freed f ON l.name = f.name"
                "  WHERE NOT l.granted AND l.wake_timer IS NOT NULL"
                "   AND NOT (l.holder = ANY(%(rel)s))) w"
                " WHERE n <= k"
                " ON CONFLICT (timer_id) DO UPDATE SET due_at = LEAST({timers}.due_at, now())"
            ).format(s=Identifier(self.datastore.schema), t=self.locks, timers=self.timers),
            {
                "rel": list(commit.locks_release),
                "names": [r.name for r in commit.locks_put],
                "holders": [r.holder for r in commit.locks_put],
                "taken": [r.name for r in commit.locks_put if r.granted],
            },
        )

    def _check(self, curs: Any, granted: Sequence[LockRow]) -> None:
        """Refuse the commit if a lock it grants clashes with another holder's live claim."""
        curs.execute(
            SQL(
                "SELECT name, holder, mode, capacity, ticket, granted, lease_until FROM {s}.{t}"
                " WHERE name = ANY(%s) AND granted AND (lease_until IS NULL OR lease_until > now())"
            ).format(s=Identifier(self.datastore.schema), t=self.locks),
            (sorted({r.name for r in granted}),),
        )
        held: dict[str, list[LockRow]] = {}
        for row in curs.fetchall():
            held.setdefault(row["name"], []).append(LockRow(**row))
        for row in granted:
            if clashes(row, held.get(row.name, []), datetime.now(UTC)):
                raise LockClash(f"lock {row.name!r} is held by another holder")

    def _check_places(self, curs: Any, places: Sequence[tuple[str, int]]) -> None:
        """Refuse the commit if it takes a slot past its capacity (as ``_CHECK_PLACES``)."""
        names = [name for name, _ in places]
        curs.execute(
            "SELECT DISTINCT hashtext(n) AS k FROM unnest(%s::text[]) AS n ORDER BY 1", (names,)
        )
        for key in [row["k"] for row in curs.fetchall()]:  # the function's keys, in its order
            curs.execute("SELECT pg_advisory_xact_lock(%s, %s)", (self.lock_key, key))
        curs.execute(
            SQL(
                "SELECT name, count(*) AS n FROM {s}.{t} WHERE name = ANY(%s) AND granted"
                " AND (lease_until IS NULL OR lease_until > now()) GROUP BY name"
            ).format(s=Identifier(self.datastore.schema), t=self.locks),
            (names,),
        )
        taken = {row["name"]: row["n"] for row in curs.fetchall()}
        for name, capacity in places:
            if taken.get(name, 0) > capacity:
                raise PlacesTaken(f"every place of {name!r} is taken")


LISTEN_RETRY_S = 1.0  # a lost LISTEN connection is made again after this
RELEASE_LOOK_S = 0.2  # a timer loop looks this soon after a release of lock claims (TimerWake)
_EVENT_FIELDS = ("originator_id", "originator_version", "topic", "state")


def _arrays(rows: Sequence[Any], *fields: str | int) -> list[list[Any] | None]:
    """One array per field (an attribute name or a tuple index) of ``rows``; None for no rows."""
    if not rows:
        return [None] * len(fields)
    return [
        [r[f] for r in rows] if isinstance(f, int) else [getattr(r, f) for r in rows]
        for f in fields
    ]


def _lock_json(row: LockRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "holder": row.holder,
        "mode": row.mode,
        "capacity": row.capacity,
        "ticket": row.ticket,
        "granted": row.granted,
        "lease_until": row.lease_until.isoformat() if row.lease_until else None,
        "wake_timer": row.wake_timer,
        "wake": row.wake,
    }


def _datastore(url: str, schema: str, pool_size: int, pool_min: int | None) -> PostgresDatastore:
    """The library's datastore: ``pool_min`` connections kept while idle (one unless
    ``BATON_DB_POOL_MIN`` says more; each idle connection is a PostgreSQL backend of ~2 MB: four
    per store kept open came to 68 in an idle ``baton up``, issue 32), growing to twice
    ``pool_size`` under load (back down after the pool's ``max_idle``, 10 minutes)."""
    params = conninfo_to_dict(url)
    kept = min(pool_min or 1, pool_size)
    return PostgresDatastore(
        dbname=str(params.get("dbname", "postgres")),
        host=str(params.get("host", "127.0.0.1")),
        port=str(params.get("port", 5432)),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        schema=schema,
        pool_size=kept,
        max_overflow=2 * pool_size - kept,
    )


def ensure_schema(url: str, schema: str) -> None:
    """Create the schema if needed. Services start together: ``IF NOT EXISTS`` alone races (two
    creators both see none, one fails on the catalogue's unique index), so creators take turns
    under the advisory lock the read models' tables are created under too."""
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(77002)")
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


class _Recorded:
    """Events in and out of an ``eventsourcing`` application recorder (either back end)."""

    recorder: Any
    timer_wake: TimerWake
    # Called after every commit that wrote events, from the committing thread: the store's relay
    # (``Relay.kick``), so no writer of the store has to remember to wake it.
    on_events: Callable[[], None] | None = None

    def _committed(self, commit: Commit) -> None:
        self.timer_wake.committed(commit)
        if commit.events and self.on_events is not None:
            self.on_events()

    def commit(self, commit: Commit) -> list[tuple[int, bytes]]:
        """Write it all in one transaction; returns (position, stored bytes) of each new event."""
        stored = [_stored(e) for e in commit.events]
        try:
            ids = self.recorder.insert_events(stored, commit=commit) or []
        except IntegrityError as exc:
            raise ConcurrencyConflict(str(exc)) from None
        self._committed(commit)
        return list(zip(ids, (s.state for s in stored), strict=True))

    def load(self, aggregate_id: UUID, after: int = 0) -> list[Event]:
        """The aggregate's events after version ``after`` (a snapshot's), in order."""
        reg = registry()
        rows = self.recorder.select_events(aggregate_id, gt=after or None)
        return [reg.decode(s.state) for s in rows]

    def versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The last stored version of each of these aggregates (those the store has)."""
        out = {}
        for aggregate_id in aggregate_ids:
            last = self.recorder.select_events(aggregate_id, desc=True, limit=1)
            if last:
                out[aggregate_id] = int(last[0].originator_version)
        return out

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

    recorder: _Recorder

    def __init__(
        self,
        url: str,
        name: str,
        *,
        schema: str = "public",
        pool_size: int = 4,
        pool_min: int | None = None,
    ) -> None:
        self.name = name
        ensure_schema(url, schema)
        self.datastore = _datastore(url, schema, pool_size, pool_min)
        self.recorder = _Recorder(self.datastore, name)
        with psycopg.connect(url, autocommit=True) as conn:
            # Services start together and the library's DDL (types, functions) is not safe to
            # run concurrently: one process at a time creates what is missing.
            conn.execute("SELECT pg_advisory_lock(77001)")
            self.recorder.create_table()
        self._s = Identifier(self.datastore.schema)
        self.url = url
        self._aconn: psycopg.AsyncConnection[Any] | None = None
        self._alock: asyncio.Lock | None = None
        self._due_sql = (
            SQL(
                "SELECT timer_id, due_at, payload FROM {s}.{t} WHERE due_at <= %s "
                "ORDER BY due_at LIMIT %s"
            )
            .format(s=self._s, t=self.recorder.timers)
            .as_string()
        )
        # The due timers, and a row with no id whose time is the earliest one not due yet.
        self._due_next_sql = (
            SQL("({due}) UNION ALL (SELECT NULL, min(due_at), NULL FROM {s}.{t} WHERE due_at > %s)")
            .format(due=SQL(self._due_sql), s=self._s, t=self.recorder.timers)
            .as_string()
        )
        self._max_sql = (
            SQL("SELECT max(notification_id) FROM {s}.{t}")
            .format(s=self._s, t=Identifier(self.recorder.events_table_name))
            .as_string()
        )
        self._after_sql = (
            SQL(
                "SELECT notification_id, state FROM {s}.{t} WHERE notification_id > %s "
                "ORDER BY notification_id LIMIT %s"
            )
            .format(s=self._s, t=Identifier(self.recorder.events_table_name))
            .as_string()
        )
        self.timer_wake = TimerWake()

    def commit(self, commit: Commit) -> list[tuple[int, bytes]]:
        """Write it all in one transaction; returns (position, stored bytes) of each new event.
        One round trip, unless it grants a lock that must be checked against the other holders'
        claims (an exclusive or shared one, not a place in a slot): that takes the library's path."""
        if _checked_lock(commit):
            return super().commit(commit)
        if _empty(commit):
            return []  # nothing to write
        try:
            rows = self.recorder.commit_in_one(commit)
        except IntegrityError as exc:  # the message as the library's path gives it (no CONTEXT)
            raise ConcurrencyConflict(_conflict(exc)) from None
        self._committed(commit)
        return rows

    async def commit_async(self, commit: Commit) -> list[tuple[int, bytes]]:
        """``commit`` from the event loop: the one statement over the store's own async
        connection, so a commit costs no thread hop and no wait for the GIL between the thread
        and the loop (measured in the executor: a commit took 1.8 ms through a thread against
        0.6 ms for the same statement alone). The library's path still runs in a thread."""
        if _checked_lock(commit):
            return await run_sync(self.commit, commit)
        if _empty(commit):
            return []
        statement, events, params = self.recorder.commit_params(commit)
        try:
            ids = [row[0] for row in await self._aexecute(statement, params)]
        except psycopg.IntegrityError as exc:
            raise ConcurrencyConflict(_conflict(exc)) from None
        self._committed(commit)
        return list(zip(ids, (e.state for e in events), strict=True))

    async def _aexecute(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """One prepared statement over the store's own event-loop connection (commits and the
        polls that run often: due timers, the relay's reads); a lost connection is retried, 10
        times as the library retries."""
        if self._alock is None:
            self._alock = asyncio.Lock()
        attempts = 0
        while True:
            try:
                async with self._alock:
                    if self._aconn is None or self._aconn.closed:
                        self._aconn = await psycopg.AsyncConnection.connect(
                            self.url, autocommit=True
                        )
                    cursor = await self._aconn.execute(statement, params, prepare=True)
                    return await cursor.fetchall() if cursor.description else []
            except (psycopg.OperationalError, psycopg.InterfaceError):
                if self._aconn is not None:
                    await self._aconn.close()
                attempts += 1
                if attempts == 10:
                    raise
                await asyncio.sleep(0.2)

    async def due_timers_async(self, now: datetime, limit: int) -> list[Timer]:
        """``due_timers`` from the event loop, without a thread hop (every look of a timer loop).
        The same round trip reads when the next one falls due (``timer_wake.next_due``), so the
        loop can sleep until then."""
        rows = await self._aexecute(self._due_next_sql, (now, limit, now))
        self.timer_wake.next_due = next((r[1] for r in rows if r[0] is None), None)
        return [Timer(*row) for row in rows if row[0] is not None]

    async def max_position_async(self) -> int:
        """``max_position`` from the event loop: has anything been committed since a read?"""
        rows = await self._aexecute(self._max_sql, ())
        return int(rows[0][0] or 0)

    async def raw_notifications_async(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """``raw_notifications`` from the event loop (the relay's reads)."""
        rows = await self._aexecute(self._after_sql, (after, limit))
        return [(n, bytes(state)) for n, state in rows]

    def versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        """``_Recorded.versions`` in one round trip."""
        if not aggregate_ids:
            return {}
        rows = self._query(
            "SELECT originator_id, max(originator_version) AS version FROM {s}.{t}"
            " WHERE originator_id = ANY(%s) GROUP BY originator_id",
            (list(aggregate_ids),),
            t=Identifier(self.recorder.events_table_name),
        )
        return {r["originator_id"]: int(r["version"]) for r in rows}

    @property
    def channel(self) -> str:
        """The channel (LISTEN/NOTIFY) on which a replica that does not relay this store's
        events tells the one that does that it committed some."""
        return f"baton_{zlib.crc32(f'{self.datastore.schema}.{self.name}'.encode()):08x}"

    async def notify_async(self) -> None:
        """Notify ``channel``: a statement of its own after the commit, never inside it (a
        notifying commit waits for every other notifying commit of the cluster)."""
        await self._aexecute("SELECT pg_notify(%s, '')", (self.channel,))

    async def listen(self, woken: Callable[[], None]) -> None:
        """Call ``woken`` for every notification on ``channel``, and each time listening
        starts (what was notified while nobody listened is lost); runs until cancelled, and
        a lost connection is made again."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
                    woken()
                    await notified(conn.pgconn, woken)
            except psycopg.Error as exc:
                log.warning("store %s: listening for commits failed: %s; again", self.name, exc)
            await asyncio.sleep(LISTEN_RETRY_S)

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

    def prune_inbox(self, keep_s: float, batch: int = 10_000) -> int:
        """Delete inbox rows handled more than ``keep_s`` seconds ago, ``batch`` rows per
        transaction (no long lock on a busy table); how many went. A row only has to outlive
        the redeliveries it guards against (``service.inbox_keep``)."""
        gone = 0
        while True:
            rows = self._query(
                "WITH old AS (SELECT ctid FROM {s}.{t} WHERE handled_at < now() - make_interval("
                "secs => %s) LIMIT %s) DELETE FROM {s}.{t} WHERE ctid IN (SELECT ctid FROM old)"
                " RETURNING 1",
                (keep_s, batch),
                t=self.recorder.inbox,
            )
            gone += len(rows)
            if len(rows) < batch:
                return gone

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        rows = self._query(self._due_sql, (now, limit))
        return [Timer(r["timer_id"], r["due_at"], r["payload"]) for r in rows]

    def lock_rows(
        self, names: Sequence[str], holders: Sequence[str] | None = None
    ) -> list[LockRow]:
        """Every claim (held or queued) on these names (of these holders only, if given)."""
        if not names:
            return []
        rows = self._query(
            "SELECT name, holder, mode, capacity, ticket, granted, lease_until FROM {s}.{t}"
            " WHERE name = ANY(%s) AND (%s::text[] IS NULL OR holder = ANY(%s))",
            (list(names), holders and list(holders), holders and list(holders)),
            t=self.recorder.locks,
        )
        return [LockRow(**r) for r in rows]

    def queued(self, name: str, limit: int) -> list[LockRow]:
        """The first ``limit`` claims queued on ``name``, by ticket, with their wake-ups."""
        rows = self._query(
            "SELECT name, holder, mode, capacity, ticket, granted, lease_until, wake_timer, wake"
            " FROM {s}.{t} WHERE name = %s AND NOT granted ORDER BY ticket LIMIT %s",
            (name, limit),
            t=self.recorder.locks,
        )
        return [LockRow(**r) for r in rows]

    def slot_usage(self, names: Sequence[str], now: datetime) -> dict[str, Usage]:
        """Per name: the holders of live claims, and the first queued ticket (None when nobody
        waits). Queued claims are not read one by one: there may be thousands."""
        if not names:
            return {}
        rows = self._query(
            "SELECT name, array_agg(holder) FILTER (WHERE granted AND (lease_until IS NULL OR"
            " lease_until > %s)) AS held, min(ticket) FILTER (WHERE NOT granted) AS first"
            " FROM {s}.{t} WHERE name = ANY(%s) GROUP BY name",
            (now, list(names)),
            t=self.recorder.locks,
        )
        usage: dict[str, Usage] = {n: (set(), None) for n in names}
        usage.update({r["name"]: (set(r["held"] or ()), r["first"]) for r in rows})
        return usage

    def reserve(self, key: str, interval_s: float, now: datetime) -> datetime:
        """Take the next place of a rate (one call per ``interval_s``): when it may run."""
        rows = self._query(
            "INSERT INTO {s}.{t} AS b (key, tat) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
            " SET tat = GREATEST(b.tat, %s) + %s RETURNING tat",
            (key, now + timedelta(seconds=interval_s), now, timedelta(seconds=interval_s)),
            t=self.recorder.buckets,
        )
        return rows[0]["tat"] - timedelta(seconds=interval_s)  # type: ignore[no-any-return]

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
        if self._aconn is not None and not self._aconn.closed:
            self._aconn.pgconn.finish()  # the loop may be gone: close the socket as it is


# --- in memory (unit tests only) ------------------------------------------------------------------


class _MemoryRecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.inbox: set[tuple[str, str]] = set()
        self.timers: dict[str, Timer] = {}
        self.locks: dict[tuple[str, str], LockRow] = {}
        self.buckets: dict[str, datetime] = {}

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
            self._write_locks(commit)
            return self._update_table(stored_events)

    def _write_locks(self, commit: Commit) -> None:
        """The PostgreSQL recorder's lock rules, in memory (checked before anything changes)."""
        now = datetime.now(UTC)
        locks = {k: v for k, v in self.locks.items() if v.holder not in commit.locks_release}
        freed = Counter(k[0] for k in self.locks if k not in locks)
        for row in commit.locks_put:
            old = locks.get((row.name, row.holder))
            locks[(row.name, row.holder)] = (
                replace(row, ticket=min(row.ticket, old.ticket)) if old else row
            )
        for row in commit.locks_put:
            same = [v for (n, _), v in locks.items() if n == row.name]
            if row.granted and row.mode != "slot" and clashes(row, same, now):
                raise LockClash(f"lock {row.name!r} is held by another holder")
        for holder, until in commit.locks_extend:
            for key, row in locks.items():
                if row.holder == holder and row.granted and row.lease_until is not None:
                    locks[key] = replace(row, lease_until=max(row.lease_until, until))
        for name, capacity in commit.places_checked:
            if sum(1 for (n, _), v in locks.items() if n == name and v.live(now)) > capacity:
                raise PlacesTaken(f"every place of {name!r} is taken")
        self.locks = locks
        taken = Counter(r.name for r in commit.locks_put if r.granted)
        for name, k in freed.items():
            queue = sorted(
                (v for v in locks.values() if v.name == name and not v.granted), key=_ticket
            )
            for row in queue[: _woken(k, taken[name])]:
                if row.wake_timer:
                    self.timers[row.wake_timer] = Timer(row.wake_timer, now, row.wake)


class MemoryEventStore(_Recorded):
    """The same contract as PostgresEventStore, in process memory. For unit tests."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.recorder = _MemoryRecorder()
        self.timer_wake = TimerWake()
        self._positions: dict[str, int] = {}
        self._lock = threading.Lock()

    def handled(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        return {m for m in message_ids if (consumer, m) in self.recorder.inbox}

    def prune_inbox(self, keep_s: float, batch: int = 10_000) -> int:
        """The in-memory inbox keeps no times (unit tests): nothing is pruned."""
        return 0

    def due_timers(self, now: datetime, limit: int) -> list[Timer]:
        due = sorted((t for t in self.recorder.timers.values() if t.due_at <= now), key=_due)
        return due[:limit]

    def lock_rows(
        self, names: Sequence[str], holders: Sequence[str] | None = None
    ) -> list[LockRow]:
        return [
            v
            for (n, h), v in self.recorder.locks.items()
            if n in set(names) and (holders is None or h in holders)
        ]

    def queued(self, name: str, limit: int) -> list[LockRow]:
        rows = [r for (n, _), r in self.recorder.locks.items() if n == name and not r.granted]
        return sorted(rows, key=_ticket)[:limit]

    def slot_usage(self, names: Sequence[str], now: datetime) -> dict[str, Usage]:
        rows = self.lock_rows(names)
        return {
            n: (
                {r.holder for r in rows if r.name == n and r.live(now)},
                min((r.ticket for r in rows if r.name == n and not r.granted), default=None),
            )
            for n in names
        }

    def reserve(self, key: str, interval_s: float, now: datetime) -> datetime:
        with self._lock:
            at = max(self.recorder.buckets.get(key, now), now)
            self.recorder.buckets[key] = at + timedelta(seconds=interval_s)
            return at

    def relay_position(self, relay: str) -> int:
        return self._positions.get(relay, 0)

    def set_relay_position(self, relay: str, position: int) -> None:
        with self._lock:
            self._positions[relay] = max(position, self._positions.get(relay, 0))

    async def commit_async(self, commit: Commit) -> list[tuple[int, bytes]]:
        return self.commit(commit)

    async def due_timers_async(self, now: datetime, limit: int) -> list[Timer]:
        later = [t.due_at for t in self.recorder.timers.values() if t.due_at > now]
        self.timer_wake.next_due = min(later, default=None)
        return self.due_timers(now, limit)

    async def raw_notifications_async(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        return self.raw_notifications(after, limit)

    async def max_position_async(self) -> int:
        return self.max_position()

    def close(self) -> None:
        pass


def _checked_lock(commit: Commit) -> bool:
    """Does the commit grant a lock checked against other holders (exclusive or shared)?"""
    return any(r.granted and r.mode != "slot" for r in commit.locks_put)


def _empty(commit: Commit) -> bool:
    return not any(getattr(commit, f.name) for f in fields(Commit))


def _events_only(commit: Commit) -> bool:
    """Nothing but events to write (any other part, a field added later included, takes the
    full function)."""
    return not any(getattr(commit, f.name) for f in fields(Commit) if f.name != "events")


def _conflict(exc: Exception) -> str:
    """The message as the library's path gives it (without the function's CONTEXT lines)."""
    return str(exc).split("\nCONTEXT:")[0]


def _woken(freed: int, taken: int) -> int:
    """How many waiters on a name a commit wakes: one more than the claims it released there
    and did not grant again (a place the executor handed to the first waiter in the same
    commit is taken: waking the next ones only had them ask, find no place and wait again, a
    timer round and a commit each, about one per step at saturation through workers)."""
    return max(freed - taken, 0) + 1


def _due(timer: Timer) -> datetime:
    return timer.due_at


def _timer_id(timer: Timer) -> str:
    return timer.timer_id


def _ticket(row: LockRow) -> int:
    return row.ticket


def gathered(aggregates: Iterable[Aggregate]) -> Commit:
    """One commit of what ``aggregates`` recorded: their events and their timer changes."""
    events: list[Event] = []
    timers: list[Timer] = []
    clear: list[str] = []
    for agg in aggregates:
        events += agg.collect()
        new, gone = agg.collect_timers()
        timers += new
        clear += gone
    return Commit(events=events, timers_set=timers, timers_clear=clear)


def clearing_fired(commit: Commit, fired: Sequence[Timer]) -> Commit:
    """``commit``, with each of the ``fired`` timers it does not set again cleared: a timer
    fires once."""
    handled = {t.timer_id for t in commit.timers_set} | set(commit.timers_clear)
    gone = [t.timer_id for t in fired if t.timer_id not in handled]
    return replace(commit, timers_clear=[*commit.timers_clear, *gone])


def open_store(
    url: str | None, name: str, *, schema: str = "public", pool_min: int | None = None
) -> PostgresEventStore | MemoryEventStore:
    """PostgreSQL for a URL; ``memory://`` (unit tests) for the in-memory store."""
    if not url or url.startswith("memory://"):
        return MemoryEventStore(name)
    return PostgresEventStore(url, name, schema=schema, pool_min=pool_min)


async def commit_of(store: Any, commit: Commit) -> list[tuple[int, bytes]]:
    """Commit from the event loop: on the store's async path when it has one."""
    commit_async = getattr(store, "commit_async", None)
    if commit_async is not None:
        rows: list[tuple[int, bytes]] = await commit_async(commit)
        return rows
    return list(await run_sync(store.commit, commit) or [])  # a view's "commit" returns nothing


class TimerWake:
    """When a service's timer loop should look again: when the earliest timer it saw falls due
    (at most its interval, a slow safety net: another replica may set one sooner), when a timer
    this process commits falls due before it would have looked (at that timer's time: a look
    now would find nothing due, and its round trip would share the store's connection with the
    commits on the latency path, e.g. a chain of pure steps whose first commit sets its resume
    timer), and shortly after it commits a release of lock claims (the store gives the first
    waiters a due-now timer; looks for those are at most ``RELEASE_LOOK_S`` apart, so a busy
    executor does not look per commit). Commits tell it from any thread."""

    def __init__(self) -> None:
        self.next_due: datetime | None = None  # read with the due timers
        self._until: datetime | None = None  # the loop sleeps until then
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._soon: asyncio.TimerHandle | None = None  # a look asked after a release
        self._at: tuple[datetime, asyncio.TimerHandle] | None = None  # a look at a timer's time

    def committed(self, commit: Commit) -> None:
        loop, until = self._loop, self._until
        if loop is None or loop.is_closed():
            return  # no timer loop in this process
        due = min((t.due_at for t in commit.timers_set), default=None)
        if until is not None and due is not None and due < until:
            loop.call_soon_threadsafe(self._wake_at, due)
        if commit.locks_release or (until is None and commit.timers_set):
            loop.call_soon_threadsafe(self._wake_soon)  # or it is looking: it may have missed it

    def _wake_soon(self) -> None:
        if self._soon is None and self._loop is not None:
            self._soon = self._loop.call_later(RELEASE_LOOK_S, self._wake)

    def _wake_at(self, due: datetime) -> None:
        """Look when ``due`` comes (at once if it has), unless a look is set for sooner."""
        if self._loop is None or (self._at is not None and self._at[0] <= due):
            return
        if self._at is not None:
            self._at[1].cancel()
        delay = max(0.0, (due - datetime.now(UTC)).total_seconds())
        self._at = (due, self._loop.call_later(delay, self._wake))

    def _wake(self) -> None:
        self._soon = None
        if self._at is not None:
            self._at[1].cancel()
            self._at = None
        if self._event is not None:
            self._event.set()

    async def sleep(self, interval_s: float) -> None:
        """Until the next timer known falls due, at most ``interval_s``, unless woken."""
        now = datetime.now(UTC)
        wait = interval_s
        if self.next_due is not None:
            wait = min(wait, max(0.0, (self.next_due - now).total_seconds()))
        if self._event is None:
            self._event = asyncio.Event()
            self._loop = asyncio.get_running_loop()
        if self._event.is_set():  # woken while it looked: look again
            self._event.clear()
            return
        self._until = now + timedelta(seconds=wait)
        try:
            await asyncio.wait_for(self._event.wait(), wait)
            self._event.clear()  # this wake-up is used by the look that follows
        except TimeoutError:
            pass
        finally:
            self._until = None


async def notified(pgconn: Any, woken: Callable[[], None]) -> None:
    """Call ``woken`` for each notification that arrives on a listening connection, until the
    connection fails (raised). libpq's own calls, on the event loop's reader of the socket:
    psycopg's ``notifies()`` looks every 0.1 s whether it was interrupted, ten wake-ups a
    second in a process that waits (issue 32)."""
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            pgconn.consume_input()
        except psycopg.Error as exc:
            if not lost.done():
                lost.set_exception(exc)
            return
        while pgconn.notifies() is not None:
            woken()

    loop.add_reader(pgconn.socket, readable)
    try:
        await lost
    finally:
        loop.remove_reader(pgconn.socket)


async def run_sync(fn: Any, *args: Any) -> Any:
    """Run a blocking store call off the event loop."""
    return await asyncio.to_thread(fn, *args)


class LogFold:
    """State folded from a store's notification log: ``catch_up`` hands each event committed
    since the last position to ``_fold`` (a page of ``page`` at a time), so a replica sees what
    any replica committed before it. One thread folds at a time."""

    def __init__(self, store: PostgresEventStore | MemoryEventStore, page: int) -> None:
        self.store = store
        self.position = 0
        self.read = 0  # events folded (a start from a snapshot folds few)
        self._page = page
        self._fold_lock = threading.Lock()

    def catch_up(self) -> None:
        with self._fold_lock:
            while rows := self.store.notifications(self.position, self._page):
                self.read += len(rows)
                for position, event in rows:
                    self._fold(event)
                    self.position = position
                if len(rows) < self._page:
                    return

    def _fold(self, event: Event) -> None:
        raise NotImplementedError
