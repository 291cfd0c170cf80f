"""When ticks fall: cron in a zone across daylight saving, intervals, one time; bad input."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from baton_scheduler.spec import ScheduleSpec, SpecInvalid, TriggerSpec, parse

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def spec(**fields: object) -> ScheduleSpec:
    return parse(ScheduleSpec, {"name": "s", "request": "collect reports", **fields})  # type: ignore[no-any-return]


def local(ticks: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).isoformat() for t in ticks]


@pytest.mark.parametrize(
    ("zone", "day_before", "expected"),
    [
        ("Europe/Berlin", datetime(2026, 3, 28, 12), "2026-03-29T03:00:00+02:00"),
        ("America/New_York", datetime(2026, 3, 7, 12), "2026-03-08T03:00:00-04:00"),
    ],
)
def test_a_0230_daily_job_runs_once_on_a_spring_forward_day(
    zone: str, day_before: datetime, expected: str
) -> None:
    s = spec(cron="30 2 * * *", timezone=zone)
    ticks = s.next_times(day_before.replace(tzinfo=ZoneInfo(zone)), 2)
    shown = local(ticks, ZoneInfo(zone))
    assert shown[0] == expected  # 02:30 does not exist that night: once, right after the gap
    assert "T02:30:00" in shown[1]  # and back to 02:30 the day after
    assert (ticks[1] - ticks[0]).total_seconds() > 23 * 3600


def test_a_0230_daily_job_runs_once_on_a_fall_back_day() -> None:
    s = spec(cron="30 2 * * *", timezone="Europe/Berlin")  # 02:30 happens twice on 2026-10-25
    ticks = local(s.next_times(datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3), BERLIN)
    assert ticks == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_a_0130_daily_job_runs_once_on_new_yorks_fall_back_day() -> None:
    s = spec(cron="30 1 * * *", timezone="America/New_York")
    ticks = local(s.next_times(datetime(2026, 10, 31, 12, tzinfo=NEW_YORK), 2), NEW_YORK)
    assert ticks == ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_an_every_30_minutes_cron_keeps_elapsed_time_through_the_repeated_hour() -> None:
    s = spec(cron="*/30 * * * *", timezone="Europe/Berlin")
    ticks = s.next_times(datetime(2026, 10, 25, 1, 45, tzinfo=BERLIN), 5)
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(ticks)}
    assert gaps == {1800.0} and len(set(ticks)) == 5


def test_six_fields_put_seconds_first() -> None:
    s = spec(cron="*/5 * * * * *")
    ticks = s.next_times(datetime(2026, 1, 1, tzinfo=UTC), 3)
    assert [t.second for t in ticks] == [5, 10, 15]


def test_intervals_fall_on_a_fixed_grid_and_one_time_runs_once() -> None:
    s = spec(every_seconds=60)
    assert [t.second for t in s.next_times(datetime(2026, 1, 1, 0, 0, 7, tzinfo=UTC), 2)] == [0, 0]
    once = spec(at="2026-12-01T09:00:00", timezone="Europe/Paris")
    assert local(
        once.next_times(datetime(2026, 1, 1, tzinfo=UTC), 5), ZoneInfo("Europe/Paris")
    ) == ["2026-12-01T09:00:00+01:00"]


def test_start_end_and_jitter() -> None:
    s = spec(every_seconds=3600, start_at="2026-01-01T00:00:00Z", end_at="2026-01-01T02:00:00Z")
    assert len(s.next_times(datetime(2025, 1, 1, tzinfo=UTC), 10)) == 3
    j = spec(every_seconds=60, jitter_seconds=10)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert j.jitter("a", t) == j.jitter("a", t) and 0 <= j.jitter("a", t).total_seconds() < 10


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "* * *"}, "invalid cron"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every_seconds": 0}, "every_seconds must be more than 0"),
        ({"every_seconds": -5}, "every_seconds must be more than 0"),
        (
            {"every_seconds": 5, "start_at": "2026-02-01T00:00", "end_at": "2026-01-01T00:00"},
            "end_at must be after start_at",
        ),
        ({"cron": "* * * * *", "every_seconds": 5}, "exactly one of 'cron'"),
        ({"cron": "* * * * *", "plan_ref": "no such!"}, "is not a plan name"),
        ({"cron": "* * * * *", "plan_ref": "nightly"}, "exactly one of 'request'"),
        ({"cron": "* * * * *", "inputs": {"x": "${schedule.nope}"}}, "is not known"),
    ],
)
def test_bad_definitions_say_why(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(SpecInvalid, match=reason.replace("(", r"\(").replace(")", r"\)")):
        spec(**fields)


def test_a_plan_that_does_not_validate_is_refused() -> None:
    with pytest.raises(SpecInvalid, match="unknown tool 'nope'"):
        parse(
            ScheduleSpec,
            {"name": "s", "cron": "* * * * *", "plan": {"steps": [{"id": "a", "tool": "nope"}]}},
        )


def test_a_trigger_on_an_unknown_event_type_is_refused() -> None:
    body = {"name": "t", "request": "x", "filter": {"type": "execution.exploded"}}
    with pytest.raises(SpecInvalid, match=r"unknown event type 'execution\.exploded'"):
        parse(TriggerSpec, body)
    body["filter"] = {"type": "execution.step_succeeded"}
    with pytest.raises(SpecInvalid, match="cannot start a trigger"):
        parse(TriggerSpec, body)
