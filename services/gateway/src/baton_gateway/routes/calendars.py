"""Calendars: connect a CalDAV calendar (or make a built-in one), import and export ICS, list
events, find free slots and check conflicts.

Each call is forwarded to the calendar service, which owns the Calendar and CalendarEvent
aggregates, over NATS request/reply with the caller's workspace: a CalDAV calendar is reached
and authorised before it is stored, and a write is committed before the answer. Another
workspace's calendar is a 404, said by the service.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from baton_common.contracts import CalendarCall, CalendarReply, calendar_rpc_subject
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from baton_gateway.domain import Principal
from baton_gateway.routes.deps import Reader, Runner, services_of
from baton_gateway.routes.rpc import Forward, Forwarding
from baton_gateway.services import Services

router = APIRouter(prefix="/v1/calendars", tags=["calendars"])
RPC_TIMEOUT_S = 30.0  # a CalDAV server may take its time; the service bounds each call at 15 s
MAX_ICS_BYTES = 5 * 1024 * 1024


class CalendarBody(BaseModel):
    """A calendar: CalDAV when ``url`` is given (checked before it is stored), else built in."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
    url: str | None = Field(None, pattern=r"^https?://", max_length=2000)
    username: str | None = Field(None, max_length=200)
    password: str | None = Field(None, max_length=500)
    owner: str | None = Field(None, max_length=320, description="whose calendar (an e-mail)")
    timezone: str | None = Field(None, description="the owner's IANA zone")
    working_hours: dict[str, Any] | None = Field(
        None, description='{start: "09:00", end: "17:00", days: [mon, …, fri]}'
    )
    default: bool = False
    kind: Literal["person", "room", "equipment"] | None = Field(
        None, description="a room's or equipment's calendar (its owner is its address)"
    )
    capacity: int | None = Field(None, ge=1, le=100000, description="the people a room holds")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        """A URL with a host and a valid port (``http://`` alone is no server to reach)."""
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if not parts.hostname:
            raise ValueError("the URL has no host (e.g. https://dav.example.com/calendars/me/)")
        if port == 0:
            raise ValueError("the URL's port cannot be 0")
        return value


class MarkBody(BaseModel):
    """What a connected calendar is: a person's, a room's or equipment's."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["person", "room", "equipment"] | None = None
    capacity: int | None = Field(None, ge=1, le=100000, description="the people a room holds")
    owner: str | None = Field(None, max_length=320, description="its address (an e-mail)")


class SlotsBody(BaseModel):
    """The input of ``calendar.find_slots``."""

    model_config = ConfigDict(extra="allow")
    attendees: list[Any] = Field(min_length=1, max_length=200)
    duration_minutes: float
    window_start: str
    window_end: str
    resources: list[str] | None = Field(
        None, max_length=50, description="rooms or equipment that must all be free"
    )
    rooms: list[str] | Literal["any"] | None = Field(
        None, description='rooms one of which must be free ("any": every room); slots name it'
    )
    min_capacity: int | None = Field(
        None, ge=1, description="the people the room must hold (default: the attendees)"
    )


class ConflictsBody(BaseModel):
    """The input of ``calendar.check_conflicts``."""

    model_config = ConfigDict(extra="allow")
    start: str
    end: str
    resources: list[str] | None = Field(
        None, max_length=50, description="rooms or equipment whose calendars count too"
    )


call = Forward(
    calendar_rpc_subject, CalendarCall, CalendarReply, "the calendar service", RPC_TIMEOUT_S
)


forward = Forwarding(router, call, key="calendar", path_type=str)
forward.add(
    "POST",
    "calendar.connect",
    "connect",
    Runner,
    ok=201,
    body=CalendarBody,
    doc="Connect a CalDAV calendar (``url``, ``username``, ``password``) or make a built-in one.",
)
forward.add("GET", "calendar.list", "list_calendars", Reader)
forward.add(
    "POST /slots",
    "slots.find",
    "find_slots",
    Reader,
    body=SlotsBody,
    doc="Ranked free slots across attendees: ``{slots: [{start, end, score, reason, room?}]}``.",
)
forward.add("POST /conflicts", "conflicts.check", "check_conflicts", Reader, body=ConflictsBody)
forward.add("GET /{calendar}", "calendar.get", "get_calendar", Reader)
forward.add(
    "PATCH /{calendar}",
    "calendar.mark",
    "mark_calendar",
    Runner,
    body=MarkBody,
    doc="Mark a calendar as a room (with its capacity), equipment or a person's; the calendar.",
)
forward.add(
    "DELETE /{calendar}",
    "calendar.delete",
    "delete_calendar",
    Runner,
    ok=204,
    doc="Forget the calendar (a CalDAV collection itself is left as it is).",
)


@router.get("/{calendar}/events")
async def list_events(
    calendar: str,
    window_start: str = Query(description="ISO-8601, or today / tomorrow / a weekday"),
    window_end: str = Query(description="ISO-8601, or a day word (its end)"),
    timezone: str | None = None,
    who: Principal = Reader,
    s: Services = Depends(services_of),
) -> Response:
    """Events in the window, recurrences expanded."""
    body = {"calendar": calendar, "window_start": window_start, "window_end": window_end}
    if timezone:
        body["timezone"] = timezone
    return await call(s, who, "events.list", 200, **body)


@router.get("/{calendar}/ics")
async def export_ics(
    calendar: str, who: Principal = Reader, s: Services = Depends(services_of)
) -> Response:
    """The calendar as one iCalendar document."""
    reply = await call.ask(s, who, "ics.export", {"calendar": calendar})
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    return Response(reply.body["ics"], media_type="text/calendar; charset=utf-8")


@router.post(
    "/{calendar}/ics",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/calendar": {"schema": {"type": "string", "maxLength": MAX_ICS_BYTES}}
            },
        }
    },
)
async def import_ics(
    calendar: str, request: Request, who: Principal = Runner, s: Services = Depends(services_of)
) -> Response:
    """Import an iCalendar document (the body, ``text/calendar``): every event, parsed first."""
    raw = await request.body()
    if len(raw) > MAX_ICS_BYTES:
        raise HTTPException(413, f"at most {MAX_ICS_BYTES} bytes of ICS per import")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the ICS document is not UTF-8") from None
    return await call(s, who, "ics.import", 201, calendar=calendar, ics=text)
