"""Reading times, zones and windows from tool inputs, with errors that name the field.

Times are ISO-8601 with an offset (``2026-11-26T10:00:00+01:00``) or a zone in brackets
(``2026-11-26T10:00[Europe/Paris]``); a time without either is read in ``timezone``. A search
window may also be a day word (``today``, ``tomorrow``, ``thursday``: the next one after today),
so a plan made from words stays the same plan whatever day it runs.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from baton_calendar.errors import BadInput

MAX_WINDOW = timedelta(days=366)
_BRACKET = re.compile(r"^(?P<when>[^\[]+)\[(?P<zone>[^\]]+)\]$")
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def zone(name: str | None, field: str = "timezone") -> tzinfo:
    """An IANA zone by name (``UTC`` when not given); unknown names are refused."""
    if not name or name.upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(
            field, f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)"
        ) from None


def parse_time(value: str, field: str, tz: tzinfo = UTC) -> datetime:
    """An aware datetime from ISO-8601 text; a date alone is its midnight in ``tz``."""
    text = value.strip()
    bracket = _BRACKET.match(text)
    if bracket:
        text, tz = bracket["when"], zone(bracket["zone"], field)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(field, f"{value!r} is not an ISO-8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=tz)


def parse_bound(value: str, field: str, tz: tzinfo, now: datetime, end: bool = False) -> datetime:
    """A window bound: a time, or a day word (its start, or its end when ``end``)."""
    word = value.strip().lower().removeprefix("next ").removeprefix("on ")
    day = _day_word(word, now.astimezone(tz).date())
    if day is None:
        return parse_time(value, field, tz)
    start = datetime.combine(day, time(0), tz)
    return start + timedelta(days=1) if end else start


def _day_word(word: str, today: date) -> date | None:
    if word == "today":
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    if word in _DAYS:  # the next one: "on thursday", said on a Thursday, is next week's
        return today + timedelta(days=(_DAYS.index(word) - today.weekday() - 1) % 7 + 1)
    return None


def check_span(start: datetime, end: datetime, names: tuple[str, str] = ("start", "end")) -> None:
    """``end`` after ``start``."""
    if end <= start:
        raise BadInput(
            names[1],
            f"{names[1]} ({end.isoformat()}) must be after {names[0]} ({start.isoformat()})",
        )


def check_window(start: datetime, end: datetime) -> None:
    """A search window: ordered, and at most a year long (what a person plans ahead)."""
    check_span(start, end, ("window_start", "window_end"))
    if end - start > MAX_WINDOW:
        raise BadInput(
            "window_end",
            f"the window is {(end - start).days} days long; at most "
            f"{MAX_WINDOW.days} days are searched",
        )


def iso(when: datetime) -> str:
    return when.isoformat()
