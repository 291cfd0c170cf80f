"""The calendar service on real NATS JetStream, PostgreSQL and a Radicale CalDAV server: the
tools taken from the bus (and left alone by the generic workers), one event per step however
often it is delivered, free slots across three CalDAV calendars, ICS round trips, and clear
refusals from unreachable or unauthorised servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from baton_calendar import backends
from baton_calendar.main import start_calendar
from baton_calendar.testing import PASSWORD, USER, Radicale
from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.egress import EgressGuard, parse_allow
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_common.testing import Watch, one_event_ics, until
from baton_executor.worker import Worker

pytestmark = pytest.mark.integration
WS = "acme"
# The searched week is far in the future, so the search never starts in the past (slots begin no
# earlier than now + notice). 2082's calendar is 2026's (28 years on, no century skipped between):
# the same weekdays, and the zones change their clocks on the same dates.
Y = 2082
WEEKLY = f"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:standup@test
DTSTART;TZID=America/New_York:{Y}1102T090000
DTEND;TZID=America/New_York:{Y}1102T100000
RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
EXDATE;TZID=America/New_York:{Y}1201T090000
SUMMARY:Stand-up
END:VEVENT
BEGIN:VEVENT
UID:standup@test
RECURRENCE-ID;TZID=America/New_York:{Y}1202T090000
DTSTART;TZID=America/New_York:{Y}1202T110000
DTEND;TZID=America/New_York:{Y}1202T120000
SUMMARY:Stand-up (moved)
END:VEVENT
END:VCALENDAR
"""


@pytest.fixture(scope="module")
def radicale() -> Iterator[Radicale]:
    server = Radicale().start()
    # Radicale listens on loopback: allowed on purpose (the service's guard refuses it otherwise).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backends, "guard", lambda: EgressGuard(parse_allow("127.0.0.1")))
        yield server
    server.stop()


@pytest.fixture
async def service(settings: Settings, bus: Bus) -> AsyncIterator[Runtime]:
    runtime = await start_calendar(settings)
    yield runtime
    await runtime.close()


class Results(Watch):
    """Every task.finished on the stream, as it arrives."""

    @property
    def items(self) -> list[c.TaskFinished]:
        return [e for e in self.events if isinstance(e, c.TaskFinished)]

    async def wait(self, n: int, timeout: float = 30) -> list[c.TaskFinished]:
        await until(lambda: len(self.items) >= n, f"{n} results", timeout)
        return self.items


@pytest.fixture
async def results(watch: Any) -> Results:
    return await watch("*.task.finished", Results)


async def call(bus: Bus, op: str, **body: Any) -> c.CalendarReply:
    request = c.CalendarCall(op=op, workspace_id=WS, actor="test", body=body)
    subject = c.calendar_rpc_subject(bus.settings.subject_root)
    msg = await bus.request(subject, request.model_dump_json().encode(), 30)
    return c.CalendarReply.model_validate_json(msg.data)


def task(
    tool: str,
    data: dict[str, Any],
    step: str = "book",
    attempt: int = 1,
    kind: c.StepKind = "run",
    execution: Any = None,
) -> c.StepDispatched:
    execution = execution or uuid4()
    key = f"{execution}:{step}" + (":compensate" if kind == "compensate" else "")
    return c.StepDispatched(
        aggregate_id=execution,
        aggregate_version=3,
        workspace_id=WS,
        correlation_id=execution,
        step_id=step,
        attempt=attempt,
        kind=kind,
        tool=tool,
        input=data,
        idempotency_key=key,
        timeout_s=30,
    )


async def connect(bus: Bus, radicale: Radicale, name: str, **extra: Any) -> str:
    url = radicale.make_calendar(f"{name}-{uuid4().hex[:6]}")
    reply = await call(
        bus, "calendar.connect", name=name, url=url, username=USER, password=PASSWORD, **extra
    )
    assert reply.status == 201, reply.detail
    return url


BOOK = {
    "title": "Review",
    "start": f"{Y}-11-26T10:00:00",
    "end": f"{Y}-11-26T10:30:00",
    "timezone": "Europe/Paris",
    "attendees": ["ann@example.com"],
    "calendar": "team",
}


