"""Calendar requests: requests about people's time.

- arranging a meeting ("find a 30 minute slot for ann and bob on thursday and book a review",
  "organise a catch-up with lena on friday", "meet with jonas for an hour on tuesday") is a slot
  search, then the booking at the slot found; the booking's compensation cancels the event;
- a question about someone's time ("is ann free on thursday?", "when are bob and cho available
  for an hour?") is a slot search alone;
- a question about given times ("does ann have anything between 2030-03-04T09:00Z and …?",
  "am I busy at 2030-01-07T16:00Z for 30 minutes?") is a conflict check of those times;
- "what does my friday look like?" lists the day's events.

Days stay words (resolved when the step runs), so the same request gives the same plan on any
day. Arranging needs a meeting noun ("a sync", "an interview"): "hold off for 10 minutes" waits.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from baton_common.catalogue import Catalogue

from baton_planner.offline.explaining import PlanRefused, StepExplanation
from baton_planner.offline.words import STOP, clip, digits, without_entities

Plan = tuple[dict[str, Any], list[StepExplanation]]

_CAL_SLOT = re.compile(r"\b(?:time\s+)?slots?\b|\bavailability\b|\bfree\s+time\b", re.I)
_REST = r"(?P<what>(?:[^.;!?]|\.(?=\w))*)"  # to the end of the sentence (not a dot in a name)
# Verbs of arranging (not the nouns: "ann's schedule", "my plan"): with a meeting noun after
# them they book one.
_CAL_BOOK = re.compile(
    r"(?<!(?<!\blet)'s\s)(?<!\bmy\s)(?<!\bthe\s)(?<!\bour\s)(?<!\byour\s)"
    r"\b(?:book|schedule|set\s+up|arrange|organi[sz]e|plan|put|hold|fix|find\s+a\s+time|"
    r"line\s+up|pencil\s+in|squeeze\s+in|slot\s+in|fit\s+in|lock\s+in|block(?:\s+out|\s+off)?|"
    rf"carve\s+out|set\s+aside|get|do|have|grab|need|want)\b{_REST}",
    re.I,
)
_CAL_MEET = re.compile(
    r"\b(?:meet(?:ing)?(?:\s+up)?|catch\s+up|get\s+together|sit\s+down|sync\s+up)\s+with\b"
    rf"{_REST}",
    re.I,
)
_CAL_UNIT = re.compile(
    r"^(?:\d+(?:\.\d+)?(?:-?(?:minutes?|mins?|hours?|hrs?|h))?|minutes?|mins?|hours?|hrs?)$", re.I
)
_CAL_END = frozenset("with for on at and to between today tomorrow in next this".split())
_CAL_MEETING = re.compile(
    r"\b(?:meeting|review|call|sync|appointment|interview|standup|stand-up|catch-?up|check-?in|"
    r"1:1|one-on-one|1-on-1|one-to-one|retro|retrospective|demo|session|huddle|kick-?off|"
    r"briefing|debrief|workshop|walk-?through|touch[\s-]?base|presentation|chat|talk|"
    r"get-?together|meet-?up|discussion|conversation|1-1|crit|critique|intro|introduction|"
    r"lunch|coffee)s?\b",
    re.I,
)
# Time made for a meeting: "could we find 40 minutes for a design crit with …", "make some time
# for a chat with …" arranges it (a length of time or "time" first, so "find the meeting notes"
# is no booking).
_MAKE_TIME = re.compile(
    r"\b(?:find|make|carve\s+out|set\s+aside)\s+(?:us\s+|me\s+)?(?:some\s+)?(?:time|"
    r"(?:an?|one|half\s+an?|\d+(?:\.\d+)?)[\s-]*(?:hours?|minutes?|mins?|hrs?))\s+for\s+"
    rf"{_REST}",
    re.I,
)
# What a question about someone's time asks ("is ann free …?", "any openings …?").
_CAL_ASK = re.compile(
    r"\b(?:free|available|availability|busy|openings?|room\s+in|double[\s-]?booked|clash|"
    r"conflicts?|overlap|anything\s+(?:on|between|at|from)|earliest|(?:slots?|time)\s+open|"
    r"(?:can|could)\s+(?:both\s+|all\s+)?(?:do|make)\s+(?:an?|\d|one|half))\b"
    # "… find half an hour together", "… spare 20 minutes": a length of time found for people
    r"|\b(?:find|make|spare|grab|do)\s+(?:me\s+|us\s+)?(?:(?:a|an|some)\s+)?(?:free\s+|spare\s+|open\s+)?"
    r"(?:some\s+time|(?:an?|one|half\s+an?|half|\d+(?:\.\d+)?)"
    r"[\s-]*(?:hours?|minutes?|mins?|hrs?))\b(?=.*\b(?:together|with|both|all|free)\b)",
    re.I,
)
# Asked for a free length of time with someone, not as a question: "find me a free half hour
# with bea on friday", "look for an open hour for ann and bob".
_FIND_TIME = re.compile(
    r"^(?:find|look\s+for|search\s+for|get)\s+(?:me\s+|us\s+)?(?:(?:a|an|some)\s+)?"
    r"(?:free|open|spare|common)\s+(?:half\s+an?|half|an?|one|\d+(?:\.\d+)?)?[\s-]*"
    r"(?:hours?|minutes?|mins?|hrs?|slot|time|window)\b(?=.*\b(?:with|for|between)\b)",
    re.I,
)
_CAL_THINGS = r"(?:meetings|events|calls|appointments|calendar|agenda|schedule|diary)"
# Whose or which day's calendar things: "my meetings", "tomorrow's meetings", "friday's calls"
_WHOSE = r"(?:my|(?:my\s+)?(?:today|tomorrow|\w+day|this\s+week|next\s+week)'s)"
_CAL_AGENDA = re.compile(
    r"\bwhat(?:'s|\s+is|\s+do\s+i\s+have)\s+(?:on\s+|in\s+)?my\s+(?:calendar|agenda|schedule|diary)\b"
    # the things a calendar holds, asked about or listed for me: "what meetings do I have …",
    # "which calls have I got …", "list my meetings for tomorrow", "show me my agenda"
    rf"|\b(?:what|which)\s+{_CAL_THINGS}\s+(?:do|have|am|are)\s+(?:i|we)\b"
    rf"|^(?:list|show|give|get|tell)\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?{_WHOSE}\s+{_CAL_THINGS}\b"
    r"(?!.*\b(?:and|then)\b)"  # alone: "show my agenda and summarise it" is two tasks
    r"|\bwhat\s+does\s+my\s+\w+\s+look\s+like\b"
    # "what's on my plate tomorrow?", "what have I got on for friday?"
    r"|\bwhat(?:'s|\s+is)\s+on\s+my\s+plate\b|\bwhat\s+have\s+i\s+got\s+on\b"
    r"|\bwhat\s+(?:have\s+i\s+got|do\s+i\s+have|am\s+i\s+doing)\b(?=.*\b(?:today|tomorrow|\w+day)\b)"
    # "do I have anything on wednesday?", "what's on tap for me tomorrow?", "what's happening
    # on friday?", "anything booked for monday?"
    r"|\b(?:(?:do|did|will)\s+i\s+have|have\s+i\s+got|is\s+there)\s+anything\s+"
    r"(?:on|for|scheduled|planned|booked)\b(?=.*\b(?:today|tomorrow|\w+day|week|morning|afternoon|"
    r"evening)\b)"
    r"|^anything\s+(?:on|scheduled|planned|booked)\b(?=.*\b(?:today|tomorrow|\w+day|week)\b)"
    r"|\bwhat(?:'s|\s+is)\s+(?:on\s+(?:tap|deck|the\s+cards)|happening|planned|scheduled|booked|"
    r"going\s+on)\b(?=.*\b(?:today|tomorrow|\w+day|week)\b)",
    re.I,
)
_QUESTION = re.compile(
    r"^(?:is|are|am|can|could|when|does|do|would|will|any|what|who|how|"
    r"check\s+(?:whether|if)|tell\s+me\s+(?:if|whether|when)|find\s+out\s+(?:if|whether|when))\b",
    re.I,
)
_POLITE = re.compile(
    r"^(?:(?:please|kindly|hey|hi|hello|ok(?:ay)?|so|(?:can|could|would|will)\s+you|let'?s|"
    r"i(?:'d|\s+would)\s+like\s+to|i\s+(?:need|want|would\s+like)\s+"
    r"(?:you\s+)?to)\b[\s,]*)+",
    re.I,
)
_NAMES = r"[\w.@+-]+(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+)[\w.@+-]+)*"
# "with ann", "with the recruiter sam@…", "with the two leads, ray and uma", "with the whole
# squad: ali, bo and cy"
_CAL_WHO = re.compile(
    r"\b(?:for|with|between)\s+(?:(?:the|our|my|a|an)\s+(?:[\w-]+\s+){0,2}[\w-]+\s*[,:]\s+|"
    r"(?:the|our|my|a|an)\s+(?:[\w-]+\s+){0,2}?[\w-]+\s+)?"
    rf"(?P<who>{_NAMES})",
    re.I,
)
_RECURRING = re.compile(
    r"\b(?:every\s+(?:day|week|month|morning|evening|\w+day)|daily|weekly|monthly|each\s+(?:day|week))\b",
    re.I,
)
_SUBJECT = re.compile(
    rf"\b(?:is|are|can|could|will|would|does|do)\s+(?P<who>{_NAMES})\s+"
    # availability predicates: "is oscar around", "are they reachable", "could lena fit in …"
    r"(?:both\s+|all\s+)?(?:be\s+)?(?:free|available|busy|meet|have|around|reachable|"
    r"in\s+the\s+office|(?:fit|squeeze)\s+(?:\w+\s+)?in|find\s+(?:some\s+)?time|"
    r"(?:make|do)\s+(?:it|an?\b|one\b|half\b|\d))(?![a-z])"  # not "is it freezing"
    rf"|\b(?P<who2>{_NAMES})\s+(?:can|could)\s+(?:both\s+|all\s+)?(?:do|make|meet)\b"
    # "when tariq is free", "whether ann and bo are around", "when both noor and pim are free"
    rf"|\b(?:when|whether|if)\s+(?:both\s+|all\s+)?(?P<who3>{_NAMES})\s+(?:is|are)\s+(?:both\s+|all\s+)?"
    r"(?:free|available|around|busy|reachable)\b",
    re.I,
)
_OWNER = re.compile(r"\b([\w.@+-]+)'s\s+(?:calendar|schedule|diary|agenda|day)\b", re.I)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]*\w")
_CAL_LENGTH = re.compile(r"(?<!\d)(\d+(?:\.\d+)?)[\s-]*(minutes?|mins?|hours?|hrs?|h)\b", re.I)
_HALF_HOUR = re.compile(r"\bhalf[\s-](?:an[\s-])?hour\b", re.I)
_CAL_DAY = re.compile(
    r"\b(today|tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", re.I
)
_ISO_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_CLOCK = re.compile(r"(?<![\d:T])(\d{1,2}:\d{2})\b")
_NOT_PEOPLE = STOP | {
    "slot", "slots", "meeting", "review", "minute", "minutes", "hour", "hours", "min", "mins",
    "i", "me", "we", "us", "everyone", "anyone", "team", "someone", "free", "available", "busy",
    "today", "tomorrow", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday", "next", "week", "anything", "something", "time", "half",
}  # fmt: skip


def calendar_plan(request: str, catalogue: Catalogue) -> Plan | None:
    """A calendar plan for a request about people's time and its explanation, or None."""
    text = " ".join(request.split())
    if not _about_time(without_entities(text)):
        return None  # "fill the template 'On call today: {name}'": a quote's words are no intent
    asked = _POLITE.sub("", text)
    if _CAL_AGENDA.search(asked) and "calendar.list_events" in catalogue:
        return _agenda(text)
    booking = _booking(asked)
    if booking is not None and _asks_about_someone(asked, booking):
        booking = None  # "could pia squeeze in a call on monday?": a question about her time
    question = booking is None and bool(_QUESTION.match(asked))
    times = _times(text)
    if times and (question or _CAL_ASK.search(asked)) and "calendar.check_conflicts" in catalogue:
        return _conflicts(text, times)
    meet = _CAL_MEET.search(asked)
    about_time = (
        question
        and bool(
            _CAL_ASK.search(asked) or re.search(r"\bmeet\b", asked, re.I) or _SUBJECT.search(asked)
        )
    ) or bool(_FIND_TIME.match(asked))
    if not (_CAL_SLOT.search(text) or booking or meet or about_time):
        return None
    if "calendar.find_slots" not in catalogue:
        return None
    if booking is None and meet is not None and not question:
        booking = meet  # "I need to meet with jonas on tuesday": arrange it
    if booking is not None and _RECURRING.search(text):
        raise PlanRefused(
            [f"a recurring meeting: {clip(text, 60)!r}"],
            ["which days and from when: a plan books one meeting at the first slot found"],
            "book one meeting (e.g. 'on monday'), or set a schedule that runs the request",
        )
    people = _calendar_people(asked)
    if not people:
        raise PlanRefused(
            [f"a calendar request: {clip(text, 60)!r}"],
            ["who attends: a calendar request needs its attendees"],
            "name them, e.g. 'for ann and bob'",
        )
    day = _day(text, "tomorrow")
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
        what = booking["what"]
        if _PRONOUN.match(what) or not _CAL_MEETING.search(what):
            named = _CAL_MEETING.search(asked)
            what = named.group(0) if named else "meeting"
        steps.append(_calendar_booking(what, people))
        outputs["event"] = "${steps.book.output.uid}"
    plan = _plan(text, steps, outputs, "find a slot, then book it")
    return plan, _explain(text, steps, people, day, booking)


