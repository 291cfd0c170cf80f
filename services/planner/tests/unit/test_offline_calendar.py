"""The offline planner's calendar requests: find a slot, then book it at the slot found."""

from __future__ import annotations

import pytest
from baton_common.plans import validate_plan
from baton_planner.offline import OfflinePlanner
from baton_planner.planners import PlanningError

DEMO = "find a 30 minute slot for ann and bob on thursday and book a review"


def test_find_then_book_with_the_found_time_and_a_compensation() -> None:
    plan = OfflinePlanner().plan_sync(DEMO)
    validate_plan(plan)
    find, book = plan["steps"]
    assert find["tool"] == "calendar.find_slots"
    assert find["input"] == {
        "attendees": ["ann", "bob"],
        "duration_minutes": 30.0,
        "window_start": "thursday",
        "window_end": "thursday",
    }
    assert book["tool"] == "calendar.create_event" and book["input"]["title"] == "Review"
    assert book["input"]["start"] == "${steps.find_slot.output.slots[0].start}"
    assert book["compensate"] == {"tool": "calendar.cancel_event", "input": {}}
    assert OfflinePlanner().plan_sync(DEMO) == plan  # the same request, the same plan


@pytest.mark.parametrize(
    ("request_", "people", "minutes", "day", "title"),
    [
        (
            "book a 1 hour meeting with ann@x.com, bob@y.com and cho tomorrow",
            ["ann@x.com", "bob@y.com", "cho"],
            60.0,
            "tomorrow",
            "Meeting",
        ),
        (
            "schedule a 45-minute team sync for ann and bob on friday",
            ["ann", "bob"],
            45.0,
            "friday",
            "Team sync",
        ),
        ("find free time for dan", ["dan"], 30.0, "tomorrow", None),
    ],
)
def test_people_length_day_and_title(
    request_: str, people: list[str], minutes: float, day: str, title: str | None
) -> None:
    steps = OfflinePlanner().plan_sync(request_)["steps"]
    assert steps[0]["input"]["attendees"] == people
    assert (steps[0]["input"]["duration_minutes"], steps[0]["input"]["window_start"]) == (
        minutes,
        day,
    )
    assert (steps[1]["input"]["title"] if len(steps) > 1 else None) == title


def test_other_requests_are_not_calendar_plans_and_attendees_are_needed() -> None:
    plan = OfflinePlanner().plan_sync("schedule a daily report for ops and save it to r.md")
    assert not any(s["tool"].startswith("calendar.") for s in plan["steps"])
    with pytest.raises(PlanningError, match="attendees"):
        OfflinePlanner().plan_sync("find a free slot on monday")
