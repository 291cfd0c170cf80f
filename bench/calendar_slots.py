"""`calendar.find_slots` for 20 attendees over a month, each with a month of events.

Each attendee has their own built-in calendar (in the calendar service's application, on the
in-memory store: the search reads no network) in one of five zones with their working hours,
holding five weekly recurring meetings (one with an EXDATE) and 40 single events. The figure is
one whole search, cold: the ICS parsed, the recurrences expanded, the slots ranked.

    .venv/bin/python -m bench.calendar_slots
"""

from __future__ import annotations

import functools
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from baton_calendar import ics
from baton_calendar.application import CalendarApp
from baton_common.store import MemoryEventStore

ZONES = ["Europe/Paris", "America/New_York", "Europe/London", "America/Chicago", "Africa/Lagos"]
START = datetime(2030, 1, 7, tzinfo=UTC)  # a Monday


def _weekly(uid: str, first: datetime, exdate: datetime | None) -> str:
    text = ics.build(uid, "weekly", first, first + timedelta(minutes=30))
    rule = "RRULE:FREQ=WEEKLY;COUNT=6"
    if exdate is not None:
        rule += f"\r\nEXDATE:{exdate.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return text.replace("SEQUENCE:0", f"SEQUENCE:0\r\n{rule}")


def build(attendees: int = 20, days: int = 31, seed: int = 7) -> tuple[CalendarApp, dict[str, Any]]:
    """The calendars, and the find_slots input that searches them."""
    rng = random.Random(seed)
    app = CalendarApp(MemoryEventStore("bench"))
    emails = []
    for i in range(attendees):
        email, zone = f"p{i}@example.com", ZONES[i % len(ZONES)]
        emails.append(email)
        app.connect("bench", {"name": f"p{i}", "owner": email, "timezone": zone})
        texts = []
        for k in range(5):
            first = datetime(2030, 1, 7 + k, 9 + rng.randrange(8), tzinfo=ZoneInfo(zone))
            texts.append(
                _weekly(f"w{i}-{k}", first, first + timedelta(weeks=2) if k == 0 else None)
            )
        for k in range(40):
            at = START + timedelta(days=rng.randrange(days), hours=rng.randrange(24))
            texts.append(
                ics.build(f"s{i}-{k}", "single", at, at + timedelta(minutes=30 * rng.randint(1, 4)))
            )
        app.import_ics("bench", f"p{i}", ics.join(texts))
    query = {
        "attendees": emails[:-2] + [{"email": e, "optional": True} for e in emails[-2:]],
        "duration_minutes": 30,
        "window_start": START.isoformat(),
        "window_end": (START + timedelta(days=days)).isoformat(),
        "buffer_before_minutes": 5,
        "working_hours": {"start": "06:00", "end": "22:00"},
        "max_results": 5,
    }
    return app, query


def measure(rounds: int = 5) -> dict[str, Any]:
    """Median of ``rounds`` searches: cold (nothing parsed yet) and warm (asked again)."""
    cold, warm, found = [], [], []
    for _ in range(rounds):
        app, query = build()
        ics.clear_cache()
        search = functools.partial(app.find_slots, "bench", query, now=START)
        cold.append(_timed(search))
        warm.append(_timed(search))
        found = search()["slots"]
    return {
        "cold_s": statistics.median(cold),
        "warm_s": statistics.median(warm),
        "slots": len(found),
    }


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def line(result: dict[str, Any]) -> str:
    return (
        f"calendar.find_slots, 20 attendees x 31 days (5 weekly meetings + 40 events each, "
        f"5 zones): median {result['cold_s'] * 1000:.0f} ms cold, "
        f"{result['warm_s'] * 1000:.0f} ms asked again; {result['slots']} slots"
    )


if __name__ == "__main__":
    print(line(measure()))
