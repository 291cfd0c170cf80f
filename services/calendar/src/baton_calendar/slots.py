"""Free slots across attendees: the ranking is ours (no library does it); the calendars'
meaning (recurrences, all-day, free/busy, tentative) comes from ``ics.occurrences``.

A candidate start is tried every ``granularity`` minutes inside the window (after the minimum
notice). It is a slot when, for every required attendee, it lies inside their working hours (in
their own zone) and nothing busy of theirs overlaps it widened by the buffers. Optional
attendees and tentative events do not exclude a slot: they lower its score, and the reason says
so. Suggestions do not overlap each other, so five suggestions are five choices.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

from baton_calendar.errors import BadInput
from baton_calendar.ics import Occurrence
from baton_calendar.times import zone

DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DEFAULT_HOURS: dict[str, Any] = {"start": "09:00", "end": "17:00", "days": DAY_NAMES[:5]}
ALL_HOURS: dict[str, Any] = {"start": "00:00", "end": "00:00", "days": DAY_NAMES}  # rooms
OPTIONAL_WEIGHT = 0.4  # all optional attendees missing costs this much of a perfect 1.0
TENTATIVE_PENALTY = 0.15
PREFERRED_BONUS = 0.1


@dataclass(frozen=True)
class Hours:
    """Working hours: a daily span on some weekdays (0 = Monday), in the attendee's zone."""

    start: time
    end: time
    days: frozenset[int]

    @classmethod
    def parse(cls, data: dict[str, Any] | None, field_: str) -> Hours:
        data = {**DEFAULT_HOURS, **(data or {})}
        start, end = _clock(data["start"], f"{field_}.start"), _clock(data["end"], f"{field_}.end")
        if end <= start and end != time(0):
            raise BadInput(
                f"{field_}.end", f"working hours end ({end}) before they start ({start})"
            )
        return cls(start, end, frozenset(_weekday(d, f"{field_}.days") for d in data["days"]))


