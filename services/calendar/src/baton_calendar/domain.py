"""The Calendar and CalendarEvent aggregates, and the ids that make calls idempotent. No I/O.

A calendar is built in (its events are kept in this service's store, as ICS text) or a CalDAV
collection (the server holds the events; the CalendarEvent aggregates record what Baton wrote
there, which is what makes a retried create find its event instead of making another). The
``on_*`` methods fold events into state; a rebuild lands on the same objects.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.events import Event

DEFAULT_NAME = "default"
RESOURCE_KINDS = ("room", "equipment")


def calendar_id(workspace: str, name: str) -> UUID:
    """A calendar's id from its workspace and name: connecting twice finds the same one."""
    return uuid5(NAMESPACE_URL, f"baton:calendar:{workspace}:{name}")


def uid_for_key(workspace: str, idempotency_key: str) -> str:
    """The UID of the event a step creates: every attempt of the step writes the same one.
    A compensation's key (``<execution>:<step>:compensate``) points at its step's event."""
    key = idempotency_key.removesuffix(":compensate")
    return str(uuid5(NAMESPACE_URL, f"baton:calendar-event:{workspace}:{key}"))


def event_id(calendar: UUID, uid: str) -> UUID:
    """The CalendarEvent aggregate of a UID in a calendar (UIDs are free text, unique within a
    calendar; one event may be copied into several calendars)."""
    return uuid5(NAMESPACE_URL, f"baton:calendar-event-record:{calendar}:{uid}")


class Calendar(Aggregate):
    """A calendar: where its events live, whose it is, and their zone and working hours."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.workspace_id = "default"
        self.name = ""
        self.backend = "builtin"
        self.url: str | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.owner: str | None = None
        self.timezone = "UTC"
        self.working_hours: dict[str, Any] | None = None
        self.default = False
        self.kind: str | None = None  # person | room | equipment
        self.capacity: int | None = None
        self.deleted = False

    def create(self, workspace: str, name: str, actor: str | None = None, **fields: Any) -> None:
        self.trigger(c.CalendarCreated, workspace_id=workspace, name=name, actor=actor, **fields)

    def mark(self, actor: str | None = None, **fields: Any) -> None:
        self.trigger(c.CalendarMarked, workspace_id=self.workspace_id, actor=actor, **fields)

    def delete(self, actor: str | None = None) -> None:
        self.trigger(c.CalendarDeleted, workspace_id=self.workspace_id, actor=actor)

    def on_created(self, e: c.CalendarCreated) -> None:
        self.workspace_id, self.name, self.backend = e.workspace_id, e.name, e.backend
        self.url, self.username, self.password = e.url, e.username, e.password
        self.owner = e.owner.lower() if e.owner else None
        self.timezone, self.working_hours, self.default = e.timezone, e.working_hours, e.default
        self.kind, self.capacity = e.kind, e.capacity
        self.deleted = False

    @property
    def resource(self) -> bool:
        """A room's or equipment's calendar: booked, not invited; free at any hour by default."""
        return self.kind in RESOURCE_KINDS

    def on_marked(self, e: c.CalendarMarked) -> None:
        self.kind = e.kind or self.kind
        self.capacity = e.capacity if e.capacity is not None else self.capacity
        self.owner = e.owner.lower() if e.owner else self.owner
        if self.kind != "room":
            self.capacity = None

    def on_deleted(self, e: c.CalendarDeleted) -> None:
        self.deleted = True

    def view(self) -> dict[str, Any]:
        """What the API shows: never the password."""
        return {
            "id": str(self.id),
            "name": self.name,
            "backend": self.backend,
            "url": self.url,
            "username": self.username,
            "owner": self.owner,
            "timezone": self.timezone,
            "working_hours": self.working_hours,
            "default": self.default,
            "kind": self.kind,
            "capacity": self.capacity,
        }


class CalendarEvent(Aggregate):
    """One event (by UID) in one calendar: its ICS text, and whether it was cancelled."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.workspace_id = "default"
        self.calendar_id: UUID | None = None
        self.uid = ""
        self.ics = ""
        self.cancelled = False
        self.idempotency_key: str | None = None

    def create(self, workspace: str, calendar: UUID, uid: str, ics: str, **envelope: Any) -> None:
        self.trigger(
            c.CalendarEventCreated,
            workspace_id=workspace,
            calendar_id=calendar,
            uid=uid,
            ics=ics,
            **envelope,
        )

    def update(self, ics: str, **envelope: Any) -> None:
        self._change(c.CalendarEventUpdated, ics=ics, **envelope)

    def cancel(self, reason: str | None, **envelope: Any) -> None:
        self._change(c.CalendarEventCancelled, reason=reason, **envelope)

    def _change(self, event: type[Event], **fields: Any) -> None:
        """An event of this (created) event: it names the workspace, calendar and UID again."""
        assert self.calendar_id is not None
        self.trigger(
            event,
            workspace_id=self.workspace_id,
            calendar_id=self.calendar_id,
            uid=self.uid,
            **fields,
        )

    def on_event_created(self, e: c.CalendarEventCreated) -> None:
        self.workspace_id, self.calendar_id, self.uid = e.workspace_id, e.calendar_id, e.uid
        self.ics, self.idempotency_key, self.cancelled = e.ics, e.idempotency_key, False

    def on_event_updated(self, e: c.CalendarEventUpdated) -> None:
        self.ics, self.cancelled = e.ics, False

    def on_event_cancelled(self, e: c.CalendarEventCancelled) -> None:
        self.cancelled = True
