"""ICS text in and out (``icalendar``), and what a calendar's events mean for a time window
(recurrences expanded by ``recurring-ical-events``: RRULE, RDATE, EXDATE, moved instances;
what an expansion may cost is bounded first, see ``recurrence``).

Each stored event is one VCALENDAR text holding one UID (its master and overridden instances),
with the VTIMEZONEs it uses, so it can be written to a CalDAV server or exported as it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import recurring_ical_events
from icalendar import Calendar as ICalendar
from icalendar import Event as IEvent
from icalendar import vCalAddress

from baton_calendar import recurrence
from baton_calendar.errors import BadInput

PRODID = "-//Baton//calendar//EN"
RESOURCE_CUTYPES = ("ROOM", "RESOURCE")
_TZID = re.compile(r"TZID=\"?([^:;\"]+)")


@dataclass(frozen=True)
class Occurrence:
    """One instance of an event in a window, in UTC; ``all_day`` ones span whole days."""

    uid: str
    title: str
    start: datetime
    end: datetime
    status: str  # CONFIRMED | TENTATIVE | CANCELLED
    transparent: bool
    all_day: bool
    attendees: tuple[str, ...]
    organizer: str | None

    def view(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "status": self.status.lower(),
            "busy": not self.transparent,
            "all_day": self.all_day,
            "attendees": list(self.attendees),
        }


def mailto(who: str) -> str:
    return who if who.lower().startswith("mailto:") else f"mailto:{who}"


def plain(address: Any) -> str:
    return str(address).removeprefix("mailto:").removeprefix("MAILTO:")


def build(
    uid: str,
    title: str,
    start: datetime,
    end: datetime,
    *,
    attendees: Iterable[str] = (),
    resources: Iterable[tuple[str, str, str]] = (),
    description: str | None = None,
    location: str | None = None,
    sequence: int = 0,
    stamp: datetime | None = None,
) -> str:
    """One event as VCALENDAR text; times keep their zone (a VTIMEZONE is added for it)."""
    cal = ICalendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    event = IEvent()
    event.add("uid", uid)
    event.add("dtstamp", stamp or datetime.now(UTC))
    event.add("summary", title)
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("sequence", sequence)
    for person in attendees:
        event.add("attendee", vCalAddress(mailto(person)))
    for address, name, kind in resources:
        event.add("attendee", resource_address(address, name, kind))
    if description:
        event.add("description", description)
    if location:
        event.add("location", location)
    cal.add_component(event)
    _add_zones(cal, start)
    return str(cal.to_ical().decode())


def resource_address(address: str, name: str, kind: str) -> vCalAddress:
    """A booked room or piece of equipment as an attendee (RFC 5545 ``CUTYPE``): it is there,
    it does not take part."""
    value = vCalAddress(mailto(address))
    value.params["CUTYPE"] = "ROOM" if kind == "room" else "RESOURCE"
    value.params["ROLE"] = "NON-PARTICIPANT"
    value.params["CN"] = name
    return value


def _is_resource(address: Any) -> bool:
    params = getattr(address, "params", {})
    return str(params.get("CUTYPE", "")).upper() in RESOURCE_CUTYPES


def _add_zones(cal: ICalendar, around: date | datetime) -> None:
    """VTIMEZONEs for the zones the events use, with the transitions of the years around the
    event (the library's default spans 1970-2038: kilobytes per event, and most of a slot
    search's time went to parsing them). Readers resolve IANA TZIDs by name anyway."""
    day = around.date() if isinstance(around, datetime) else around
    cal.add_missing_timezones(
        first_date=date(day.year - 1, 1, 1), last_date=date(day.year + 6, 1, 1)
    )


def parse(text: str, field: str = "ics") -> ICalendar:
    """A calendar to change (a fresh object)."""
    try:
        return ICalendar.from_ical(text)
    except (ValueError, IndexError, KeyError) as exc:
        raise BadInput(field, f"not an iCalendar document: {exc}") from None


@functools.lru_cache(maxsize=16384)
def parsed(text: str) -> ICalendar:
    """A calendar to read, parsed once per text: stored events are read again by every slot
    search and conflict check, and parsing is most of their cost. Never change it."""
    return parse(text)


def clear_cache() -> None:
    parsed.cache_clear()


def split(text: str) -> dict[str, str]:
    """An ICS document (a whole calendar, say) to one VCALENDAR text per UID."""
    cal = parse(text)
    zones = [c for c in cal.walk("VTIMEZONE")]
    by_uid: dict[str, list[Any]] = {}
    for event in cal.walk("VEVENT"):
        uid = str(event.get("uid") or "")
        if not uid:
            raise BadInput("ics", f"an event without a UID ({event.get('summary')!r})")
        recurrence.check_importable(event)
        by_uid.setdefault(uid, []).append(event)
    out = {}
    for uid, events in by_uid.items():
        one = ICalendar()
        one.add("prodid", PRODID)
        one.add("version", "2.0")
        used = set(_TZID.findall(b"".join(e.to_ical() for e in events).decode()))
        for component in [*(z for z in zones if str(z.get("tzid")) in used), *events]:
            one.add_component(component)
        out[uid] = one.to_ical().decode()
    return out


def join(texts: Iterable[str], name: str | None = None) -> str:
    """Many stored events as one VCALENDAR (an export); each time zone once."""
    cal = ICalendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    if name:
        cal.add("x-wr-calname", name)
    zones: set[str] = set()
    for text in texts:
        for component in parse(text).subcomponents:
            if component.name == "VTIMEZONE":
                tzid = str(component.get("tzid"))
                if tzid in zones:
                    continue
                zones.add(tzid)
            cal.add_component(component)
    return str(cal.to_ical().decode())


def summary_of(text: str) -> dict[str, Any]:
    """The master event's fields, for tool outputs and lists."""
    event = next(iter(parsed(text).walk("VEVENT")))
    return {
        "uid": str(event.get("uid")),
        "title": str(event.get("summary") or ""),
        "start": _as_text(event.decoded("dtstart")),
        "end": _as_text(event.decoded("dtend")) if event.get("dtend") else None,
        "attendees": [plain(a) for a in _list(event.get("attendee")) if not _is_resource(a)],
        "resources": [plain(a) for a in _list(event.get("attendee")) if _is_resource(a)],
        "description": str(event.get("description") or "") or None,
        "location": str(event.get("location") or "") or None,
        "sequence": int(event.get("sequence") or 0),
    }


def occurrences(texts: Iterable[str], start: datetime, end: datetime) -> list[Occurrence]:
    """Every instance overlapping [start, end), cancelled ones left out; ``BadInput`` if the
    expansion would cost more than ``recurrence`` allows (checked before each expansion)."""
    out: list[Occurrence] = []
    walked = 0
    for text in texts:
        cal = parsed(text)
        walked += sum(recurrence.steps(e, end) for e in cal.walk("VEVENT") if e.get("rrule"))
        recurrence.check_query(walked, len(out))
        for event in recurring_ical_events.of(cal).between(start, end):
            occurrence = _occurrence(event)
            if occurrence.status != "CANCELLED" and occurrence.end > start:
                out.append(occurrence)
    recurrence.check_query(walked, len(out))
    out.sort(key=lambda o: (o.start, o.uid))
    return out


def _occurrence(event: Any) -> Occurrence:
    begin = event.decoded("dtstart")
    finish = event.decoded("dtend") if event.get("dtend") else None
    all_day = not isinstance(begin, datetime)
    start = _utc(begin)
    if finish is None:
        finish_dt = start + (timedelta(days=1) if all_day else timedelta(0))
    else:
        finish_dt = _utc(finish)
    transp = str(event.get("transp") or "OPAQUE").upper()
    return Occurrence(
        uid=str(event.get("uid")),
        title=str(event.get("summary") or ""),
        start=start,
        end=finish_dt,
        status=str(event.get("status") or "CONFIRMED").upper(),
        transparent=transp == "TRANSPARENT",
        all_day=all_day,
        attendees=tuple(plain(a).lower() for a in _list(event.get("attendee"))),
        organizer=plain(event.get("organizer")).lower() if event.get("organizer") else None,
    )


def _utc(value: date | datetime, tz: tzinfo = UTC) -> datetime:
    """A DATE is its midnight (UTC here; all-day busy time is re-read in the attendee's zone)."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(0), tz)
    return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)


def _as_text(value: date | datetime) -> str:
    return value.isoformat()


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def modify(text: str, changes: dict[str, Any]) -> str:
    """The master event with new fields (its recurrence rules and exceptions kept), its
    SEQUENCE one higher. ``changes`` holds summary, dtstart, dtend, attendees, description,
    location; a None value leaves the field as it is."""
    cal = parse(text)
    master = next(e for e in cal.walk("VEVENT") if e.get("recurrence-id") is None)
    for name in ("summary", "dtstart", "dtend", "description", "location"):
        if changes.get(name) is not None:
            master.pop(name, None)
            master.add(name, changes[name])
    if changes.get("attendees") is not None:  # the people; booked resources stay
        kept = [a for a in _list(master.pop("attendee", None)) if _is_resource(a)]
        for person in changes["attendees"]:
            master.add("attendee", vCalAddress(mailto(person)))
        for address in kept:
            master.add("attendee", address)
    sequence = int(master.get("sequence") or 0) + 1
    master.pop("sequence", None)
    master.add("sequence", sequence)
    _add_zones(cal, master.decoded("dtstart"))
    return str(cal.to_ical().decode())
