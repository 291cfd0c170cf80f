"""Finding slots: zones, working hours, recurrences with an exception, buffers, optional
attendees, all-day and tentative events, and bad input naming its field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from baton_calendar import ics
from baton_calendar.application import CalendarApp
from baton_calendar.errors import BadInput
from baton_common.store import MemoryEventStore

WS = "default"
NOW = datetime(2026, 11, 20, tzinfo=UTC)  # a Friday, before the searched week
MONDAY_TO_FRIDAY_13Z = {(23, 13), (24, 13), (25, 13), (26, 13), (27, 13)}
WEEKLY_WITH_EXDATE = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:standup@test
DTSTART;TZID=America/New_York:20261102T090000
DTEND;TZID=America/New_York:20261102T100000
RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
EXDATE;TZID=America/New_York:20261124T090000
SUMMARY:Stand-up
ATTENDEE:mailto:bob@example.com
END:VEVENT
END:VCALENDAR
"""


@pytest.fixture
def app() -> CalendarApp:
    app = CalendarApp(MemoryEventStore("calendar"))
    people = [
        ("ann", "ann@example.com", "Europe/Paris", {"start": "09:00", "end": "17:00"}),
        ("bob", "bob@example.com", "America/New_York", {"start": "08:00", "end": "16:00"}),
        ("cho", "cho@example.com", "Asia/Tokyo", {"start": "10:00", "end": "00:00"}),
    ]
    for name, email, tz, hours in people:
        app.connect(WS, {"name": name, "owner": email, "timezone": tz, "working_hours": hours})
    app.import_ics(WS, "bob", WEEKLY_WITH_EXDATE)
    return app


def ask(app: CalendarApp, **extra: object) -> list[dict[str, object]]:
    body = {
        "attendees": ["ann@example.com", "bob@example.com", "cho@example.com"],
        "duration_minutes": 60,
        "window_start": "2026-11-23T00:00:00Z",
        "window_end": "2026-11-28T00:00:00Z",
        "max_results": 20,
        **extra,
    }
    return app.find_slots(WS, body, now=NOW)["slots"]  # type: ignore[no-any-return]


def hours_utc(slots: list[dict[str, object]]) -> set[tuple[int, int]]:
    return {
        (
            datetime.fromisoformat(str(s["start"])).astimezone(UTC).day,
            datetime.fromisoformat(str(s["start"])).astimezone(UTC).hour,
        )
        for s in slots
    }


def test_three_zones_working_hours_and_a_weekly_meeting_with_one_exdate(app: CalendarApp) -> None:
    found = ask(app, granularity_minutes=60)
    # Paris 9-17 (08-16Z), New York 8-16 (13-21Z) and Tokyo 10-24 (01-15Z) overlap 13-15Z; bob's
    # stand-up (9-10 New York, 14-15Z) takes the second hour, except on the 24th (its EXDATE).
    assert hours_utc(found) == {*MONDAY_TO_FRIDAY_13Z, (24, 14)}
    for slot in found:
        assert slot["score"] == 1.0 and "free for all 3 required" in str(slot["reason"])


def test_the_recurring_meeting_blocks_every_day_but_its_exdate(app: CalendarApp) -> None:
    # Every half hour: 13:30Z and 14:00Z overlap the stand-up (14-15Z), except on the 24th.
    found = ask(app, granularity_minutes=30, max_results=50)
    starts = {
        (
            datetime.fromisoformat(str(s["start"])).astimezone(UTC).day,
            datetime.fromisoformat(str(s["start"])).astimezone(UTC).strftime("%H:%M"),
        )
        for s in found
    }
    late = {start for start in starts if start[1] != "13:00"}
    assert late <= {(24, "13:30"), (24, "14:00")} and late


def test_buffers_exclude_slots_next_to_busy_time(app: CalendarApp) -> None:
    # 13:00-14:00Z ends where bob's stand-up starts: a 15 minute buffer after it rules it out,
    # except on the EXDATE day.
    found = ask(app, granularity_minutes=60, buffer_after_minutes=15)
    assert hours_utc(found) == {(24, 13), (24, 14)}


