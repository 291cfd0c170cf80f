"""The calendar application: calendars, the calendar tools and the API's operations.

Everything here is synchronous (the store and the CalDAV client are): the tool consumer and the
request/reply server call it from a thread. Writes follow one order: check the input, write to
the CalDAV server (when the calendar is there), then commit the event to the store. A crash
between the last two is repaired by the retry, which writes the same UID again.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from uuid import UUID

from baton_common.aggregate import Aggregate
from baton_common.sealing import Sealer
from baton_common.snapshots import Snapshots
from baton_common.store import Commit, ConcurrencyConflict, MemoryEventStore, PostgresEventStore

from baton_calendar import ics, slots
from baton_calendar.availability import Availability, summary
from baton_calendar.backends import CalDav, texts_of
from baton_calendar.directory import Directory
from baton_calendar.domain import (
    DEFAULT_NAME,
    RESOURCE_KINDS,
    Calendar,
    CalendarEvent,
    calendar_id,
    event_id,
    uid_for_key,
)
from baton_calendar.errors import (
    AskFirst,
    BadInput,
    CalendarError,
    Conflicts,
    NotFound,
    ServerError,
)
from baton_calendar.times import check_span, check_window, parse_bound, parse_time, zone

log = logging.getLogger(__name__)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Rows = list[tuple[int, bytes]]
ATTEMPTS = 3
CONFLICT_POLICIES = ("fail", "warn", "ask")
KINDS = ("person", *RESOURCE_KINDS)


def locked(method: F) -> F:
    """One operation at a time per process: the directory is shared state (calendar work is
    human-scale; replicas, not threads, are how it scales)."""

    @functools.wraps(method)
    def run(self: CalendarApp, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class CalendarApp:
    """Calendars and their events in one workspace at a time, as asked."""

    def __init__(
        self, store: PostgresEventStore | MemoryEventStore, sealer: Sealer | None = None
    ) -> None:
        self.store = store
        self.snapshots = Snapshots(store)  # calendars live as long as their workspace
        self.sealer = sealer or Sealer.in_memory()
        self.directory = Directory(store, self.sealer)
        self.availability = Availability(self.directory)
        self.committed: Callable[[Rows], None] = lambda rows: None
        self.lock = threading.RLock()

    def _load(self, aggregate_id: UUID) -> CalendarEvent | None:
        """A fresh copy to write on (the directory's objects change only by folding commits)."""
        return CalendarEvent.rebuild(aggregate_id, self.store.load(aggregate_id))

    def _record(self, ws: str, uid: str, calendar: UUID | None = None) -> CalendarEvent | None:
        known = self.directory.event(ws, uid, calendar)
        return self._load(known.id) if known is not None else None

    # --- commits ----------------------------------------------------------------------------------

    def _commit(self, aggregates: Iterable[Aggregate]) -> None:
        events = [e for a in aggregates for e in a.collect()]
        if events:
            self.committed(self.store.commit(Commit(events=events)))
        self.directory.catch_up()

    def retrying(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a caught-up directory; a lost race (another replica committed the
        same aggregate first) is run again on the news, where it usually finds the winner's."""
        for attempt in range(ATTEMPTS):
            self.directory.catch_up()
            try:
                return fn()
            except ConcurrencyConflict:
                if attempt == ATTEMPTS - 1:
                    raise
                log.info("calendar: a concurrent write won; reading again")
        raise AssertionError("unreachable")

    # --- calendars --------------------------------------------------------------------------------

    @locked
    def connect(self, ws: str, body: dict[str, Any], actor: str | None = None) -> dict[str, Any]:
        """A calendar: CalDAV when ``url`` is given (reached and authorised first), else built in."""
        return self.retrying(lambda: self._connect(ws, body, actor))

    def _connect(self, ws: str, body: dict[str, Any], actor: str | None) -> dict[str, Any]:
        name = str(body.get("name") or "").strip()
        if not name:
            raise BadInput("name", "a calendar needs a name")
        if self.directory.calendar(ws, name) is not None:
            raise CalendarError(f"name: a calendar called {name!r} exists already")
        tz = body.get("timezone") or "UTC"
        zone(tz)
        slots.Hours.parse(body.get("working_hours"), "working_hours")
        kind, capacity = _kind(body)
        url = body.get("url")
        if url:  # reached and authorised first: nothing is stored for a server that says no
            try:
                CalDav.reach(url, body.get("username"), body.get("password")).check()
            except ServerError as exc:  # the caller's URL or credentials: theirs to fix (422)
                raise BadInput("url", f"{exc.detail}; nothing was stored") from None
        cal = self._named(ws, name)
        cal.create(
            ws,
            name,
            actor,
            backend="caldav" if url else "builtin",
            url=url,
            username=body.get("username"),
            password=self._seal(body.get("password")),
            owner=body.get("owner"),
            timezone=tz,
            working_hours=body.get("working_hours"),
            default=bool(body.get("default")),
            kind=kind,
            capacity=capacity,
        )
        self._commit([cal])
        return cal.view()

    def _seal(self, password: Any) -> str | None:
        return self.sealer.seal(str(password)) if password else None

    def _caldav(self, cal: Calendar) -> CalDav:
        return CalDav.of(cal, self.sealer)

    @locked
    def calendars(self, ws: str) -> list[dict[str, Any]]:
        self.directory.catch_up()
        return sorted((k.view() for k in self.directory.live(ws)), key=lambda v: v["name"])

    @locked
    def get(self, ws: str, ref: str) -> dict[str, Any]:
        self.directory.catch_up()
        return self.directory.need(ws, ref).view()

    @locked
    def mark(
        self, ws: str, ref: str, body: dict[str, Any], actor: str | None = None
    ) -> dict[str, Any]:
        """Mark a connected calendar as a person's, a room's or equipment's (rooms with their
        capacity), checked as when connecting one."""

        def run() -> dict[str, Any]:
            found = self.directory.need(ws, ref)
            cal = self.snapshots.load(Calendar, found.id)
            assert cal is not None
            changes = {k: body.get(k) for k in ("kind", "capacity", "owner")}
            merged = {"kind": cal.kind, "owner": cal.owner}
            merged |= {k: v for k, v in changes.items() if v is not None}
            kind, capacity = _kind(merged)
            cal.mark(actor, kind=kind, capacity=capacity, owner=changes["owner"])
            self._commit([cal])
            return cal.view()

        return self.retrying(run)

    @locked
    def delete(self, ws: str, ref: str, actor: str | None = None) -> None:
        def run() -> None:
            found = self.directory.need(ws, ref)
            cal = self.snapshots.load(Calendar, found.id)
            assert cal is not None
            cal.delete(actor)
            self._commit([cal])
            # Committed first: a failed delete leaves a calendar whose password still opens.
            self.sealer.destroy([cal.password])

        self.retrying(run)

    def _target(self, ws: str, ref: str | None) -> Calendar:
        """The calendar a tool writes to; the workspace's default is made on first use."""
        found = self.directory.calendar(ws, ref)
        if found is not None:
            return found
        if ref and ref != DEFAULT_NAME:
            raise NotFound(f"calendar: no calendar {ref!r} in this workspace (connect it first)")
        cal = self._named(ws, DEFAULT_NAME)
        cal.create(ws, DEFAULT_NAME, None, default=True)
        return cal

    def _named(self, ws: str, name: str) -> Calendar:
        """The calendar a name makes, to create: a deleted one of that name goes on from its
        history (its id is the name's, so a new aggregate would repeat its versions)."""
        cid = calendar_id(ws, name)
        return self.snapshots.load(Calendar, cid) or Calendar(cid)

    # --- the tools --------------------------------------------------------------------------------

    @locked
    def create_event(
        self, ws: str, data: dict[str, Any], key: str, **envelope: Any
    ) -> dict[str, Any]:
        return self.retrying(lambda: self._create(ws, data, key, envelope))

    def _create(
        self, ws: str, data: dict[str, Any], key: str, envelope: dict[str, Any]
    ) -> dict[str, Any]:
        uid = uid_for_key(ws, key)
        done = self.directory.event(ws, uid)
        if done is not None:  # a retry of a create that was recorded: the same event
            return self._output(done, [])
        cal = self._target(ws, data.get("calendar"))
        _, start, end = _span(data)
        attendees = list(data.get("attendees") or [])
        booked = self.availability.resources(ws, data.get("resources"), "resources")
        _check_capacity(booked, attendees)
        conflicts = self._check(ws, cal, attendees, start, end, uid, data, booked)
        text = ics.build(
            uid,
            data["title"],
            start,
            end,
            attendees=attendees,
            resources=[(k.owner or k.name, k.name, str(k.kind)) for k in booked],
            description=data.get("description"),
            location=data.get("location"),
        )
        # The event itself, and a copy in each booked room's or equipment's calendar: that is
        # where their busy time is read (a server may not deliver invitations to them).
        record = self._write(ws, cal, uid, text, idempotency_key=key, **envelope)
        copies = [self._write(ws, k, uid, text, **envelope) for k in booked if k.id != cal.id]
        self._commit([cal, record, *copies])
        return self._output(record, conflicts)

    def _write(self, ws: str, cal: Calendar, uid: str, text: str, **fields: Any) -> CalendarEvent:
        if cal.backend == "caldav":
            self._caldav(cal).put(text)
        record = CalendarEvent(event_id(cal.id, uid))
        record.create(ws, cal.id, uid, text, **fields)
        return record

    def _calendar_of(self, record: CalendarEvent) -> Calendar:
        assert record.calendar_id is not None
        return self.directory.calendars[record.calendar_id]

    def _copies(self, ws: str, record: CalendarEvent) -> list[CalendarEvent]:
        """The live copies of an event in booked rooms' and equipment's calendars."""
        found = self.directory.copies(ws, record.uid, record.id)
        return [k for k in (self._load(k.id) for k in found) if k is not None]

    @locked
    def update_event(
        self, ws: str, data: dict[str, Any], key: str, **envelope: Any
    ) -> dict[str, Any]:
        return self.retrying(lambda: self._update(ws, data, envelope))

    def _update(self, ws: str, data: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
        record, cal, current = self._find(ws, data["uid"], data.get("calendar"))
        old = ics.summary_of(current)
        tz = zone(data.get("timezone"))
        start = (
            parse_time(data["start"], "start", tz) if data.get("start") else _read(old["start"], tz)
        )
        end = parse_time(data["end"], "end", tz) if data.get("end") else _read(old["end"], tz)
        check_span(start, end)
        attendees = data.get("attendees", old["attendees"])
        copies = [(self._calendar_of(k), k) for k in self._copies(ws, record)]
        booked = [target for target, _ in copies]
        conflicts = self._check(ws, cal, attendees, start, end, record.uid, data, booked)
        changes = {
            "summary": data.get("title"),
            "dtstart": start,
            "dtend": end,
            "attendees": data.get("attendees"),
            "description": data.get("description"),
            "location": data.get("location"),
        }
        if _unchanged(old, changes):  # a retry of an update that went through
            return self._output(record, conflicts)
        text = ics.modify(current, changes)
        for target, copy in [(cal, record), *copies]:  # the event and its copies in rooms
            if target.backend == "caldav":
                self._caldav(target).put(text)
            copy.update(text, **envelope)
        self._commit([record, *(copy for _, copy in copies)])
        return self._output(record, conflicts)

    def _find(self, ws: str, uid: str, ref: str | None) -> tuple[CalendarEvent, Calendar, str]:
        """The event's record, calendar and current text (the server's, for CalDAV); an event
        Baton did not create (imported elsewhere) gets a record now."""
        named = self.directory.need(ws, ref) if ref else None
        record = self._record(ws, uid, named.id if named else None)
        if record is not None and record.calendar_id is not None:
            cal = self.directory.calendars[record.calendar_id]
        else:
            cal = named or self._target(ws, None)
        text = self._caldav(cal).get(uid) if cal.backend == "caldav" else None
        text = text or (record.ics if record is not None and not record.cancelled else None)
        if text is None:
            raise NotFound(f"uid: no event {uid!r} in calendar {cal.name!r}")
        if record is None:
            record = CalendarEvent(event_id(cal.id, uid))
            record.create(ws, cal.id, uid, text)
        return record, cal, text

    @locked
    def cancel_event(
        self, ws: str, data: dict[str, Any], key: str, **envelope: Any
    ) -> dict[str, Any]:
        uid = data.get("uid") or (uid_for_key(ws, key) if key.endswith(":compensate") else None)
        if not uid:
            raise BadInput("uid", "which event? give its uid (or use it as a compensation)")
        return self.retrying(lambda: self._cancel(ws, str(uid), data, envelope))

    def _cancel(
        self, ws: str, uid: str, data: dict[str, Any], envelope: dict[str, Any]
    ) -> dict[str, Any]:
        record = self._record(ws, uid)
        if record is None or record.calendar_id is None:
            return {"uid": uid, "cancelled": False}  # nothing was made (or not by Baton)
        todo = [r for r in [record, *self._copies(ws, record)] if not r.cancelled]
        for one in todo:  # the event and its copies in booked rooms' calendars
            cal = self._calendar_of(one)
            if cal.backend == "caldav":
                self._caldav(cal).delete(uid)
            one.cancel(data.get("reason"), **envelope)
        self._commit(todo)
        return {**self._output(record, []), "cancelled": True}

    @locked
    def list_events(self, ws: str, data: dict[str, Any]) -> dict[str, Any]:
        self.directory.catch_up()
        tz = zone(data.get("timezone"))
        start, end = _window(data, tz)
        cal = self.directory.calendar(ws, data.get("calendar"))
        if cal is None and data.get("calendar") not in (None, DEFAULT_NAME):
            raise NotFound(f"calendar: no calendar {data['calendar']!r} in this workspace")
        texts = texts_of(cal, self.directory) if cal is not None else []
        return {"events": [o.view() for o in ics.occurrences(texts, start, end)]}

    @locked
    def check_conflicts(self, ws: str, data: dict[str, Any]) -> dict[str, Any]:
        self.directory.catch_up()
        _, start, end = _span(data)
        cal = self.directory.calendar(ws, data.get("calendar")) if data.get("calendar") else None
        booked = self.availability.resources(ws, data.get("resources"), "resources")
        found = self.availability.conflicts(
            ws, cal, list(data.get("attendees") or []), start, end, data.get("uid"), booked
        )
        return {"conflicts": found, "count": len(found), "summary": summary(found)}

    @locked
    def find_slots(
        self, ws: str, data: dict[str, Any], now: datetime | None = None
    ) -> dict[str, Any]:
        self.directory.catch_up()
        query = self.availability.query(ws, data, now)
        return {"slots": slots.find(query)}

    def _check(
        self,
        ws: str,
        cal: Calendar,
        attendees: list[str],
        start: datetime,
        end: datetime,
        uid: str,
        data: dict[str, Any],
        booked: list[Calendar],
    ) -> list[dict[str, Any]]:
        """The conflicts of a write, or what its policy makes of them: an error (``fail``) or
        a question for a person (``ask``), which the executor turns into an approval gate."""
        policy = _policy(data)
        found = self.availability.conflicts(
            ws, cal if cal.version else None, attendees, start, end, uid, booked
        )
        if found and policy == "fail":
            raise Conflicts(f"conflict: {summary(found)} (conflict: fail)", found)
        if found and policy == "ask":
            raise AskFirst(
                f"conflict: {summary(found)} (conflict: ask: waiting for a person)",
                _question(found, cal, start, end, data),
            )
        return found

    def _output(self, record: CalendarEvent, conflicts: list[dict[str, Any]]) -> dict[str, Any]:
        summary = ics.summary_of(record.ics)
        cal = self.directory.calendars.get(record.calendar_id) if record.calendar_id else None
        return {
            "uid": record.uid,
            "calendar": cal.name if cal else DEFAULT_NAME,
            "title": summary["title"],
            "start": summary["start"],
            "end": summary["end"] or summary["start"],
            "attendees": summary["attendees"],
            "resources": summary["resources"],
            "conflicts": conflicts,
            "cancelled": record.cancelled,
        }

    # --- ICS --------------------------------------------------------------------------------------

    @locked
    def export_ics(self, ws: str, ref: str) -> str:
        self.directory.catch_up()
        cal = self.directory.need(ws, ref)
        return ics.join(texts_of(cal, self.directory), cal.name)

    @locked
    def import_ics(self, ws: str, ref: str, text: str, actor: str | None = None) -> dict[str, Any]:
        """Every event of the document (all parsed before anything is written)."""
        self.directory.catch_up()
        self.directory.need(ws, ref)  # another workspace's calendar is a 404, whatever the body
        events = ics.split(text)
        return self.retrying(lambda: self._import(ws, ref, events, actor))

    def _import(
        self, ws: str, ref: str, events: dict[str, str], actor: str | None
    ) -> dict[str, Any]:
        cal = self.directory.need(ws, ref)
        records = []
        for uid, text in events.items():
            record = self._load(event_id(cal.id, uid)) or CalendarEvent(event_id(cal.id, uid))
            if cal.backend == "caldav":
                self._caldav(cal).put(text)
            if record.version:
                record.update(text, actor=actor)
            else:
                record.create(ws, cal.id, uid, text, actor=actor)
            records.append(record)
        self._commit(records)
        return {"calendar": cal.name, "imported": len(records), "uids": sorted(events)}


# --- input helpers --------------------------------------------------------------------------------


def _span(data: dict[str, Any]) -> tuple[tzinfo, datetime, datetime]:
    """Start and end, in ``timezone`` when given (so the event carries that zone), else UTC."""
    tz = zone(data.get("timezone"))
    start = parse_time(data["start"], "start", tz).astimezone(tz)
    end = parse_time(data["end"], "end", tz).astimezone(tz)
    check_span(start, end)
    return tz, start, end


def _window(data: dict[str, Any], tz: tzinfo) -> tuple[datetime, datetime]:
    now = datetime.now(tz)
    start = parse_bound(data["window_start"], "window_start", tz, now)
    end = parse_bound(data["window_end"], "window_end", tz, now, end=True)
    check_window(start, end)
    return start, end


def _check_capacity(booked: list[Calendar], attendees: list[str]) -> None:
    for i, room in enumerate(booked):
        if room.capacity is not None and room.capacity < len(attendees):
            raise BadInput(
                f"resources.{i}",
                f"room {room.name!r} holds {room.capacity}, and {len(attendees)} are invited",
            )


def _kind(body: dict[str, Any]) -> tuple[str | None, int | None]:
    """A calendar's kind and a room's capacity, checked: a resource is booked by its address
    (``owner``), so it needs one."""
    kind, capacity = body.get("kind"), body.get("capacity")
    if kind is not None and kind not in KINDS:
        raise BadInput("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    if kind in RESOURCE_KINDS and not body.get("owner"):
        raise BadInput("owner", f"a {kind} needs its address (owner: room-4@example.com, say)")
    if capacity is None:
        return kind, None
    if kind != "room":
        raise BadInput("capacity", "only a room has a capacity (kind: room)")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise BadInput("capacity", f"{capacity!r} is not a number of people (1 or more)")
    return kind, capacity


def _policy(data: dict[str, Any]) -> str:
    policy = str(data.get("conflict") or "warn")
    if policy not in CONFLICT_POLICIES:
        raise BadInput("conflict", f"{policy!r} is not one of fail, warn, ask")
    return policy


def _question(
    found: list[dict[str, Any]], cal: Calendar, start: datetime, end: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """``conflict: ask``'s question: the conflicts (titles, times, calendars) and the event
    asked for; approved as it is, the step runs again with ``conflict: warn`` (books it)."""
    wanted = {"title": data.get("title"), "start": start.isoformat(), "end": end.isoformat()}
    keep = ("who", "calendar", "title", "start", "end", "uid")
    return {
        "reason": "conflicts",
        "message": f"{summary(found)}. Approve to book it anyway, edit the input (another "
        "time, say), or reject to stop.",
        "context": {
            "conflicts": [{k: c.get(k) for k in keep} for c in found],
            "count": len(found),
            "event": {**wanted, "calendar": cal.name},
        },
        "input": {**data, "conflict": "warn"},
    }


def _read(value: str, tz: tzinfo) -> datetime:
    return parse_time(value, "start", tz)


def _unchanged(old: dict[str, Any], changes: dict[str, Any]) -> bool:
    same = (
        (changes["summary"] is None or changes["summary"] == old["title"])
        and _read(old["start"], changes["dtstart"].tzinfo) == changes["dtstart"]
        and _read(old["end"], changes["dtend"].tzinfo) == changes["dtend"]
        and (changes["attendees"] is None or list(changes["attendees"]) == old["attendees"])
    )
    return same and all(
        changes[k] is None or changes[k] == old[k] for k in ("description", "location")
    )