def _about_time(text: str) -> bool:
    """Do the words (quotes, URLs and file names taken out) speak of people's time at all?"""
    asked = _POLITE.sub("", text)
    return bool(
        _CAL_AGENDA.search(asked)
        or _times(text)
        or _CAL_SLOT.search(text)
        or _booking(asked)
        or _CAL_MEET.search(asked)
        or _QUESTION.match(asked)
        or _FIND_TIME.match(asked)
    )


# Light verbs of arranging: a meeting is had, got or needed *with* someone ("do a review of
# pr.md" is no meeting, "we need a kickoff with leo" is one).
_WITH_VERBS = frozenset("get do have grab need want".split())
# Arranging verbs that take a length of time for a meeting ("grab 30 minutes with priya").
_TIME_VERBS = frozenset("grab block book pencil squeeze carve set hold need want get have".split())
_PRONOUN = re.compile(r"^\s*(?:it|one|that|this|them)\b", re.I)


def _booking(asked: str) -> re.Match[str] | None:
    """The arranging verb and what follows it, when it arranges a meeting: a meeting noun
    after it, a length of time with someone, or "book it" after a meeting or slot named."""
    made = _MAKE_TIME.search(asked)
    if made is not None and _CAL_MEETING.search(re.split(r"\bwith\b", made["what"])[0]):
        return made
    for found in _CAL_BOOK.finditer(asked):
        verb = found.group(0).split()[0].lower()
        what = found["what"]
        with_someone = re.search(r"\bwith\b", what, re.I) is not None
        if verb in _WITH_VERBS and not with_someone:
            continue
        if _CAL_MEETING.search(what):
            return found
        if verb in _TIME_VERBS and with_someone and _CAL_LENGTH.search(_length_words(what)):
            return found
        if verb == "book" and _PRONOUN.match(what):
            if _CAL_MEETING.search(asked) or _CAL_SLOT.search(asked):
                return found
    return None