async def test_a_create_delivered_again_and_retried_makes_one_event_on_the_server(
    service: Runtime, bus: Bus, results: Results, radicale: Radicale, settings: Settings
) -> None:
    url = await connect(bus, radicale, "team")
    worker = Worker(bus, concurrency=4)  # the generic workers run too: they must leave it alone
    await worker.start()
    try:
        first = task("calendar.create_event", BOOK)
        await bus.publish([first])
        await bus.publish([first.model_copy(update={"event_id": uuid4()})])  # delivered again
        await bus.publish([first.model_copy(update={"event_id": uuid4(), "attempt": 2})])  # retry
        done = await results.wait(2)  # the repeated report of attempt 1 has the same id
        calls = service.metrics["calendar_tool_calls"]
        while calls() < 3:
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    assert all(r.ok and r.worker.startswith("calendar@") for r in done), done
    assert len({r.output["uid"] for r in done}) == 1
    on_server = radicale.events(url)
    assert len(on_server) == 1 and done[0].output["uid"] in on_server[0]
    undo = task("calendar.cancel_event", {}, kind="compensate", execution=first.aggregate_id)
    await bus.publish([undo])
    undone = (await results.wait(3))[-1]
    assert undone.ok and undone.output == {**done[0].output, "cancelled": True}
    assert radicale.events(url) == []


async def test_conflict_fail_is_a_final_failure_listing_the_events(
    service: Runtime, bus: Bus, results: Results, radicale: Radicale
) -> None:
    url = await connect(bus, radicale, "team")
    await bus.publish([task("calendar.create_event", BOOK)])
    await results.wait(1)  # booked first
    clash = {**BOOK, "start": f"{Y}-11-26T10:15:00", "end": f"{Y}-11-26T11:00:00"}
    await bus.publish([task("calendar.create_event", {**clash, "conflict": "fail"})])
    made, refused = await results.wait(2)
    assert made.ok and not refused.ok and not refused.retryable
    assert "1 conflicting event(s)" in str(refused.error) and "Review" in str(refused.error)
    assert len(radicale.events(url)) == 1


async def test_slots_across_three_caldav_calendars_with_zones_hours_and_an_exdate(
    service: Runtime, bus: Bus, radicale: Radicale
) -> None:
    people = [
        ("ann", "Europe/Paris", "09:00", "17:00"),
        ("bob", "America/New_York", "08:00", "16:00"),
        ("cho", "Asia/Tokyo", "10:00", "00:00"),
    ]
    for name, tz, start, end in people:
        await connect(
            bus,
            radicale,
            name,
            owner=f"{name}@example.com",
            timezone=tz,
            working_hours={"start": start, "end": end},
        )
    imported = await call(bus, "ics.import", calendar="bob", ics=WEEKLY)
    assert imported.status == 201, imported.detail
    reply = await call(
        bus,
        "slots.find",
        attendees=[f"{n}@example.com" for n, *_ in people],
        duration_minutes=60,
        granularity_minutes=60,
        max_results=20,
        window_start=f"{Y}-11-30T00:00:00Z",
        window_end=f"{Y}-12-05T00:00:00Z",
    )
    assert reply.status == 200, reply.detail
    starts = {s["start"] for s in reply.body["slots"]}
    # 13-15Z is everyone's working time; bob's stand-up takes 14-15Z except on its EXDATE
    # (Dec 1) and on Dec 2, whose instance moved to 16-17Z.
    days = (f"{Y}-11-30", f"{Y}-12-01", f"{Y}-12-02", f"{Y}-12-03", f"{Y}-12-04")
    expected = {f"{d}T13:00:00+00:00" for d in days}
    assert starts == expected | {f"{Y}-12-01T14:00:00+00:00", f"{Y}-12-02T14:00:00+00:00"}


async def test_ics_round_trip_through_caldav_keeps_events_equal(
    service: Runtime, bus: Bus, radicale: Radicale
) -> None:
    await connect(bus, radicale, "source")
    await connect(bus, radicale, "copy")
    assert (await call(bus, "ics.import", calendar="source", ics=WEEKLY)).status == 201
    exported = (await call(bus, "ics.export", calendar="source")).body["ics"]
    assert (await call(bus, "ics.import", calendar="copy", ics=exported)).status == 201
    again = (await call(bus, "ics.export", calendar="copy")).body["ics"]
    window = {"window_start": f"{Y}-11-01T00:00:00Z", "window_end": f"{Y}-12-05T00:00:00Z"}
    source = (await call(bus, "events.list", calendar="source", **window)).body["events"]
    copy = (await call(bus, "events.list", calendar="copy", **window)).body["events"]
    assert source == copy and len(source) == 24  # 25 weekdays from Nov 2 to Dec 4, one EXDATE
    assert _meaning(again) == _meaning(exported) == _meaning(WEEKLY)


