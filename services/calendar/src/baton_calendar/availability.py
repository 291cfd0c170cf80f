"""Who is free when: attendees' busy time from their calendars, slot queries and conflicts.

An attendee's busy time is the events of the calendars they own (any back end) and of the
calendars a query names for them, plus built-in events that list them as attendees.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from baton_calendar import ics, slots
from baton_calendar.backends import texts_of
from baton_calendar.directory import Directory
from baton_calendar.domain import Calendar
from baton_calendar.errors import BadInput
from baton_calendar.times import check_window, parse_bound, zone


class Availability:
    """Slot queries and conflicts over a caught-up directory."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def query(self, ws: str, data: dict[str, Any], now: datetime | None) -> slots.Query:
        tz = zone(data.get("timezone"))
        now = now or datetime.now(tz)
        start = parse_bound(data["window_start"], "window_start", tz, now)
        end = parse_bound(data["window_end"], "window_end", tz, now, end=True)
        check_window(start, end)
        duration = _minutes(data["duration_minutes"], "duration_minutes", positive=True)
        if duration > end - start:
            raise BadInput("duration_minutes", "longer than the search window")
        people = [
            *data["attendees"],
            *({"email": e, "optional": True} for e in data.get("optional_attendees") or []),
        ]
        defaults = data.get("working_hours")
        attendees = [self._attendee(ws, p, i, defaults, start, end) for i, p in enumerate(people)]
        needed = self.resources(ws, data.get("resources"), "resources")
        attendees += [self._booked(k, start, end) for k in needed]
        rooms = self._rooms(ws, data, len(people))
        return slots.Query(
            attendees=attendees,
            rooms=[self._booked(k, start, end) for k in rooms],
            duration=duration,
            window_start=start,
            window_end=end,
            tz=tz,
            buffer_before=_minutes(data.get("buffer_before_minutes", 0), "buffer_before_minutes"),
            buffer_after=_minutes(data.get("buffer_after_minutes", 0), "buffer_after_minutes"),
            min_notice=_minutes(data.get("min_notice_minutes", 0), "min_notice_minutes"),
            granularity=_minutes(
                data.get("granularity_minutes", 15), "granularity_minutes", positive=True
            ),
            preferred=slots.preferred_spans(list(data.get("preferred") or [])),
            max_results=int(data.get("max_results", 5)),
            now=now,
        )

    def _attendee(
        self, ws: str, person: Any, i: int, defaults: Any, start: datetime, end: datetime
    ) -> slots.Attendee:
        spec = person if isinstance(person, dict) else {"email": person}
        email = str(spec["email"]).lower()
        owned = self.directory.owned_by(ws, email)
        profile = owned[0] if owned else None
        tz_name = spec.get("timezone") or (profile.timezone if profile else None)
        hours = (
            spec.get("working_hours") or (profile.working_hours if profile else None) or defaults
        )
        if hours is None and profile is not None and profile.resource:
            hours = slots.ALL_HOURS  # a room has no working day unless it says so
        refs = [self.directory.need(ws, r) for r in spec.get("calendars") or []]
        texts = self.busy_texts(ws, email, [*refs, *owned])
        pad = timedelta(days=1)  # all-day events are days in the attendee's zone
        return slots.Attendee(
            email=email,
            tz=slots.attendee_zone(tz_name, i),
            hours=slots.Hours.parse(hours, f"attendees.{i}.working_hours"),
            optional=bool(spec.get("optional")),
            busy=ics.occurrences(texts, start - pad, end + pad),
        )

    # --- rooms and equipment -------------------------------------------------------------------

    def resources(self, ws: str, refs: Any, field: str) -> list[Calendar]:
        """Room and equipment calendars by name, id, URL or address; anything else is refused."""
        if refs is None:
            return []
        if not isinstance(refs, list):
            raise BadInput(field, "a list of room or equipment calendars (names or addresses)")
        return [self._resource(ws, str(ref), f"{field}.{i}") for i, ref in enumerate(refs)]

    def _resource(self, ws: str, ref: str, field: str) -> Calendar:
        found = self.directory.calendar(ws, ref) or next(
            (k for k in self.directory.owned_by(ws, ref) if k.resource), None
        )
        if found is None:
            raise BadInput(field, f"no calendar {ref!r} in this workspace")
        if not found.resource:
            raise BadInput(field, f"calendar {found.name!r} is not a room or equipment (kind)")
        return found

    def _rooms(self, ws: str, data: dict[str, Any], people: int) -> list[Calendar]:
        """``rooms``: the rooms one of which the meeting needs (``"any"``: every room of the
        workspace), those that hold ``min_capacity`` (default: everyone asked), smallest first."""
        refs = data.get("rooms")
        if refs is None:
            return []
        if refs == "any":
            found = [k for k in self.directory.live(ws) if k.kind == "room"]
        else:
            found = self.resources(ws, refs, "rooms")
            if bad := next((k for k in found if k.kind != "room"), None):
                raise BadInput("rooms", f"calendar {bad.name!r} is {bad.kind}, not a room")
        need = data.get("min_capacity")
        need = people if need is None else need
        if isinstance(need, bool) or not isinstance(need, int) or need < 1:
            raise BadInput("min_capacity", f"{need!r} is not a number of people (1 or more)")
        fit = [k for k in found if k.capacity is None or k.capacity >= need]
        if not fit:
            sizes = ", ".join(f"{k.name} {k.capacity}" for k in found) or "no rooms"
            raise BadInput("rooms", f"no room holds {need} people ({sizes})")
        return sorted(fit, key=lambda k: k.capacity if k.capacity is not None else 1 << 30)

    def _booked(self, cal: Calendar, start: datetime, end: datetime) -> slots.Attendee:
        """A room or piece of equipment as someone who must be free: its calendar's events,
        and built-in events that invite its address; its hours, or any hour."""
        address = cal.owner or cal.name
        pad = timedelta(days=1)
        texts = self.busy_texts(cal.workspace_id, address, [cal])
        return slots.Attendee(
            email=address,
            name=cal.name,
            tz=zone(cal.timezone),
            hours=slots.Hours.parse(cal.working_hours or slots.ALL_HOURS, "working_hours"),
            busy=ics.occurrences(texts, start - pad, end + pad),
        )

    def busy_texts(self, ws: str, email: str, calendars: list[Calendar]) -> list[str]:
        """Their own calendars' events, and built-in events that list them as attendees."""
        return [text for _, text in self.busy_sources(ws, email, calendars)]

    def busy_sources(self, ws: str, email: str, calendars: list[Calendar]) -> list[tuple[str, str]]:
        """``busy_texts`` with the name of the calendar each event was found in."""
        found: dict[str, tuple[str, str]] = {}
        for cal in {k.id: k for k in calendars}.values():
            for text in texts_of(cal, self.directory):
                found.setdefault(_uid_of(text), (cal.name, text))
        for record in self.directory.builtin_events(ws):
            if f"mailto:{email}" in record.ics.lower():
                name = self.directory.calendars[record.calendar_id].name  # type: ignore[index]
                found.setdefault(record.uid, (name, record.ics))
        return list(found.values())

    def conflicts(
        self,
        ws: str,
        cal: Calendar | None,
        attendees: list[str],
        start: datetime,
        end: datetime,
        exclude: str | None,
        resources: list[Calendar] | None = None,
    ) -> list[dict[str, Any]]:
        """Busy events overlapping [start, end): who (or which room) they keep busy, and in
        which calendar."""
        sources: list[tuple[str, list[tuple[str, str]]]] = []
        for res in resources or []:
            address = res.owner or res.name
            sources.append((f"{res.kind} {res.name}", self.busy_sources(ws, address, [res])))
        if cal is not None:
            texts = texts_of(cal, self.directory)
            sources.append((f"calendar {cal.name}", [(cal.name, t) for t in texts]))
        for who in attendees:
            email = who.lower()
            owned = self.directory.owned_by(ws, email)
            sources.append((email, self.busy_sources(ws, email, owned)))
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for who, named in sources:
            for calendar, texts in _by_calendar(named).items():
                for o in ics.occurrences(texts, start, end):
                    if o.uid != exclude and not o.transparent and o.start < end and o.end > start:
                        key = (who, o.uid, o.start.isoformat())
                        found.setdefault(key, {"who": who, "calendar": calendar, **o.view()})
        return list(found.values())


def _by_calendar(named: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for calendar, text in named:
        grouped.setdefault(calendar, []).append(text)
    return grouped


def _minutes(value: Any, field: str, positive: bool = False) -> timedelta:
    try:
        minutes = float(value)
    except (TypeError, ValueError):
        raise BadInput(field, f"{value!r} is not a number of minutes") from None
    if minutes < 0 or (positive and minutes <= 0):
        raise BadInput(
            field, f"must be {'more than' if positive else 'at least'} 0 minutes, not {value}"
        )
    return timedelta(minutes=minutes)


def _uid_of(text: str) -> str:
    return str(next(iter(ics.parsed(text).walk("VEVENT"))).get("uid"))


def summary(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no conflicts"
    parts = [
        f"{c['who']}: {c['title'] or c['uid']} {c['start']}–{c['end']} ({c['calendar']})"
        for c in found[:10]
    ]
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    return f"{len(found)} conflicting event(s): " + "; ".join(parts) + more