def _asks_about_someone(asked: str, booking: re.Match[str]) -> bool:
    """Is the arranging verb asked about someone else ("could pia squeeze in …?"), not asked
    of the planner ("could we book …?", "is it possible to book …?")?"""
    lead = _QUESTION.match(asked)
    if lead is None:
        return False
    between = asked[lead.end() : booking.start()].lower().split()
    return bool(between) and not ({"we", "i", "you", "to", "it"} & set(between))


def _length_words(text: str) -> str:
    return _HALF_HOUR.sub("30 minutes", digits(text))


def _plan(
    text: str, steps: list[dict[str, Any]], outputs: dict[str, str], what: str
) -> dict[str, Any]:
    return {
        "version": 1,
        "name": clip(text, 80),
        "steps": steps,
        "outputs": outputs,
        "description": f"Planned offline: a calendar request ({what}).",
    }


def _agenda(text: str) -> Plan:
    """ "What does my friday look like?": the day's events."""
    day = _day(text, "today")
    step = {
        "id": "list_events",
        "tool": "calendar.list_events",
        "input": {"window_start": day, "window_end": day},
        "description": f"List the events on {day}",
    }
    plan = _plan(text, [step], {"events": "${steps.list_events.output.events}"}, "a day's events")
    why = f"a question about the calendar of {day}: its events are listed"
    return plan, [StepExplanation("list_events", "calendar.list_events", text, [day], why)]


