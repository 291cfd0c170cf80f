"""A schedule's definition cannot make the scheduler enumerate ticks without end."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from baton_common import contracts as c
from baton_common.store import MemoryEventStore
from baton_scheduler.application import SchedulerApp
from baton_scheduler.commands import Commands
from baton_scheduler.spec import MAX_TICKS, ScheduleSpec, SpecInvalid, parse

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def spec(**fields: object) -> ScheduleSpec:
    return parse(ScheduleSpec, {"name": "s", "request": "collect reports", **fields})  # type: ignore[no-any-return]


@pytest.mark.parametrize("every", [1e-9, 0.001, 0.5, 1e15])
def test_an_interval_finer_than_a_second_or_past_ten_years_is_refused(every: float) -> None:
    with pytest.raises(SpecInvalid, match="every_seconds must be between 1 and"):
        spec(every_seconds=every)  # 1e-9 divided by zero, 1e15 overflowed: both a 500


def test_the_bounds_themselves_are_accepted() -> None:
    assert len(spec(every_seconds=1).next_times(NOW, 3)) == 3
    assert spec(every_seconds=10 * 366 * 86400).next_times(NOW, 1)[0] > NOW


def test_a_cron_is_at_most_200_characters() -> None:
    with pytest.raises(SpecInvalid, match="at most 200 characters"):
        spec(cron="0 " + ",".join(["1"] * 200) + " * * *")


def call(cmds: Commands, op: str, **kw: Any) -> c.SchedulerReply:
    commit, reply = cmds.run(c.SchedulerCall(op=op, workspace_id="acme", **kw), NOW)
    if commit is not None:
        cmds.app.store.commit(commit)
    return reply


def test_a_backfill_of_a_year_of_seconds_is_refused_after_max_ticks() -> None:
    cmds = Commands(SchedulerApp(MemoryEventStore("scheduler"), grace=timedelta(seconds=2)))
    body = {"name": "s", "request": "collect reports", "cron": "* * * * * *"}
    created = call(cmds, "create", kind="schedule", body=body)
    assert created.status == 201, created.detail
    started = time.perf_counter()
    reply = call(
        cmds,
        "backfill",
        kind="schedule",
        id=created.body["id"],
        body={"start": "2025-11-25T00:00:00Z", "end": "2026-11-25T00:00:00Z"},
    )  # 31 million ticks: enumerated up to the first one too many, then refused
    assert reply.status == 422 and f"more than {MAX_TICKS} ticks" in str(reply.detail)
    assert time.perf_counter() - started < 1.0
