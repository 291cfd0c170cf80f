"""Every calendar and event of this service, folded from its store's notification log.

Each read catches up from the last position first, so a replica sees what any replica
committed before it; a commit that lost a race (the same event created twice) is refused by
the store's version check, and the caller catches up and finds the winner's event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.sealing import Sealer
from baton_common.snapshots import freeze, thaw
from baton_common.startsnapshots import StartsFromSnapshot
from baton_common.store import LogFold, MemoryEventStore, PostgresEventStore

from baton_calendar.domain import Calendar, CalendarEvent, calendar_id
from baton_calendar.errors import NotFound

PAGE = 5000


class Directory(LogFold, StartsFromSnapshot):
    """Calendars and events by id, as of the store's latest position; ``start`` begins from the
    newest snapshot (``snapshots``), if any, rather than the log's start."""

    def __init__(
        self, store: PostgresEventStore | MemoryEventStore, sealer: Sealer | None = None
    ) -> None:
        super().__init__(store, PAGE)
        self.sealer = sealer or Sealer.in_memory()  # opens CalDAV passwords where they are used
        self.calendars: dict[UUID, Calendar] = {}
        self.events: dict[UUID, CalendarEvent] = {}
        self.by_uid: dict[tuple[str, str], list[UUID]] = {}  # (workspace, uid) -> records

    def _fold(self, event: Event) -> None:
        if isinstance(event, c.CalendarCreated | c.CalendarMarked | c.CalendarDeleted):
            target = self.calendars.setdefault(event.aggregate_id, Calendar(event.aggregate_id))
            target.apply(event)
        elif event.type.startswith("calendar.event_"):
            record = self.events.get(event.aggregate_id)
            if record is None:
                record = self.events[event.aggregate_id] = CalendarEvent(event.aggregate_id)
                ids = self.by_uid.setdefault((event.workspace_id, getattr(event, "uid", "")), [])
                ids.append(event.aggregate_id)
            record.apply(event)

    def refresh(self) -> None:
        self.catch_up()

    def _state(self) -> dict[str, Any]:
        with self._fold_lock:
            return {
                "position": self.position,
                "calendars": [freeze(k, k.workspace_id) for k in self.calendars.values()],
                "events": [freeze(e, e.workspace_id) for e in self.events.values()],
                "by_uid": [
                    [ws, uid, [str(i) for i in ids]] for (ws, uid), ids in self.by_uid.items()
                ],
            }

    def _restore(self, data: dict[str, Any]) -> None:
        calendars = [thaw(Calendar, doc, {}) for doc in data["calendars"]]
        events = [thaw(CalendarEvent, doc, {}) for doc in data["events"]]
        by_uid = {(ws, uid): [UUID(i) for i in ids] for ws, uid, ids in data["by_uid"]}
        with self._fold_lock:
            self.calendars = {k.id: k for k in calendars}
            self.events = {e.id: e for e in events}
            self.by_uid = by_uid

    # --- lookups --------------------------------------------------------------------------------

    def calendar(self, workspace: str, ref: str | None) -> Calendar | None:
        """By id, name or URL, in this workspace; None for the default before it exists."""
        if not ref:
            return next((k for k in self.live(workspace) if k.default), None) or self.calendars.get(
                calendar_id(workspace, "default")
            )
        for cal in self.live(workspace):
            if ref in (str(cal.id), cal.name) or (
                cal.url and cal.url.rstrip("/") == ref.rstrip("/")
            ):
                return cal
        return None

    def need(self, workspace: str, ref: str) -> Calendar:
        found = self.calendar(workspace, ref)
        if found is None:
            raise NotFound(f"calendar: no calendar {ref!r} in this workspace")
        return found

    def live(self, workspace: str) -> Iterator[Calendar]:
        return (
            k
            for k in self.calendars.values()
            if k.workspace_id == workspace and not k.deleted and k.version
        )

    def owned_by(self, workspace: str, email: str) -> list[Calendar]:
        return [k for k in self.live(workspace) if k.owner == email.lower()]

    def event(self, workspace: str, uid: str, calendar: UUID | None = None) -> CalendarEvent | None:
        """The record of a UID (in ``calendar`` if given); a live one before a cancelled one."""
        found = [self.events[i] for i in self.by_uid.get((workspace, uid), [])]
        found = [e for e in found if calendar is None or e.calendar_id == calendar]
        # the event a step made before its copies in booked rooms' calendars (made without a key)
        found.sort(key=lambda e: (e.cancelled, e.idempotency_key is None))
        return found[0] if found else None

    def copies(self, workspace: str, uid: str, original: UUID) -> list[CalendarEvent]:
        """The other live records of a UID in room and equipment calendars: the copies a
        booking made there."""
        found = [self.events[i] for i in self.by_uid.get((workspace, uid), []) if i != original]
        return [e for e in found if not e.cancelled and self._resource(e.calendar_id)]

    def _resource(self, calendar: UUID | None) -> bool:
        cal = self.calendars.get(calendar) if calendar is not None else None
        return cal is not None and cal.resource and not cal.deleted

    def events_of(self, calendar: UUID) -> list[CalendarEvent]:
        return [e for e in self.events.values() if e.calendar_id == calendar and not e.cancelled]

    def builtin_events(self, workspace: str) -> list[CalendarEvent]:
        """Every live event of the workspace's built-in calendars."""
        builtin = {k.id for k in self.live(workspace) if k.backend == "builtin"}
        return [e for e in self.events.values() if e.calendar_id in builtin and not e.cancelled]