def _conflicts(text: str, times: tuple[str, str]) -> Plan:
    """ "Is ann busy between … and …?": a conflict check of the times the request gives."""
    start, end = times
    found: dict[str, Any] = {"start": start, "end": end}
    people = _calendar_people(_POLITE.sub("", text))
    if people:
        found["attendees"] = people
    step = {
        "id": "check_conflicts",
        "tool": "calendar.check_conflicts",
        "input": found,
        "description": f"Check {start} to {end} for conflicts",
    }
    plan = _plan(
        text, [step], {"conflicts": "${steps.check_conflicts.output.conflicts}"}, "a check"
    )
    who = ", ".join(people) or "the calendar"
    why = f"a question about the time {start} to {end}: checked against {who}'s events"
    return plan, [StepExplanation("check_conflicts", "calendar.check_conflicts", text, [], why)]


def _times(text: str) -> tuple[str, str] | None:
    """The span a request names: two times, a time and a length, or a date and two clock times
    ("on 2030-02-02 between 10:00 and 11:00"). None when it names no time of day."""
    found = _ISO_TIME.findall(text)
    if not found:
        date = _DATE.search(text)
        clocks = _CLOCK.findall(_DATE.sub(" ", text))
        if date is None or not clocks:
            return None
        found = [f"{date[0]}T{c.zfill(5)}" for c in clocks]
    if len(found) >= 2:
        return found[0], found[1]
    length = _CAL_LENGTH.search(_HALF_HOUR.sub("30 minutes", digits(_ISO_TIME.sub(" ", text))))
    if length is None:
        return None
    try:
        start = datetime.fromisoformat(found[0].replace(" ", "T"))
    except ValueError:
        return None
    end = start + timedelta(minutes=_calendar_minutes(_ISO_TIME.sub(" ", text)))
    shown = end.isoformat(timespec="minutes")
    return found[0], shown.replace("+00:00", "Z") if found[0].endswith("Z") else shown