def _clock(value: Any, field_: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise BadInput(field_, f"{value!r} is not a time of day such as 09:00") from None


def _weekday(value: Any, field_: str) -> int:
    if isinstance(value, int) and 1 <= value <= 7:
        return value - 1  # ISO: 1 = Monday
    text = str(value).lower()[:3]
    if text in DAY_NAMES:
        return DAY_NAMES.index(text)
    raise BadInput(field_, f"{value!r} is not a weekday (mon…sun or 1…7)")


@dataclass
class Attendee:
    """Who must (or may) come: their zone, working hours and what keeps them busy."""

    email: str
    tz: tzinfo = UTC
    hours: Hours = field(default_factory=lambda: Hours.parse(None, "working_hours"))
    optional: bool = False
    busy: list[Occurrence] = field(default_factory=list)
    name: str = ""  # a room's calendar name (what a slot names it by)


@dataclass
class Query:
    """What ``calendar.find_slots`` was asked, read and checked."""

    attendees: list[Attendee]
    duration: timedelta
    window_start: datetime
    window_end: datetime
    tz: tzinfo = UTC
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    min_notice: timedelta = timedelta(0)
    granularity: timedelta = timedelta(minutes=15)
    preferred: list[tuple[time, time]] = field(default_factory=list)
    max_results: int = 5
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    rooms: list[Attendee] = field(default_factory=list)  # one of them must be free, best first


class _Calendar:
    """One attendee as sorted epoch-second arrays: working spans, hard busy, tentative."""

    def __init__(self, who: Attendee, query: Query) -> None:
        self.who = who
        self.work = _merge(_working_spans(who, query.window_start, query.window_end))
        hard = [_span(o, who.tz) for o in who.busy if not o.transparent and o.status != "TENTATIVE"]
        soft = [_span(o, who.tz) for o in who.busy if not o.transparent and o.status == "TENTATIVE"]
        self.busy, self.tentative = _merge(hard), _merge(soft)

    def at_work(self, s: float, e: float) -> bool:
        starts, ends = self.work
        i = bisect.bisect_right(starts, s) - 1
        return i >= 0 and ends[i] >= e

    @staticmethod
    def overlaps(spans: tuple[list[float], list[float]], s: float, e: float) -> float | None:
        """The end of the first span overlapping [s, e), or None."""
        starts, ends = spans
        i = bisect.bisect_right(ends, s)
        return ends[i] if i < len(starts) and starts[i] < e else None


def _span(o: Occurrence, tz: tzinfo) -> tuple[float, float]:
    if o.all_day:  # a day off is the attendee's own day, in their zone
        start = datetime.combine(o.start.date(), time(0), tz)
        end = datetime.combine(o.end.date(), time(0), tz)
        return start.timestamp(), end.timestamp()
    return o.start.timestamp(), o.end.timestamp()


def _working_spans(who: Attendee, start: datetime, end: datetime) -> list[tuple[float, float]]:
    day = start.astimezone(who.tz).date() - timedelta(days=1)
    last = end.astimezone(who.tz).date() + timedelta(days=1)
    spans = []
    while day <= last:
        if day.weekday() in who.hours.days:
            begin = datetime.combine(day, who.hours.start, who.tz)
            finish_day = day + timedelta(days=1) if who.hours.end == time(0) else day
            spans.append(
                (begin.timestamp(), datetime.combine(finish_day, who.hours.end, who.tz).timestamp())
            )
        day += timedelta(days=1)
    return spans


def _merge(spans: Iterable[tuple[float, float]]) -> tuple[list[float], list[float]]:
    starts: list[float] = []
    ends: list[float] = []
    for s, e in sorted(spans):
        if starts and s <= ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def find(query: Query) -> list[dict[str, Any]]:
    """Ranked, non-overlapping slots: ``[{start, end, score, reason}]``."""
    calendars = [_Calendar(a, query) for a in query.attendees]
    required = [c for c in calendars if not c.who.optional]
    optional = [c for c in calendars if c.who.optional]
    rooms = [_Calendar(r, query) for r in query.rooms]
    candidates = []
    for s in _starts(query):
        e = s + query.duration.total_seconds()
        if not all(_free(c, s, e, query) for c in required):
            continue
        room = next((r for r in rooms if _free(r, s, e, query)), None)
        if rooms and room is None:
            continue  # none of the rooms is free then
        candidates.append(_rank(s, e, required, optional, query, room))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    return [_slot(c, query) for c in _spread(candidates, query.max_results)]


def _starts(query: Query) -> Iterable[float]:
    step = query.granularity.total_seconds()
    earliest = max(query.window_start, query.now + query.min_notice).timestamp()
    first = query.window_start.timestamp()
    first += max(0.0, -(-(earliest - first) // step) * step)  # on the grid, from the window start
    last = query.window_end.timestamp() - query.duration.total_seconds()
    s = first
    while s <= last:
        yield s
        s += step


def _free(c: _Calendar, s: float, e: float, query: Query) -> bool:
    widened = (s - query.buffer_before.total_seconds(), e + query.buffer_after.total_seconds())
    return c.at_work(s, e) and _Calendar.overlaps(c.busy, *widened) is None


Ranked = tuple[float, float, float, str, str | None]  # score, start, end, reason, room


def _rank(
    s: float,
    e: float,
    required: Sequence[_Calendar],
    optional: Sequence[_Calendar],
    query: Query,
    room: _Calendar | None = None,
) -> Ranked:
    score, notes = 1.0, []
    missing = [c.who.email for c in optional if not _free(c, s, e, query)]
    if optional:
        score -= OPTIONAL_WEIGHT * len(missing) / len(optional)
    tentative = [c.who.email for c in required if _Calendar.overlaps(c.tentative, s, e)]
    if tentative:
        score -= TENTATIVE_PENALTY
        notes.append(f"tentative events for {', '.join(tentative)}")
    if missing:
        notes.append(f"optional {', '.join(missing)} not available")
    elif optional:
        notes.append(f"optional {', '.join(c.who.email for c in optional)} available too")
    if _preferred(s, e, query):
        score += PREFERRED_BONUS
        notes.append("in the preferred hours")
    people = ", ".join(c.who.email for c in required)
    reason = f"free for all {len(required)} required ({people}) within their working hours"
    if room is not None:
        notes.insert(0, f"room {room.who.name} is free")
    name = room.who.name if room is not None else None
    return round(score, 3), s, e, "; ".join([reason, *notes]), name


def _preferred(s: float, e: float, query: Query) -> bool:
    start = datetime.fromtimestamp(s, query.tz)
    end = datetime.fromtimestamp(e, query.tz)
    return start.date() == end.date() and any(
        a <= start.time() and end.time() <= b for a, b in query.preferred
    )


def _spread(ranked: list[Ranked], limit: int) -> list[Ranked]:
    """The best ones that do not overlap a better one already chosen."""
    chosen: list[Ranked] = []
    for candidate in ranked:
        if all(candidate[2] <= c[1] or candidate[1] >= c[2] for c in chosen):
            chosen.append(candidate)
            if len(chosen) == limit:
                break
    return chosen


def _slot(ranked: Ranked, query: Query) -> dict[str, Any]:
    score, s, e, reason, room = ranked
    slot = {
        "start": datetime.fromtimestamp(s, query.tz).isoformat(),
        "end": datetime.fromtimestamp(e, query.tz).isoformat(),
        "score": score,
        "reason": reason,
    }
    return {**slot, "room": room} if room is not None else slot


def preferred_spans(items: list[dict[str, Any]]) -> list[tuple[time, time]]:
    """``[{start: "10:00", end: "12:00"}]`` in the organiser's zone."""
    return [
        (_clock(p.get("start"), f"preferred.{i}.start"), _clock(p.get("end"), f"preferred.{i}.end"))
        for i, p in enumerate(items)
    ]


def attendee_zone(name: str | None, index: int) -> tzinfo:
    return zone(name, f"attendees.{index}.timezone")
