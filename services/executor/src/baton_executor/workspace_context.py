"""The workspace's shared context: keys every execution of a workspace (and the API) reads.

Each key is an aggregate of its own in the executor's store (its id derived from the workspace
and the key), so two writes of one key race on its version (optimistic concurrency) and writes
of different keys never do. A ``context.set`` step with ``scope: workspace`` puts the key's
event among its execution's new events, just before the step's outcome: both are stored in one
commit with the record of the message that caused them, or neither is (a redelivered message is
already recorded, so nothing is applied twice). A write through the API is its own command,
committed the same way.
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.events import Event
from baton_common.store import MemoryEventStore, PostgresEventStore

from baton_executor.context import ContextValueTooLarge, Written, check_value

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")  # as the gateway's path and the tools' schema


def key_id(workspace: str, key: str) -> UUID:
    """The aggregate id of a workspace's key: the same in every replica, never another's."""
    return uuid5(NAMESPACE_URL, f"baton:context:{workspace}:{key}")


class WorkspaceKey(Aggregate):
    """One key of a workspace's context: its current value (None once deleted)."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.current: Written | None = None

    def on_written(self, e: c.WorkspaceContextWritten) -> None:
        self.current = Written(e.version, e.value, e.written_by, e.step_id)

    def on_deleted(self, e: c.WorkspaceContextDeleted) -> None:
        self.current = None


class WorkspaceContextPort(Protocol):
    """What the Execution aggregate asks of the workspace's context (no I/O in the domain)."""

    def read(self, workspace: str, key: str) -> Written | None: ...

    def write(
        self, workspace: str, key: str, value: Any, written_by: str, **envelope: Any
    ) -> c.WorkspaceContextWritten: ...


class NoWorkspaceContext:
    """Before the application sets the real one (a rebuild never runs a step)."""

    def read(self, workspace: str, key: str) -> Written | None:
        raise RuntimeError("no workspace context here")

    def write(
        self, workspace: str, key: str, value: Any, written_by: str, **envelope: Any
    ) -> c.WorkspaceContextWritten:
        raise RuntimeError("no workspace context here")


class WorkspaceContext:
    """The keys one batch reads and writes, loaded from the store at their first use in it.

    Forgotten at the start of every batch: another replica may have written a key since, and
    a read must see the newest committed value (a write would also be refused by the store if
    it were based on an old version, but a read would not)."""

    def __init__(self, store: PostgresEventStore | MemoryEventStore) -> None:
        self.store = store
        self.keys: dict[UUID, WorkspaceKey] = {}

    def begin(self) -> None:
        self.keys = {}

    def read(self, workspace: str, key: str) -> Written | None:
        return self._load(workspace, key).current

    def write(
        self, workspace: str, key: str, value: Any, written_by: str, **envelope: Any
    ) -> c.WorkspaceContextWritten:
        """Record a new value; the caller commits the event (a step's write goes in its
        execution's events, so the history lists it just before the step's outcome)."""
        agg = self._load(workspace, key)
        event = agg.trigger(
            c.WorkspaceContextWritten,
            key=key,
            value=value,
            version=agg.version + 1,
            written_by=written_by,
            **envelope,
        )
        agg.pending.remove(event)
        return event  # type: ignore[return-value]

    def put(self, request: c.WorkspaceContextPutRequested) -> None:
        """A write or delete through the API: seen by every step dispatched after it."""
        if not _KEY.match(request.key) or _too_large(request.value):
            return  # the gateway refused it already; an old or forged request changes nothing
        agg = self._load(request.workspace_id, request.key)
        who = f"api:{request.actor or 'anonymous'}"
        caused = {"workspace_id": request.workspace_id, "causation_id": request.event_id}
        if not request.delete:
            written = self.write(request.workspace_id, request.key, request.value, who, **caused)
            agg.pending.append(written)  # committed by collect(), with the batch
        elif agg.current is not None:  # deleting a key that has no value changes nothing
            agg.trigger(
                c.WorkspaceContextDeleted,
                key=request.key,
                version=agg.version + 1,
                written_by=who,
                **caused,
            )

    def collect(self) -> list[Event]:
        return [e for agg in self.keys.values() for e in agg.collect()]

    def _load(self, workspace: str, key: str) -> WorkspaceKey:
        uid = key_id(workspace, key)
        agg = self.keys.get(uid)
        if agg is None:
            agg = WorkspaceKey.rebuild(uid, self.store.load(uid)) or WorkspaceKey(uid)
            self.keys[uid] = agg
        return agg


def _too_large(value: Any) -> bool:
    try:
        check_value(value)
    except ContextValueTooLarge:
        return True
    return False