async def test_unreachable_or_unauthorised_servers_are_refused_and_nothing_is_stored(
    service: Runtime, bus: Bus, radicale: Radicale
) -> None:
    url = radicale.make_calendar(f"x-{uuid4().hex[:6]}")
    wrong = await call(bus, "calendar.connect", name="x", url=url, username=USER, password="no")
    assert wrong.status == 422 and "401 Unauthorized" in wrong.detail
    gone = await call(bus, "calendar.connect", name="x", url="http://127.0.0.1:9/dav/")
    assert gone.status == 422 and "cannot be reached" in gone.detail
    missing = await call(
        bus,
        "calendar.connect",
        name="x",
        url=f"{radicale.url}/{USER}/nope/",
        username=USER,
        password=PASSWORD,
    )
    assert missing.status == 404
    assert (await call(bus, "calendar.list")).body == {"items": []}
    bad = await call(
        bus,
        "slots.find",
        attendees=["a"],
        duration_minutes=30,
        window_start="2026-01-01T00:00:00Z",
        window_end="2027-06-01T00:00:00Z",
    )
    assert bad.status == 422 and bad.detail.startswith("window_end:")


def _meaning(text: str) -> list[tuple[str, ...]]:
    """What each VEVENT says (stamps and the server's additions aside)."""
    from baton_calendar import ics

    keep = ("UID", "SUMMARY", "DTSTART", "DTEND", "RRULE", "EXDATE", "RECURRENCE-ID")
    return sorted(
        tuple(f"{k}={e[k].to_ical() if hasattr(e[k], 'to_ical') else e[k]}" for k in keep if k in e)
        for e in ics.parse(text).walk("VEVENT")
    )


