"""Schedules and triggers on the in-memory store: ticks once, catch-up, overlap, loops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.store import MemoryEventStore
from baton_scheduler.application import SchedulerApp
from baton_scheduler.commands import Commands

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=2)


def setup() -> tuple[SchedulerApp, Commands]:
    app = SchedulerApp(MemoryEventStore("scheduler"), grace=GRACE)
    return app, Commands(app)


def call(
    cmds: Commands, op: str, kind: str = "schedule", now: datetime = T0, **kw: Any
) -> c.SchedulerReply:
    commit, reply = cmds.run(c.SchedulerCall(op=op, kind=kind, workspace_id="acme", **kw), now)
    if commit is not None:
        cmds.app.store.commit(commit)
    return reply


def create(cmds: Commands, **fields: Any) -> str:
    body = {"name": "s", "request": "collect reports", "every_seconds": 1, **fields}
    reply = call(cmds, "create", body=body)
    assert reply.status == 201, reply.detail
    return str(reply.body["id"])


def tick(app: SchedulerApp, now: datetime) -> list[c.Event]:
    app.refresh()
    timers = app.store.due_timers(now, 100)
    commit = app.fire(timers, now)
    app.store.commit(commit)
    return list(commit.events)


def starts(events: list[c.Event]) -> list[c.StartRequested]:
    return [e for e in events if isinstance(e, c.StartRequested)]


def test_each_tick_asks_for_one_execution_keyed_by_its_time() -> None:
    app, cmds = setup()
    sid = create(cmds, inputs={"when": "${schedule.scheduled_for}"})
    fired = starts(tick(app, T0 + timedelta(seconds=1.1)))
    assert [s.idempotency_key for s in fired] == [f"schedule:{sid}:2026-11-25T12:00:01Z"]
    assert fired[0].inputs == {"when": "2026-11-25T12:00:01+00:00"}
    assert fired[0].aggregate_id == c.execution_id_for_key("acme", fired[0].idempotency_key)
    assert tick(app, T0 + timedelta(seconds=1.2)) == []  # the same tick again: nothing


def test_two_replicas_on_one_tick_commit_once() -> None:
    store = MemoryEventStore("scheduler")
    a, b = SchedulerApp(store, grace=GRACE), SchedulerApp(store, grace=GRACE)
    create(Commands(a))
    now = T0 + timedelta(seconds=1.5)
    a.refresh(), b.refresh()
    timers = store.due_timers(now, 10)
    first, second = a.fire(timers, now), b.fire(timers, now)
    store.commit(first)
    try:
        store.commit(second)
        raise AssertionError("the second commit of the same tick must be refused")
    except Exception as exc:  # ConcurrencyConflict
        assert "Conflict" in type(exc).__name__


def test_catchup_after_downtime_per_policy() -> None:
    for policy, runs in (("all", 6), ("latest", 1), ("none", 2)):
        app, cmds = setup()
        create(cmds, catchup=policy, overlap="allow_all")
        events = tick(app, T0 + timedelta(seconds=6.5))  # ticks 1..6; 5 and 6 within grace
        assert len(starts(events)) == runs, policy
        missed = [e for e in events if isinstance(e, c.ScheduleTicksMissed)]
        assert sum(e.count for e in missed) == 6 - runs


def test_ticks_past_the_window_are_missed_even_with_all() -> None:
    app, cmds = setup()
    create(cmds, catchup="all", overlap="allow_all", catchup_window_seconds=3)
    events = tick(app, T0 + timedelta(seconds=10.5))
    assert len(starts(events)) == 3  # 8, 9, 10
    assert sum(e.count for e in events if isinstance(e, c.ScheduleTicksMissed)) == 7


def ended(execution_id: UUID) -> Delivery:
    return Delivery(c.ExecutionSucceeded(aggregate_id=execution_id, workspace_id="acme"))


def test_overlap_skip_buffer_one_and_cancel_previous() -> None:
    app, cmds = setup()
    create(cmds, overlap="skip")
    first = starts(tick(app, T0 + timedelta(seconds=1.1)))[0].aggregate_id
    assert any(isinstance(e, c.ScheduleTickSkipped) for e in tick(app, T0 + timedelta(seconds=2.1)))
    app.store.commit(app.handle([ended(first)]))
    assert len(starts(tick(app, T0 + timedelta(seconds=3.1)))) == 1

    app, cmds = setup()
    create(cmds, overlap="buffer_one")
    first = starts(tick(app, T0 + timedelta(seconds=1.1)))[0].aggregate_id
    assert any(
        isinstance(e, c.ScheduleTickBuffered) for e in tick(app, T0 + timedelta(seconds=2.1))
    )
    assert any(isinstance(e, c.ScheduleTickSkipped) for e in tick(app, T0 + timedelta(seconds=3.1)))
    commit = app.handle([ended(first)], T0 + timedelta(seconds=3.5))
    [buffered] = starts(list(commit.events))
    assert buffered.idempotency_key.endswith("12:00:02Z")

    app, cmds = setup()
    create(cmds, overlap="cancel_previous")
    first = starts(tick(app, T0 + timedelta(seconds=1.1)))[0].aggregate_id
    events = tick(app, T0 + timedelta(seconds=2.1))
    [cancel] = [e for e in events if isinstance(e, c.CancelRequested)]
    assert cancel.execution_id == first and len(starts(events)) == 1
    assert not [e for e in tick(app, T0 + timedelta(seconds=3.1)) if e.aggregate_id == first]


def test_pause_trigger_now_backfill_and_max_runs() -> None:
    app, cmds = setup()
    sid = create(cmds, max_runs=2, overlap="allow_all")
    assert call(cmds, "pause", id=sid, body={"note": "maintenance"}).body["note"] == "maintenance"
    assert tick(app, T0 + timedelta(seconds=5)) == []
    assert call(cmds, "unpause", id=sid, now=T0 + timedelta(seconds=5)).status == 200
    manual = call(cmds, "trigger_now", id=sid, now=T0 + timedelta(seconds=5.5))
    assert manual.body["runs"] == 1
    events = tick(app, T0 + timedelta(seconds=6.1))
    assert len(starts(events)) == 1 and any(isinstance(e, c.ScheduleCompleted) for e in events)
    again = call(
        cmds,
        "backfill",
        id=sid,
        body={"start": "2026-11-25T11:00:00Z", "end": "2026-11-25T11:00:02Z"},
    )
    assert again.body["started"] == 3
    twice = call(
        cmds,
        "backfill",
        id=sid,
        body={"start": "2026-11-25T11:00:00Z", "end": "2026-11-25T11:00:02Z"},
    )
    assert twice.body["started"] == 0 and twice.body["already_ran"] == 3


def test_another_workspace_sees_nothing() -> None:
    _app, cmds = setup()
    sid = create(cmds)
    commit, reply = cmds.run(
        c.SchedulerCall(op="get", kind="schedule", workspace_id="other", id=sid)
    )
    assert reply.status == 404 and commit is None


def failed(execution_id: UUID, error: str = "boom") -> Delivery:
    return Delivery(c.ExecutionFailed(aggregate_id=execution_id, workspace_id="acme", error=error))


def test_a_trigger_fires_once_per_matching_event_and_a_loop_is_stopped() -> None:
    app, cmds = setup()
    body = {
        "name": "on-failure",
        "request": "tell the on-call about ${event.payload.error}",
        "inputs": {"error": "${event.payload.error}"},
        "filter": {
            "type": "execution.failed",
            "where": [{"path": "$.payload.error", "contains": "boom"}],
        },
    }
    tid = call(cmds, "create", kind="trigger", body=body).body["id"]
    assert app.handle([failed(uuid4(), "fine")]).events == []
    commit = app.handle([failed(uuid4())])
    [start] = starts(list(commit.events))
    assert start.trigger_chain == [tid] and start.inputs == {"error": "boom"}
    app.store.commit(commit)
    # the follow-up fails too: the trigger would fire on its own output
    loop = app.handle([failed(start.aggregate_id)])
    [stopped] = [e for e in loop.events if isinstance(e, c.TriggerLoopStopped)]
    assert "its own output" in stopped.reason and not starts(list(loop.events))


def test_a_chain_deeper_than_five_is_stopped() -> None:
    app, _ = setup()
    store = app.store
    chain = [str(uuid4()) for _ in range(5)]
    parent = uuid4()
    store.commit(_run(parent, chain))
    cmds = Commands(app)
    call(
        cmds,
        "create",
        kind="trigger",
        body={"name": "t", "request": "x", "filter": {"type": "execution.failed"}},
    )
    commit = app.handle([failed(parent)])
    [stopped] = [e for e in commit.events if isinstance(e, c.TriggerLoopStopped)]
    assert "6 deep" in stopped.reason


def _run(execution_id: UUID, chain: list[str]) -> Any:
    from baton_common.store import Commit

    ask = c.StartRequested(
        aggregate_id=execution_id, aggregate_version=1, workspace_id="acme",
        idempotency_key="k", request="x", source="trigger", trigger_chain=chain,
    )  # fmt: skip
    return Commit(events=[ask])


def test_a_plan_filter_reads_the_execution_s_view_and_waits_for_it() -> None:
    views: dict[UUID, dict[str, Any]] = {}
    app = SchedulerApp(MemoryEventStore("scheduler"), views.get, grace=GRACE)
    cmds = Commands(app)
    body = {"name": "t", "request": "x", "filter": {"type": "execution.failed", "plan": "nightly"}}
    call(cmds, "create", kind="trigger", body=body)
    eid = uuid4()
    try:
        app.handle([failed(eid)])
        raise AssertionError("the view is not there yet: the message must be retried")
    except Exception as exc:
        assert "not in the read model yet" in str(exc)
    views[eid] = {"plan_name": "weekly"}
    assert app.handle([failed(eid)]).events == []
    views[eid] = {"plan_name": "nightly"}
    assert len(starts(list(app.handle([failed(eid)]).events))) == 1


def test_preview_shows_the_next_times_in_the_zone_and_stores_nothing() -> None:
    _app, cmds = setup()
    body = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "request": "x", "count": 2}
    reply = call(cmds, "preview", body=body, now=datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert reply.body["next_fire_times"] == [
        "2026-03-29T03:00:00+02:00",  # spring forward: 02:30 does not exist that night
        "2026-03-30T02:30:00+02:00",
    ]
    assert call(cmds, "list").body["items"] == []


def test_a_snapshot_gives_the_same_objects_as_the_whole_log() -> None:
    from baton_common.startsnapshots import MemoryStartSnapshots

    snapshots = MemoryStartSnapshots()
    app = SchedulerApp(MemoryEventStore("scheduler"), grace=GRACE, snapshots=snapshots)
    cmds = Commands(app)
    sid = create(cmds, overlap="buffer_one", inputs={"t": "${schedule.scheduled_for}"})
    body = {"name": "t", "request": "x", "filter": {"type": "execution.failed"}}
    call(cmds, "create", kind="trigger", body=body)
    for k in range(1, 4):
        tick(app, T0 + timedelta(seconds=k + 0.1))
    call(cmds, "pause", id=sid, body={"note": "n"})
    app.refresh()
    assert app.snapshot(every=1)
    later = SchedulerApp(app.store, grace=GRACE, snapshots=snapshots)
    later.start()
    replayed = SchedulerApp(app.store, grace=GRACE)
    replayed.refresh()
    assert [o.view() for o in later.objects.values()] == [
        o.view() for o in replayed.objects.values()
    ]
    assert later.metrics() == replayed.metrics()
    call(Commands(later), "unpause", id=sid, now=T0 + timedelta(seconds=4))
    assert tick(later, T0 + timedelta(seconds=5.1)) != []  # it goes on from the snapshot


def test_a_trigger_context_never_carries_a_secret() -> None:
    """Issue 26: a trigger on webhook.* or calendar.* events copies ``***``, never a secret
    (sealed, or plain in an event from before sealing)."""
    from baton_common.sealing import Sealer
    from baton_scheduler.domain.trigger import event_context

    sealed = Sealer.in_memory().seal("whsec_c2VjcmV0")
    endpoint = c.WebhookEndpointCreated(
        workspace_id="acme", aggregate_id=uuid4(), aggregate_version=1, name="gh",
        secrets=[sealed, "whsec_plain_old"], action={"request": "r", "inputs": {"x": sealed}},
    )  # fmt: skip
    calendar = c.CalendarCreated(
        workspace_id="acme", aggregate_id=uuid4(), aggregate_version=1, name="work",
        backend="caldav", url="http://dav.example/", username="ann", password="hunter2",
    )  # fmt: skip
    shown = event_context(endpoint)["payload"]
    assert shown["secrets"] == ["***", "***"] and shown["action"]["inputs"] == {"x": "***"}
    assert shown["name"] == "gh"
    assert event_context(calendar)["payload"]["password"] == "***"
    assert "hunter2" not in str(event_context(calendar)) and "sealed:" not in str(shown)


def fired_many(times: int) -> SchedulerApp:
    """A per-second schedule ticked ``times`` times, snapshotted as the service does (a look a
    minute: one is written once the log has moved SNAPSHOT_EVERY past the last)."""
    from baton_common.startsnapshots import MemoryStartSnapshots

    app = SchedulerApp(MemoryEventStore("scheduler"), grace=GRACE, snapshots=MemoryStartSnapshots())
    create(Commands(app))  # the first tick starts an execution, the next ones skip (it runs)
    for k in range(1, times + 1):
        tick(app, T0 + timedelta(seconds=k + 0.1))
        if k % 60 == 0:
            app.snapshot()
    return app


def test_a_schedule_fired_ten_thousand_times_loads_from_about_as_few_events_as_one_fired_ten() -> (
    None
):
    from baton_scheduler.application import SNAPSHOT_EVERY

    loads = {}
    for times in (10, 10_000):
        app = fired_many(times)
        later = SchedulerApp(app.store, grace=GRACE, snapshots=app.snapshots)
        later.start()
        app.refresh()
        assert later.totals == app.totals  # the same history, counted
        assert later.totals["schedule.fired"] + later.totals["schedule.tick_skipped"] == times
        loads[times] = later.read
    # A replica reads the log after the newest snapshot only: bounded by the snapshot interval
    # plus a minute of ticks, not by the history (a whole read would be ~20,000 events here).
    assert loads[10] <= 40
    assert loads[10_000] <= SNAPSHOT_EVERY + 2 * 60
    assert loads[10_000] < 10_000 // 5
    print(f"\n[snapshots] events read at start: 10 firings {loads[10]}, 10,000: {loads[10_000]}")
