"""Recurring events cannot burn the CPU: sub-hourly rules are not imported, and every expansion
is costed (from the rule's start, where the library begins walking) before it runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from baton_calendar import ics, recurrence
from baton_calendar.application import CalendarApp
from baton_calendar.errors import BadInput
from baton_common.store import MemoryEventStore
from dateutil.rrule import rrulestr
from icalendar import Calendar

WS = "default"


def event(rule: str, start: str = "20260105T090000Z", uid: str = "e@test") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTART:{start}\r\nDTEND:{start[:9]}235959Z\r\nRRULE:{rule}\r\n"
        "SUMMARY:Busy\r\nATTENDEE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@pytest.fixture
def app() -> CalendarApp:
    app = CalendarApp(MemoryEventStore("calendar"))
    app.connect(WS, {"name": "bob", "owner": "bob@example.com", "timezone": "UTC"})
    return app


def year(app: CalendarApp) -> list[dict[str, object]]:
    body = {"window_start": "2026-01-01T00:00:00Z", "window_end": "2026-12-31T00:00:00Z"}
    return app.list_events(WS, {**body, "calendar": "bob"})["events"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("freq", ["SECONDLY", "MINUTELY", "secondly"])
def test_sub_hourly_rules_are_not_imported(app: CalendarApp, freq: str) -> None:
    with pytest.raises(BadInput, match=r"event 'e@test' repeats (SECONDLY|MINUTELY)"):
        app.import_ics(WS, "bob", event(f"FREQ={freq}"))
    assert year(app) == []


def test_a_secondly_rule_from_a_server_is_refused_before_it_is_expanded() -> None:
    started = time.perf_counter()
    with pytest.raises(BadInput, match="'e@test' repeats too often to expand"):
        ics.occurrences(
            [event("FREQ=SECONDLY")],
            datetime(2026, 1, 1, tzinfo=UTC),
            datetime(2027, 1, 1, tzinfo=UTC),
        )  # 31 million instances: minutes of dateutil, and their memory
    assert time.perf_counter() - started < 1.0


def test_an_hourly_rule_is_expanded_near_its_start_and_refused_decades_later(
    app: CalendarApp,
) -> None:
    app.import_ics(WS, "bob", event("FREQ=HOURLY;INTERVAL=12", start="20260101T000000Z"))
    assert len(year(app)) == 2 * 364
    app.import_ics(WS, "bob", event("FREQ=HOURLY", start="20000101T000000Z", uid="old@test"))
    started = time.perf_counter()
    with pytest.raises(BadInput, match="'old@test' repeats too often"):
        year(app)  # 26 years of hours walked before the window: seconds
    assert time.perf_counter() - started < 1.0


def test_ordinary_recurrences_expand_as_before(app: CalendarApp) -> None:
    app.import_ics(WS, "bob", event("FREQ=WEEKLY;BYDAY=MO,WE,FR", start="20100104T090000Z"))
    app.import_ics(WS, "bob", event("FREQ=YEARLY", start="19000105T090000Z", uid="y@test"))
    app.import_ics(WS, "bob", event("FREQ=DAILY;BYHOUR=9,17", uid="d@test"))
    found = year(app)
    assert sum(e["uid"] == "e@test" for e in found) == 156
    assert sum(e["uid"] == "y@test" for e in found) == 1
    assert sum(e["uid"] == "d@test" for e in found) == 2 * 360  # Jan 5th to Dec 30th


def test_a_query_returns_a_bounded_number_of_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recurrence, "MAX_OCCURRENCES", 30)
    window = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    assert len(ics.occurrences([event("FREQ=DAILY")], *window)) == 28
    with pytest.raises(BadInput, match="more than 30 event instances in this window; narrow it"):
        ics.occurrences([event("FREQ=DAILY"), event("FREQ=DAILY", uid="f@test")], *window)


def test_a_query_walks_a_bounded_number_of_instances(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recurrence, "MAX_QUERY_STEPS", 1000)
    window = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    texts = [event("FREQ=DAILY", uid=f"{i}@test") for i in range(30)]  # ~55 steps each
    with pytest.raises(BadInput, match=r"add up to about \d+ instances to expand"):
        ics.occurrences(texts, *window)


RULES = [
    "FREQ=DAILY",
    "FREQ=DAILY;BYHOUR=9,17",
    "FREQ=WEEKLY;BYDAY=MO,WE,FR",
    "FREQ=WEEKLY;INTERVAL=2",
    "FREQ=MONTHLY;BYMONTHDAY=1,15",
    "FREQ=MONTHLY;BYDAY=-1FR",
    "FREQ=YEARLY;BYMONTH=1,6;BYMONTHDAY=1",
    "FREQ=YEARLY;BYDAY=MO",
    "FREQ=HOURLY;INTERVAL=5;BYMINUTE=0,30",
    "FREQ=DAILY;UNTIL=20260301T000000Z",
]


def master(rule: str, start: str) -> object:
    return next(iter(Calendar.from_ical(event(rule, start=start)).walk("VEVENT")))


@pytest.mark.parametrize("rule", RULES)
def test_the_estimate_is_an_upper_bound(rule: str) -> None:
    start, until = datetime(2024, 1, 1, 9, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    actual = len(rrulestr(f"DTSTART:20240101T090000Z\nRRULE:{rule}").between(start, until, True))
    assert actual <= recurrence.steps(master(rule, "20240101T090000Z"), until)


@pytest.mark.parametrize("rule", [r for r in RULES if "HOURLY" not in r])
def test_ordinary_rules_since_2000_are_far_from_the_limit(rule: str) -> None:
    steps = recurrence.steps(master(rule, "20000103T090000Z"), datetime(2027, 1, 1, tzinfo=UTC))
    assert steps < recurrence.MAX_RULE_STEPS / 4