def _explain(
    text: str,
    steps: list[dict[str, Any]],
    people: list[str],
    day: str,
    booking: re.Match[str] | None,
) -> list[StepExplanation]:
    asked = _CAL_SLOT.search(text) or _CAL_MEETING.search(text) or _CAL_ASK.search(text)
    words = [asked.group(0)] if asked else []
    notes = [
        StepExplanation(
            "find_slot",
            "calendar.find_slots",
            text,
            words,
            f"{', '.join(repr(x) for x in words) or 'the request'} asks for a time: a slot for "
            f"{', '.join(people)} on {day}",
        )
    ]
    if len(steps) > 1:
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
    for word in _HALF_HOUR.sub(" ", digits(what)).split():
        low = word.lower().strip(",")
        if low in _CAL_END or _CAL_DAY.fullmatch(low):
            break
        if low not in ("a", "an", "the") and not _CAL_UNIT.match(low):
            words.append(low)
    return " ".join(words[:4]) or "meeting"


# A person named with a title ("Mr. Tanaka", "dr lee"), or by name and address ("Tanaka
# (tanaka@kobe.example)"): one attendee, the address when there is one.
_TITLE = re.compile(r"\b(?:mr|mrs|ms|miss|dr|prof|sir)\.?\s+(?=[\w.@+-])", re.I)
_NAME_ADDRESS = re.compile(r"[\w.+-]+\s*\(\s*([\w.+-]+@[\w-]+\.[\w.-]*\w)\s*\)")


def _calendar_people(text: str) -> list[str]:
    """Who attends: the e-mail addresses, and the names after "for/with/between", before
    "free/available" ("are ann and bob free"), or before "'s calendar"."""
    text = _NAME_ADDRESS.sub(r"\1", _TITLE.sub("", text))
    found: list[str] = []
    lists = [m["who"] or m["who2"] or m["who3"] for m in _SUBJECT.finditer(text)]
    lists += [m["who"] for m in _CAL_WHO.finditer(text)]
    lists += [m[1] for m in _OWNER.finditer(text)]
    for names in lists:
        for name in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", names):
            if name and name.lower() not in _NOT_PEOPLE and not _is_thing(name):
                found.append(name)
        if found:
            break
    emails = [e for e in _EMAIL.findall(text) if e not in found]
    return list(dict.fromkeys(found + emails))


def _is_thing(name: str) -> bool:
    """A number or a meeting ("for a design crit with hana": the crit is nobody)."""
    return name.isdigit() or _CAL_MEETING.fullmatch(name) is not None


def _day(text: str, default: str) -> str:
    return (_CAL_DAY.search(text) or ["", default])[1].lower()


def _calendar_minutes(text: str) -> float:
    match = _CAL_LENGTH.search(_HALF_HOUR.sub("30 minutes", digits(text)))
    if not match:  # "a free hour": one hour (a meeting without a length: half an hour)
        return 60.0 if re.search(r"\b(?:hour|hr)\b", text, re.I) else 30.0
    return float(match[1]) * (60 if match[2].lower().startswith("h") else 1)
