"""Snapshots of long-lived aggregates: a load reads the newest snapshot and the events after it.

Workspaces, saved plans, webhook endpoints and calendars live as long as the installation, and
each change is an event: a load that folds the whole history grows with it. Every
``BATON_AGGREGATE_SNAPSHOT_EVERY`` events read past the newest snapshot, the loaded state is
written as a new one, so a load reads at most about that many events however long the history.

Stored as the ``eventsourcing`` library stores its snapshots: a second aggregate recorder of the
service (``<service>_snapshots``: originator id, version, topic, state). The library's
``Snapshot`` objects do not fit: they copy the ``__dict__`` of the library's own aggregates
through its transcoder, and these are Baton's aggregates holding typed events. So the state is
written here as tagged JSON (events by their contract, datetimes, ids, tuples, the aggregate's
own dataclasses) with the names of the attributes a new aggregate of the class has: a snapshot of
another shape (the class changed since) or one that does not decode is passed over, and the
history is read from its start. The log stays the truth; a snapshot is only a shortcut.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import AggregateRecorder, IntegrityError, StoredEvent
from eventsourcing.popo import POPOAggregateRecorder
from eventsourcing.postgres import PostgresAggregateRecorder

from baton_common.aggregate import Aggregate
from baton_common.contracts import registry
from baton_common.events import Event
from baton_common.settings import Settings
from baton_common.store import MemoryEventStore, PostgresEventStore

log = logging.getLogger(__name__)
A = TypeVar("A", bound=Aggregate)


class Unsnapshottable(ValueError):
    """A value the snapshot's JSON cannot hold (or give back)."""


class Snapshots:
    """Loads aggregates of one store through snapshots, and takes them as it goes."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        types: Sequence[type] = (),
        every: int | None = None,
    ) -> None:
        self.store = store
        self.every = every or Settings().aggregate_snapshot_every
        self.types = {t.__name__: t for t in types}  # dataclasses the aggregates hold
        self.recorder = _recorder(store)
        self.read = 0  # events read from the store (what a snapshot saves)

    def load(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate as of its last event (None: it has none)."""
        agg = self._newest(cls, aggregate_id)
        events = self.store.load(aggregate_id, after=agg.version if agg else 0)
        self.read += len(events)
        if agg is None:
            agg = cls.rebuild(aggregate_id, events)
        else:
            for event in events:
                agg.apply(event)
        if agg is not None and len(events) >= self.every:
            self._take(agg, events[-1].workspace_id)
        return agg

    def _newest(self, cls: type[A], aggregate_id: UUID) -> A | None:
        rows = self.recorder.select_events(aggregate_id, desc=True, limit=1)
        if not rows:
            return None
        try:
            return thaw(cls, json.loads(rows[0].state), self.types)
        except (Unsnapshottable, ValueError, KeyError, TypeError) as exc:
            log.warning("snapshot of %s %s passed over (%s)", cls.__name__, aggregate_id, exc)
            return None

    def _take(self, agg: Aggregate, workspace_id: str) -> None:
        try:
            state = freeze(agg, workspace_id)
        except Unsnapshottable as exc:
            log.warning("no snapshot of %s %s: %s", type(agg).__name__, agg.id, exc)
            return
        stored = StoredEvent(
            originator_id=agg.id,
            originator_version=agg.version,
            topic=type(agg).__qualname__,
            state=json.dumps(state, separators=(",", ":")).encode(),
        )
        try:
            self.recorder.insert_events([stored])
        except IntegrityError:
            pass  # another load (or replica) took this one already


def freeze(agg: Aggregate, workspace_id: str) -> dict[str, Any]:
    """The aggregate's state as JSON (``workspace_id`` on top: deleting a workspace finds it)."""
    fields = {k: v for k, v in vars(agg).items() if k != "pending"}
    return {"workspace_id": workspace_id, "shape": _shape(type(agg)), "state": _enc(fields)}


def thaw(cls: type[A], doc: dict[str, Any], types: dict[str, type]) -> A:
    if doc["shape"] != _shape(cls):
        raise Unsnapshottable(f"taken of another shape of {cls.__name__}")
    agg = cls.__new__(cls)
    vars(agg).update(_dec(doc["state"], types))
    agg.pending = []
    return agg


def _shape(cls: type[Aggregate]) -> list[str]:
    """The attributes a new aggregate of the class has: what a snapshot must give back."""
    return sorted(k for k in vars(cls(uuid.UUID(int=0))) if k != "pending")


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) and k[:1] != "$" for k in value):
        return {k: _enc(v) for k, v in value.items()}
    kind, data = _tagged(value)
    return {f"${kind}": data}


def _tagged(value: Any) -> tuple[str, Any]:
    if isinstance(value, Event):
        return "event", value.to_json().decode()
    if isinstance(value, datetime):
        return "datetime", value.isoformat()
    if isinstance(value, UUID):
        return "uuid", str(value)
    if isinstance(value, tuple):
        return "tuple", [_enc(v) for v in value]
    if isinstance(value, set | frozenset):
        return "set", [_enc(v) for v in sorted(value)]
    if isinstance(value, dict):
        return "dict", [[_enc(k), _enc(v)] for k, v in value.items()]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return "dataclass", [type(value).__name__, fields]
    raise Unsnapshottable(f"a {type(value).__name__}")


def _dec(value: Any, types: dict[str, type]) -> Any:
    if isinstance(value, list):
        return [_dec(v, types) for v in value]
    if not isinstance(value, dict):
        return value
    tag = next(iter(value), "")
    if len(value) != 1 or tag[:1] != "$":
        return {k: _dec(v, types) for k, v in value.items()}
    data = value[tag]
    match tag:
        case "$event":
            return registry().decode(data.encode())
        case "$datetime":
            return datetime.fromisoformat(data)
        case "$uuid":
            return UUID(data)
        case "$tuple":
            return tuple(_dec(v, types) for v in data)
        case "$set":
            return {_dec(v, types) for v in data}
        case "$dict":
            return {_dec(k, types): _dec(v, types) for k, v in data}
        case "$dataclass":
            return types[data[0]](**{k: _dec(v, types) for k, v in data[1].items()})
    raise Unsnapshottable(f"unknown tag {tag}")


def _recorder(store: PostgresEventStore | MemoryEventStore) -> AggregateRecorder:
    if isinstance(store, MemoryEventStore):
        return POPOAggregateRecorder()
    recorder = PostgresAggregateRecorder(
        store.datastore, events_table_name=f"{store.name}_snapshots"
    )
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(77001)")  # as the store's own tables (see store.py)
        recorder.create_table()
    return recorder
