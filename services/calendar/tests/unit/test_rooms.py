"""Rooms and equipment on the in-memory store: registering them, finding a slot with a free room
that holds everyone, booking one (an attendee of kind ROOM and a copy in its calendar), its
conflicts, and cancelling or moving a booking with its copies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from baton_calendar import ics
from baton_calendar.application import CalendarApp
from baton_calendar.errors import BadInput, Conflicts
from baton_common.store import MemoryEventStore

WS = "acme"
NOW = datetime(2082, 11, 1, tzinfo=UTC)  # before the searched days, whatever today is
DAY = {"window_start": "2082-11-26T00:00:00Z", "window_end": "2082-11-27T00:00:00Z"}


@pytest.fixture
def app() -> CalendarApp:
    app = CalendarApp(MemoryEventStore("calendar"))
    rooms = [("small", "small@rooms.example", 2), ("big", "big@rooms.example", 10)]
    for name, address, capacity in rooms:
        app.connect(WS, {"name": name, "owner": address, "kind": "room", "capacity": capacity})
    app.connect(WS, {"name": "beamer", "owner": "beamer@things.example", "kind": "equipment"})
    return app


def book(app: CalendarApp, key: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    data = {"title": key, "start": f"2082-11-26T{start}:00Z", "end": f"2082-11-26T{end}:00Z",
            "attendees": ["ann@example.com", "bob@example.com"], **extra}  # fmt: skip
    return app.create_event(WS, data, f"e:{key}")


def slots(app: CalendarApp, **extra: Any) -> list[dict[str, Any]]:
    data = {"attendees": ["ann@example.com", "bob@example.com"], "duration_minutes": 60,
            "granularity_minutes": 60, "max_results": 20, **DAY, **extra}  # fmt: skip
    return app.find_slots(WS, data, now=NOW)["slots"]  # type: ignore[no-any-return]


def test_registering_rooms_and_equipment_checks_kind_capacity_and_address(
    app: CalendarApp,
) -> None:
    assert {(c["name"], c["kind"], c["capacity"]) for c in app.calendars(WS)} == {
        ("small", "room", 2),
        ("big", "room", 10),
        ("beamer", "equipment", None),
    }
    refused = [
        ({"name": "x", "kind": "hall", "owner": "x@r"}, "kind: 'hall' is not one of"),
        ({"name": "x", "kind": "room"}, "owner: a room needs its address"),
        ({"name": "x", "kind": "equipment", "owner": "x@r", "capacity": 3}, "only a room"),
        ({"name": "x", "kind": "room", "owner": "x@r", "capacity": 0}, "not a number of people"),
    ]
    for body, message in refused:
        with pytest.raises(BadInput, match=message):
            app.connect(WS, body)


def test_a_booked_room_is_an_attendee_and_busy_in_its_own_calendar(app: CalendarApp) -> None:
    made = book(app, "review", "10:00", "11:00", resources=["small", "beamer@things.example"])
    assert made["resources"] == ["small@rooms.example", "beamer@things.example"]
    assert made["attendees"] == ["ann@example.com", "bob@example.com"]
    event = next(iter(ics.parse(app.export_ics(WS, "small")).walk("VEVENT")))
    rooms = [a for a in event.get("attendee") if a.params.get("CUTYPE") == "ROOM"]
    assert [(str(a), a.params["CN"]) for a in rooms] == [("mailto:small@rooms.example", "small")]
    assert [e["uid"] for e in app.list_events(WS, {"calendar": "beamer", **DAY})["events"]] == [
        made["uid"]
    ]
    # Someone else's meeting in the small room at 10:30: the room's calendar says no.
    with pytest.raises(Conflicts, match="room small: review") as clash:
        app.create_event(WS, {"title": "other", "start": "2082-11-26T10:30:00Z",
                              "end": "2082-11-26T11:30:00Z", "resources": ["small"],
                              "conflict": "fail"}, "e:other")  # fmt: skip
    assert clash.value.conflicts[0]["calendar"] == "small"
    checked = app.check_conflicts(
        WS, {"start": "2082-11-26T10:30:00Z", "end": "2082-11-26T12:00:00Z", "resources": ["big"]}
    )
    assert checked["count"] == 0


def test_find_slots_picks_the_smallest_free_room_that_holds_everyone(app: CalendarApp) -> None:
    book(app, "busy-small", "09:00", "10:00", resources=["small"], attendees=[])
    found = {s["start"][11:16]: s for s in slots(app, rooms="any")}
    assert found["09:00"]["room"] == "big" and found["10:00"]["room"] == "small"  # best fit
    assert "room small is free" in found["10:00"]["reason"]
    crowd = {s["start"][11:16]: s["room"] for s in slots(app, rooms=["small", "big"],
                                                         min_capacity=5)}  # fmt: skip
    assert set(crowd.values()) == {"big"}
    with pytest.raises(BadInput, match="no room holds 20 people"):
        slots(app, rooms=["small", "big"], min_capacity=20)
    with pytest.raises(BadInput, match="'beamer' is equipment, not a room"):
        slots(app, rooms=["beamer"])
    book(app, "beamer-out", "13:00", "15:00", resources=["beamer"], attendees=[])
    with_beamer = [s["start"][11:16] for s in slots(app, resources=["beamer"])]
    assert "13:00" not in with_beamer and "14:00" not in with_beamer and "15:00" in with_beamer


def test_cancelling_or_moving_a_booking_takes_its_copies_along(app: CalendarApp) -> None:
    made = book(app, "review", "10:00", "11:00", resources=["small"])
    moved = app.update_event(
        WS, {"uid": made["uid"], "start": "2082-11-26T15:00:00Z", "end": "2082-11-26T16:00:00Z"},
        "e:move",
    )  # fmt: skip
    assert moved["resources"] == ["small@rooms.example"]
    in_room = app.list_events(WS, {"calendar": "small", **DAY})["events"]
    assert [e["start"][11:16] for e in in_room] == ["15:00"]
    app.cancel_event(WS, {}, "e:review:compensate")
    assert app.list_events(WS, {"calendar": "small", **DAY})["events"] == []


def test_a_room_over_capacity_or_an_unknown_resource_is_refused(app: CalendarApp) -> None:
    with pytest.raises(BadInput, match="room 'small' holds 2, and 3 are invited"):
        book(app, "crowd", "10:00", "11:00", resources=["small"],
             attendees=["a@x", "b@x", "c@x"])  # fmt: skip
    with pytest.raises(BadInput, match=r"resources\.0: no calendar 'nowhere'"):
        book(app, "x", "10:00", "11:00", resources=["nowhere"])
    app.connect(WS, {"name": "ann", "owner": "ann@example.com"})
    with pytest.raises(BadInput, match="'ann' is not a room or equipment"):
        book(app, "x", "10:00", "11:00", resources=["ann"])


def test_a_connected_calendar_is_marked_a_room_later(app: CalendarApp) -> None:
    app.connect(WS, {"name": "attic"})
    with pytest.raises(BadInput, match="owner: a room needs its address"):
        app.mark(WS, "attic", {"kind": "room", "capacity": 3})
    marked = app.mark(WS, "attic", {"kind": "room", "capacity": 3, "owner": "attic@r.example"})
    assert (marked["kind"], marked["capacity"], marked["owner"]) == ("room", 3, "attic@r.example")
    assert app.mark(WS, "attic", {"capacity": 5})["capacity"] == 5  # the rest stays
    assert {s["room"] for s in slots(app, rooms="any", min_capacity=3)} <= {"attic", "big"}
    with pytest.raises(BadInput, match="only a room has a capacity"):
        app.mark(WS, "beamer", {"capacity": 2})
    again = app.mark(WS, "attic", {"kind": "equipment"})
    assert (again["kind"], again["capacity"]) == ("equipment", None)