def test_optional_attendees_lower_the_rank_and_say_why(app: CalendarApp) -> None:
    app.connect(WS, {"name": "dan", "owner": "dan@example.com", "timezone": "UTC"})
    app.import_ics(WS, "dan", _event("d1", "20261123T130000Z", "20261123T140000Z"))
    found = ask(app, granularity_minutes=60, optional_attendees=["dan@example.com"])
    assert hours_utc(found) == {*MONDAY_TO_FRIDAY_13Z, (24, 14)}
    monday = next(s for s in found if hours_utc([s]) == {(23, 13)})
    assert float(str(monday["score"])) < 1.0 and "optional dan@example.com not available" in str(
        monday["reason"]
    )
    assert found[-1] is monday  # ranked last


def test_all_day_busy_in_the_attendee_zone_and_transparent_events_ignored(app: CalendarApp) -> None:
    day_off = _event("off", None, None, all_day="20261125")
    free = _event("free", "20261126T130000Z", "20261126T140000Z", transparent=True)
    app.import_ics(WS, "ann", day_off)
    app.import_ics(WS, "ann", free)
    expected = {*MONDAY_TO_FRIDAY_13Z, (24, 14)} - {(25, 13)}
    assert hours_utc(ask(app, granularity_minutes=60)) == expected


def test_tentative_events_lower_the_rank(app: CalendarApp) -> None:
    app.import_ics(WS, "cho", _event("t", "20261127T130000Z", "20261127T140000Z", tentative=True))
    found = ask(app, granularity_minutes=60)
    friday = next(s for s in found if hours_utc([s]) == {(27, 13)})
    assert float(str(friday["score"])) < 1.0 and "tentative" in str(friday["reason"])


def test_preferred_hours_rank_higher(app: CalendarApp) -> None:
    found = ask(
        app,
        granularity_minutes=30,
        duration_minutes=30,
        max_results=3,
        preferred=[{"start": "13:30", "end": "14:00"}],
    )
    assert hours_utc(found[:1]) == {(23, 13)} and "preferred" in str(found[0]["reason"])
    assert datetime.fromisoformat(str(found[0]["start"])).minute == 30


def test_day_words_and_unknown_people_get_default_hours(app: CalendarApp) -> None:
    found = app.find_slots(
        WS,
        {
            "attendees": ["zed", "yan"],
            "duration_minutes": 30,
            "window_start": "thursday",
            "window_end": "thursday",
        },
        now=NOW,
    )["slots"]
    assert found and found[0]["start"] == "2026-11-26T09:00:00+00:00"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": -5}, "duration_minutes"),
        ({"window_end": "2026-11-22T00:00:00Z"}, "window_end"),
        ({"window_end": "2028-01-01T00:00:00Z"}, "window_end"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"attendees": [{"email": "x", "timezone": "Nowhere/Else"}]}, "attendees.0.timezone"),
        ({"window_start": "soon"}, "window_start"),
        (
            {"attendees": [{"email": "x", "working_hours": {"days": ["funday"]}}]},
            "attendees.0.working_hours.days",
        ),
    ],
)
def test_bad_input_names_the_field(app: CalendarApp, extra: dict[str, object], field: str) -> None:
    with pytest.raises(BadInput) as caught:
        ask(app, **extra)
    assert caught.value.field == field


def _event(
    uid: str,
    start: str | None,
    end: str | None,
    *,
    all_day: str | None = None,
    transparent: bool = False,
    tentative: bool = False,
) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "BEGIN:VEVENT", f"UID:{uid}"]
    if all_day:
        lines += [f"DTSTART;VALUE=DATE:{all_day}"]
    else:
        lines += [f"DTSTART:{start}", f"DTEND:{end}"]
    lines += ["SUMMARY:busy", "TRANSP:TRANSPARENT" if transparent else "TRANSP:OPAQUE"]
    if tentative:
        lines.append("STATUS:TENTATIVE")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def test_event_helper_parses() -> None:
    assert ics.summary_of(_event("a", "20261123T130000Z", "20261123T140000Z"))["uid"] == "a"
