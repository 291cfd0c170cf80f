"""Calendars and their events (the calendar service)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from baton_common.contracts.calls import ServiceCall, ServiceReply
from baton_common.events import Event

Json = dict[str, Any]


# --- calendars (owned by the calendar service) ----------------------------------------------------
# A Calendar is built in (its events kept here, as ICS text) or a CalDAV collection (the server
# holds the events; these events record what Baton did to it). A CalendarEvent's aggregate id is
# derived from its UID, and a tool's UID from the step's idempotency key: one event per step.


class CalendarCreated(Event):
    """A calendar: ``builtin`` (kept in Baton's store) or ``caldav`` (connected by URL). The
    CalDAV password travels sealed (``sealing.py``), like webhook secrets: only the calendar
    service opens it; events from before sealing hold it in clear and are read as they are."""

    TYPE = "calendar.created"

    name: str
    backend: Literal["builtin", "caldav"] = "builtin"
    url: str | None = None
    username: str | None = None
    password: str | None = None
    owner: str | None = None  # the attendee (e-mail) whose calendar this is
    timezone: str = "UTC"
    working_hours: Json | None = None
    default: bool = False
    # A resource's calendar (``room`` or ``equipment``; its ``owner`` is the address it is invited
    # by) or a ``person``'s; None: not said (a person's, when it has an owner).
    kind: Literal["person", "room", "equipment"] | None = None
    capacity: int | None = None  # the people a room holds


class CalendarMarked(Event):
    """A connected calendar is marked as a person's, a room's or equipment's (a room with its
    capacity); ``owner``, when given, becomes its address. What is not given stays as it was."""

    TYPE = "calendar.marked"

    kind: Literal["person", "room", "equipment"] | None = None
    capacity: int | None = None
    owner: str | None = None


class CalendarDeleted(Event):
    """The calendar is forgotten (a CalDAV collection itself is left as it is)."""

    TYPE = "calendar.deleted"


class _EventChange(Event):
    """A change to one event (by its ``uid``) of a calendar."""

    calendar_id: UUID
    uid: str


class CalendarEventCreated(_EventChange):
    """An event written to a calendar, as ICS text (one VCALENDAR with its VEVENTs)."""

    TYPE = "calendar.event_created"

    ics: str
    idempotency_key: str | None = None


class CalendarEventUpdated(_EventChange):
    """The event's new ICS text."""

    TYPE = "calendar.event_updated"

    ics: str


class CalendarEventCancelled(_EventChange):
    """The event is gone from its calendar (a saga's compensation, or a person's cancel)."""

    TYPE = "calendar.event_cancelled"

    reason: str | None = None


def calendar_rpc_subject(root: str) -> str:
    """Where the calendar service answers the gateway (NATS request/reply, queue group calendar)."""
    return f"{root}_rpc.calendar.call"


class CalendarCall(ServiceCall):
    """One operation of the calendars API (``calendar.connect``, ``slots.find``, …), forwarded by
    the gateway for the caller's workspace."""


class CalendarReply(ServiceReply):
    """The calendar service's answer: an HTTP status, a reason when it failed, and a body."""
