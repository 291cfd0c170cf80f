"""Calendar requests: "find a 30 minute slot for ann and bob on thursday and book a review" is a
slot search, then the booking at the slot found. Days stay words (resolved when the step runs), so
the same request gives the same plan on any day. The booking's compensation cancels the event it
made.
"""

from __future__ import annotations

import re
from typing import Any

from baton_common.catalogue import Catalogue

from baton_planner.offline.explaining import PlanRefused, StepExplanation
from baton_planner.offline.words import STOP, clip

_CAL_SLOT = re.compile(r"\b(?:time\s+)?slots?\b|\bavailability\b|\bfree\s+time\b", re.I)
_CAL_BOOK = re.compile(r"\b(?:book|schedule|set\s+up|arrange)\b(?P<what>[^.;!?]*)", re.I)
_CAL_UNIT = re.compile(
    r"^(?:\d+(?:\.\d+)?(?:-?(?:minutes?|mins?|hours?|hrs?|h))?|minutes?|mins?|hours?|hrs?)$", re.I
)
_CAL_END = frozenset("with for on at and to between today tomorrow".split())
_CAL_MEETING = re.compile(r"\b(?:meeting|review|call|sync|appointment|interview|standup)\b", re.I)
_CAL_WHO = re.compile(
    r"\b(?:for|with|between)\s+(?P<who>[\w.@+-]+(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+)[\w.@+-]+)*)",
    re.I,
)
_CAL_LENGTH = re.compile(r"(?<!\d)(\d+(?:\.\d+)?)[\s-]*(minutes?|mins?|hours?|hrs?|h)\b", re.I)
_CAL_DAY = re.compile(
    r"\b(today|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.I
)
_NOT_PEOPLE = STOP | {"slot", "slots", "meeting", "review", "minute", "minutes", "hour", "hours"}


def calendar_plan(
    request: str, catalogue: Catalogue
) -> tuple[dict[str, Any], list[StepExplanation]] | None:
    """A find-then-book plan for a calendar request and its explanation, or None."""
    text = " ".join(request.split())
    booking = _CAL_BOOK.search(text)
    asks = _CAL_SLOT.search(text) or (booking and _CAL_MEETING.search(text))
    if not asks or "calendar.find_slots" not in catalogue:
        return None
    people = _calendar_people(text)
    if not people:
        raise PlanRefused(
            [f"a calendar request: {clip(text, 60)!r}"],
            ["who attends: a calendar request needs its attendees"],
            "name them, e.g. 'for ann and bob'",
        )
    day = (_CAL_DAY.search(text) or ["", "tomorrow"])[1].lower()
    find = {
        "attendees": people,
        "duration_minutes": _calendar_minutes(text),
        "window_start": day,
        "window_end": day,
    }
    steps: list[dict[str, Any]] = [
        {
            "id": "find_slot",
            "tool": "calendar.find_slots",
            "input": find,
            "description": f"Find a slot on {day}",
        }
    ]
    outputs = {"slots": "${steps.find_slot.output.slots}"}
    if booking and "calendar.create_event" in catalogue:
        steps.append(_calendar_booking(booking["what"], people))
        outputs["event"] = "${steps.book.output.uid}"
    plan = {
        "version": 1,
        "name": clip(text, 80),
        "steps": steps,
        "outputs": outputs,
        "description": "Planned offline: a calendar request (find a slot, then book it).",
    }
    return plan, _explain(text, steps, people, day)


def _explain(
    text: str, steps: list[dict[str, Any]], people: list[str], day: str
) -> list[StepExplanation]:
    asked = _CAL_SLOT.search(text) or _CAL_MEETING.search(text)
    words = [asked.group(0)] if asked else []
    notes = [
        StepExplanation(
            "find_slot",
            "calendar.find_slots",
            text,
            words,
            f"{', '.join(repr(x) for x in words)} asks for a time: a slot for "
            f"{', '.join(people)} on {day}",
        )
    ]
    if len(steps) > 1:
        booking = _CAL_BOOK.search(text)
        verb = booking.group(0).split()[0] if booking else "book"
        notes.append(
            StepExplanation(
                "book",
                "calendar.create_event",
                text,
                [verb],
                f"'{verb}' books the meeting at the first slot found (cancelled if the run "
                "is compensated)",
            )
        )
    return notes


def _calendar_booking(what: str, people: list[str]) -> dict[str, Any]:
    title = _calendar_title(what)
    slot = "${steps.find_slot.output.slots[0]"
    return {
        "id": "book",
        "tool": "calendar.create_event",
        "input": {
            "title": title.capitalize(),
            "start": f"{slot}.start}}",
            "end": f"{slot}.end}}",
            "attendees": people,
        },
        "compensate": {"tool": "calendar.cancel_event", "input": {}},
        "description": f"Book the {title} at the first slot found",
    }


def _calendar_title(what: str) -> str:
    """The words after "book": "a 1 hour team sync with ann" → "team sync"."""
    words: list[str] = []
    for word in what.split():
        low = word.lower().strip(",")
        if low in _CAL_END or _CAL_DAY.fullmatch(low):
            break
        if low not in ("a", "an", "the") and not _CAL_UNIT.match(low):
            words.append(low)
    return " ".join(words[:4]) or "meeting"


def _calendar_people(text: str) -> list[str]:
    for match in _CAL_WHO.finditer(text):
        names = [n for n in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", match["who"]) if n]
        people = [n for n in names if n.lower() not in _NOT_PEOPLE and not n.isdigit()]
        if people:
            return people
    return []


def _calendar_minutes(text: str) -> float:
    match = _CAL_LENGTH.search(text)
    if not match:
        return 30.0
    return float(match[1]) * (60 if match[2].lower().startswith("h") else 1)