async def test_credentials_from_the_service_settings_are_never_stored(
    service: Runtime,
    bus: Bus,
    results: Results,
    radicale: Radicale,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = radicale.make_calendar(f"s-{uuid4().hex[:6]}")
    refused = await call(bus, "calendar.connect", name="team", url=url)
    assert refused.status == 422 and "401 Unauthorized" in refused.detail
    monkeypatch.setenv("BATON_CALDAV_USERNAME", USER)
    monkeypatch.setenv("BATON_CALDAV_PASSWORD", PASSWORD)
    # the installation's credentials go only where the operator said they may
    nowhere = await call(bus, "calendar.connect", name="team", url=url)
    assert nowhere.status == 422 and "BATON_CALDAV_HOSTS" in nowhere.detail, nowhere.detail
    monkeypatch.setenv("BATON_CALDAV_HOSTS", "radicale.example,127.0.0.0/8")
    elsewhere = url.replace("127.0.0.1", "203.0.113.7")  # not listed: refused before any call
    refused_host = await call(bus, "calendar.connect", name="team", url=elsewhere)
    assert refused_host.status == 422 and "203.0.113.7 is not a host" in refused_host.detail
    plain = await call(bus, "calendar.connect", name="team", url="http://radicale.example/dav/")
    assert plain.status == 422 and "over https only" in plain.detail, plain.detail
    # 127.0.0.1 is listed there and allowed as an internal host (the guard): http is fine
    made = await call(bus, "calendar.connect", name="team", url=url)
    assert made.status == 201 and made.body["username"] is None, made.detail
    await bus.publish([task("calendar.create_event", BOOK)])
    assert (await results.wait(1))[0].ok and len(radicale.events(url)) == 1
    assert service.store is not None
    stored = b"".join(state for _, state in service.store.raw_notifications(0, 100))
    assert PASSWORD.encode() not in stored


async def test_bad_tool_input_fails_for_good_naming_the_field(
    service: Runtime, bus: Bus, results: Results
) -> None:
    no_title = {k: v for k, v in BOOK.items() if k not in ("title", "calendar")}
    backwards = {**BOOK, "calendar": "default", "end": f"{Y}-11-26T09:00:00"}
    zero = {
        "attendees": ["a"],
        "duration_minutes": 0,
        "window_start": "today",
        "window_end": "today",
    }
    tasks = [
        task("calendar.create_event", no_title),
        task("calendar.create_event", backwards),
        task("calendar.find_slots", zero),
    ]
    await bus.publish(tasks)
    by_execution = {r.aggregate_id: r for r in await results.wait(3)}
    first, second, third = (by_execution[t.aggregate_id] for t in tasks)
    assert not any(r.ok or r.retryable for r in (first, second, third))
    assert "'title' is a required property" in str(first.error)
    assert str(second.error).startswith(f"end: end ({Y}-11-26T09:00:00+01:00) must be after")
    assert "duration_minutes" in str(third.error)
    listed = await call(
        bus, "events.list", window_start=f"{Y}-11-01T00:00:00Z", window_end=f"{Y}-12-31T00:00:00Z"
    )
    assert listed.body == {"events": []}  # nothing half-created


# An event repeated by RDATE only: plain UTC dates and one in a zone. A PERIOD (an instance with
# its own length) is valid iCalendar too, but Radicale (vobject) refuses it: it goes to a
# built-in calendar of the same person.
RDATES = one_event_ics(
    "UID:design@test",
    f"DTSTART:{Y}1130T140000Z",
    f"DTEND:{Y}1130T150000Z",
    f"RDATE:{Y}1202T160000Z,{Y}1204T090000Z",
    f"RDATE;TZID=Europe/Paris:{Y}1201T100000",
    "SUMMARY:Design review",
)
PERIOD = one_event_ics(
    "UID:workshop@test",
    f"DTSTART:{Y}1129T100000Z",
    f"DTEND:{Y}1129T110000Z",
    f"RDATE;VALUE=PERIOD:{Y}1203T100000Z/{Y}1203T123000Z",
    "SUMMARY:Workshop",
)


async def test_rdate_instances_are_listed_busy_and_conflicting(
    service: Runtime, bus: Bus, radicale: Radicale
) -> None:
    await connect(bus, radicale, "dee", owner="dee@example.com", working_hours=_ALL_DAY)
    imported = await call(bus, "ics.import", calendar="dee", ics=RDATES)
    assert imported.status == 201, imported.detail
    refused = await call(bus, "ics.import", calendar="dee", ics=PERIOD)
    assert refused.status == 502 and "refused to write an event to it" in refused.detail
    own = await call(bus, "calendar.connect", name="dee-own", owner="dee@example.com")
    assert own.status == 201, own.detail
    assert (await call(bus, "ics.import", calendar="dee-own", ics=PERIOD)).status == 201
    window = {"window_start": f"{Y}-11-30T00:00:00Z", "window_end": f"{Y}-12-06T00:00:00Z"}
    listed = (await call(bus, "events.list", calendar="dee", **window)).body["events"]
    assert [(e["start"][5:16], e["end"][11:16]) for e in listed] == [
        ("11-30T14:00", "15:00"),
        ("12-01T09:00", "10:00"),  # 10:00 in Paris
        ("12-02T16:00", "17:00"),
        ("12-04T09:00", "10:00"),
    ]
    periods = (await call(bus, "events.list", calendar="dee-own", **window)).body["events"]
    assert [(e["start"][5:16], e["end"][11:16]) for e in periods] == [("12-03T10:00", "12:30")]
    clash = await call(
        bus,
        "conflicts.check",
        attendees=["dee@example.com"],
        start=f"{Y}-12-01T09:30:00Z",
        end=f"{Y}-12-03T12:15:00Z",
    )
    assert sorted(
        (c["title"], c["calendar"], c["start"][5:10]) for c in clash.body["conflicts"]
    ) == [
        ("Design review", "dee", "12-01"),
        ("Design review", "dee", "12-02"),
        ("Workshop", "dee-own", "12-03"),
    ]
    free = await call(
        bus,
        "slots.find",
        attendees=["dee@example.com"],
        duration_minutes=60,
        granularity_minutes=60,
        max_results=100,
        window_start=f"{Y}-12-03T08:00:00Z",
        window_end=f"{Y}-12-04T11:00:00Z",
    )
    starts = sorted(s["start"][8:16] for s in free.body["slots"])
    assert starts[:3] == ["03T08:00", "03T09:00", "03T13:00"]  # the period ends at 12:30
    assert "04T09:00" not in starts and "04T10:00" in starts  # the last RDATE


_ALL_DAY = {
    "start": "00:00",
    "end": "00:00",
    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
}


async def test_min_notice_keeps_slots_that_far_from_now(
    service: Runtime, bus: Bus, radicale: Radicale
) -> None:
    # Relative to this process's clock (the service runs in it, so a moved clock moves both).
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    after_notice = hour + timedelta(hours=24 if now == hour else 25)  # the grid's first point
    await connect(bus, radicale, "eve", owner="eve@example.com", working_hours=_ALL_DAY)
    # Busy for the two hours right after a day's notice: the first slot comes after them.
    busy = {
        **BOOK,
        "calendar": "eve",
        "timezone": "UTC",
        "start": after_notice.isoformat(),
        "end": (after_notice + timedelta(hours=2)).isoformat(),
    }
    ask = {
        "attendees": ["eve@example.com"],
        "duration_minutes": 60,
        "granularity_minutes": 60,
        "max_results": 100,
        "window_start": hour.isoformat(),
        "window_end": (hour + timedelta(days=3)).isoformat(),
    }
    soon = (await call(bus, "slots.find", **ask)).body["slots"]
    answered = datetime.now(UTC)  # the service read its clock between now and then
    assert min(_at(s) for s in soon) - answered < timedelta(hours=1)  # no notice: within the hour
    imported = await call(bus, "ics.import", calendar="eve", ics=_one_event(busy))
    assert imported.status == 201, imported.detail
    later = (await call(bus, "slots.find", **ask, min_notice_minutes=24 * 60)).body["slots"]
    first = min(_at(s) for s in later)
    assert all(_at(s) >= now + timedelta(days=1) for s in later)
    assert first == after_notice + timedelta(hours=2), (first, now)
    beyond = await call(bus, "slots.find", **ask, min_notice_minutes=4 * 24 * 60)
    assert beyond.status == 200 and beyond.body["slots"] == []


def _at(slot: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(slot["start"])


def _one_event(data: dict[str, Any]) -> str:
    from baton_calendar import ics

    start, end = datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])
    return ics.build(f"busy-{uuid4().hex[:6]}", "Busy", start, end)


