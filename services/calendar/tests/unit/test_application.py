"""The calendar application on the in-memory store: idempotent creates, conflicts and their
policies, compensation by key, updates that keep recurrences, and ICS round trips."""

from __future__ import annotations

import pytest
from baton_calendar import ics
from baton_calendar.application import CalendarApp
from baton_calendar.domain import Calendar, calendar_id
from baton_calendar.errors import AskFirst, BadInput, CalendarError, Conflicts, NotFound
from baton_common.store import MemoryEventStore
from baton_common.testing import state_of

WS = "default"
KEY = "3f1c0e1e-0000-4000-8000-000000000001:book"


@pytest.fixture
def app() -> CalendarApp:
    return CalendarApp(MemoryEventStore("calendar"))


def create(app: CalendarApp, key: str = KEY, **extra: object) -> dict[str, object]:
    data = {
        "title": "Review",
        "start": "2026-11-26T10:00:00",
        "end": "2026-11-26T10:30:00",
        "timezone": "Europe/Paris",
        "attendees": ["ann@example.com"],
        **extra,
    }
    return app.create_event(WS, data, key)


def listed(app: CalendarApp, calendar: str | None = None) -> list[dict[str, object]]:
    body = {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-12-31T00:00:00Z"}
    if calendar:
        body["calendar"] = calendar
    return app.list_events(WS, body)["events"]  # type: ignore[no-any-return]


def test_a_retried_create_makes_one_event_with_the_uid_of_its_key(app: CalendarApp) -> None:
    first = create(app)
    again = create(app)
    assert first["uid"] == again["uid"] and first["start"] == "2026-11-26T10:00:00+01:00"
    assert [e["uid"] for e in listed(app)] == [first["uid"]]
    other = create(app, key="another:step", start="2026-11-27T10:00:00", end="2026-11-27T11:00:00")
    assert other["uid"] != first["uid"] and len(listed(app)) == 2


def test_the_compensation_cancels_what_its_step_created(app: CalendarApp) -> None:
    made = create(app)
    undone = app.cancel_event(WS, {}, f"{KEY}:compensate")
    assert undone["uid"] == made["uid"] and undone["cancelled"] is True
    assert listed(app) == []
    assert app.cancel_event(WS, {}, f"{KEY}:compensate")["cancelled"] is True  # again: same
    with pytest.raises(BadInput, match="uid"):
        app.cancel_event(WS, {}, "plain:key")


def test_conflict_policies(app: CalendarApp) -> None:
    create(app)
    clash = {"start": "2026-11-26T10:15:00", "end": "2026-11-26T11:00:00"}
    with pytest.raises(Conflicts) as failed:
        create(app, key="k:fail", conflict="fail", **clash)
    assert (
        failed.value.conflicts[0]["title"] == "Review" and "ann@example.com" in failed.value.detail
    )
    with pytest.raises(AskFirst, match="waiting for a person") as asked:
        create(app, key="k:ask", conflict="ask", **clash)
    assert len(listed(app)) == 1  # nothing half-created
    question = asked.value.ask  # the gate shows the conflicts; approved, it books with warn
    assert question["input"]["conflict"] == "warn" and question["context"]["count"] == 2
    assert {(c["title"], c["calendar"]) for c in question["context"]["conflicts"]} == {
        ("Review", "default")
    }
    assert question["context"]["event"]["start"] == "2026-11-26T10:15:00+01:00"
    warned = create(app, key="k:warn", conflict="warn", **clash)
    assert warned["conflicts"] and len(listed(app)) == 2
    assert (
        create(
            app,
            key="k:ask2",
            conflict="ask",
            start="2026-11-26T12:00:00",
            end="2026-11-26T13:00:00",
        )["conflicts"]
        == []
    )
    check = app.check_conflicts(
        WS, {"attendees": ["ann@example.com"], **clash, "timezone": "Europe/Paris"}
    )
    assert check["count"] == 2 and "2 conflicting" in check["summary"]


def test_bad_input_names_the_field_and_stores_nothing(app: CalendarApp) -> None:
    with pytest.raises(BadInput, match="end"):
        create(app, end="2026-11-26T09:00:00")
    with pytest.raises(BadInput, match="timezone"):
        create(app, timezone="Atlantis/Capital")
    with pytest.raises(BadInput, match="conflict"):
        create(app, conflict="maybe")
    with pytest.raises(NotFound, match="calendar"):
        create(app, calendar="nope")
    assert app.store.max_position() == 0


def test_update_moves_the_event_and_keeps_its_recurrence(app: CalendarApp) -> None:
    app.connect(WS, {"name": "team"})
    weekly = ics.build(
        "w1", "Weekly", *_times("2026-11-02T09:00:00+00:00", "2026-11-02T10:00:00+00:00")
    )
    weekly = weekly.replace("SEQUENCE:0", "SEQUENCE:0\r\nRRULE:FREQ=WEEKLY;COUNT=4")
    app.import_ics(WS, "team", weekly)
    moved = app.update_event(
        WS,
        {
            "uid": "w1",
            "start": "2026-11-02T11:00:00Z",
            "end": "2026-11-02T12:00:00Z",
            "title": "Weekly sync",
        },
        "k",
    )
    assert moved["title"] == "Weekly sync"
    events = listed(app, "team")
    assert [e["start"] for e in events] == [
        f"2026-11-{d:02d}T11:00:00+00:00" for d in (2, 9, 16, 23)
    ]
    assert app.update_event(WS, {"uid": "w1", "title": "Weekly sync"}, "k")["uid"] == "w1"
    with pytest.raises(NotFound):
        app.update_event(WS, {"uid": "nope", "calendar": "team"}, "k")


def test_ics_round_trip_keeps_events_equal(app: CalendarApp) -> None:
    app.connect(WS, {"name": "a"})
    app.connect(WS, {"name": "b"})
    create(app, calendar="a")
    create(
        app,
        key="k2",
        calendar="a",
        title="Retro",
        start="2026-11-27T15:00:00",
        end="2026-11-27T16:00:00",
        location="Room 1",
        description="how it went",
    )
    exported = app.export_ics(WS, "a")
    app.import_ics(WS, "b", exported)
    assert _fields(app.export_ics(WS, "b")) == _fields(exported)
    assert listed(app, "a") == listed(app, "b")


def test_calendars_are_per_workspace_and_names_unique(app: CalendarApp) -> None:
    app.connect(WS, {"name": "team", "timezone": "Europe/Paris"})
    with pytest.raises(CalendarError, match="exists"):
        app.connect(WS, {"name": "team"})
    with pytest.raises(NotFound):
        app.get("other", "team")
    assert [c["name"] for c in app.calendars(WS)] == ["team"]
    app.delete(WS, "team")
    assert app.calendars(WS) == []


def test_a_deleted_calendars_name_can_be_connected_again(app: CalendarApp) -> None:
    """Its id is the name's: the new calendar goes on from the old one's history (a fresh
    aggregate would repeat its versions, and the store refuse the commit)."""
    app.connect(WS, {"name": "team"})
    app.delete(WS, "team")
    again = app.connect(WS, {"name": "team", "timezone": "Europe/Paris"})
    assert again["timezone"] == "Europe/Paris"
    assert [c["name"] for c in app.calendars(WS)] == ["team"]


def _times(a: str, b: str) -> tuple[object, object]:
    from datetime import datetime

    return datetime.fromisoformat(a), datetime.fromisoformat(b)


def _fields(text: str) -> list[dict[str, object]]:
    """Each event's meaning (DTSTAMP aside): what a round trip must keep."""
    cal = ics.parse(text)
    return sorted(
        (
            {
                k: str(v.to_ical())
                for k, v in e.property_items(recursive=False, sorted=True)
                if k not in ("DTSTAMP", "BEGIN", "END")
            }
            for e in cal.walk("VEVENT")
        ),
        key=lambda f: str(f["UID"]),
    )


def test_a_caldav_url_is_checked_before_any_connection() -> None:
    from baton_calendar.backends import CalDav
    from baton_calendar.errors import BadInput, Refused

    for url in ("http://", "ftp://dav.example.com/cal/", "http://dav.example.com:99999/"):
        with pytest.raises(BadInput) as bad:
            CalDav(url, None, None)
        assert bad.value.status == 422 and bad.value.field == "url", url
    # Each connection resolves through the egress guard: loopback is refused, naming the rule.
    with pytest.raises(Refused) as refused:
        CalDav("http://localhost:9/cal/", None, None).check()
    assert refused.value.status == 422
    assert "egress refused: localhost (" in refused.value.detail
    assert "is a loopback address" in refused.value.detail


def test_a_calendar_loads_through_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connected, marked, deleted and connected again: the last load reads its snapshot."""
    monkeypatch.setenv("BATON_AGGREGATE_SNAPSHOT_EVERY", "2")
    app = CalendarApp(MemoryEventStore("calendar"))
    app.connect(WS, {"name": "team"})
    app.mark(WS, "team", {"kind": "room", "capacity": 8, "owner": "room-4@example.com"})
    app.delete(WS, "team")  # loads 2 events: a snapshot
    app.snapshots.read = 0
    again = app.connect(WS, {"name": "team", "timezone": "Europe/Paris"})
    assert app.snapshots.read == 1  # the deletion, after the snapshot
    assert again["timezone"] == "Europe/Paris" and again["kind"] is None
    cid = calendar_id(WS, "team")
    whole = Calendar.rebuild(cid, app.store.load(cid))
    assert state_of(app.snapshots.load(Calendar, cid)) == state_of(whole)