async def test_rooms_on_caldav_are_found_free_booked_and_released(
    service: Runtime, bus: Bus, results: Results, radicale: Radicale
) -> None:
    small = await connect(bus, radicale, "small", kind="room", capacity=4, owner="small@r.example")
    await connect(bus, radicale, "big", kind="room", capacity=12, owner="big@r.example")
    team = await connect(bus, radicale, "team")
    booking = {**BOOK, "resources": ["small"], "conflict": "fail"}  # 10:00-10:30 in Paris
    first = task("calendar.create_event", booking)
    await bus.publish([first])
    [made] = await results.wait(1)
    assert made.ok and made.output["resources"] == ["small@r.example"], made.error
    [in_room] = radicale.events(small)  # the room's own calendar on the server holds the booking
    assert "CUTYPE=ROOM" in in_room and made.output["uid"] in in_room
    assert len(radicale.events(team)) == 1
    ask = {
        "attendees": ["ann@example.com"],
        "duration_minutes": 30,
        "granularity_minutes": 30,
        "timezone": "Europe/Paris",
        "window_start": f"{Y}-11-26T09:00:00",
        "window_end": f"{Y}-11-26T11:00:00",
        "rooms": "any",
    }
    found = (await call(bus, "slots.find", **ask)).body["slots"]
    by_start = {s["start"][11:16]: s["room"] for s in found}
    # ann works from 09:00 UTC (10:00 in Paris); at 10:00 the small room is taken
    assert by_start == {"10:00": "big", "10:30": "small"}
    clash = {**booking, "calendar": "default", "attendees": ["bob@example.com"]}
    await bus.publish([task("calendar.create_event", clash)])
    refused = (await results.wait(2))[1]
    assert not refused.ok and "room small: Review" in str(refused.error)
    undo = task("calendar.cancel_event", {}, kind="compensate", execution=first.aggregate_id)
    await bus.publish([undo])
    assert (await results.wait(3))[2].ok
    assert radicale.events(small) == [] and radicale.events(team) == []
