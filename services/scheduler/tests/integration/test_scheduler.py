"""The scheduler on real NATS JetStream and PostgreSQL: two replicas on one store race for every
tick of a per-second cron and one start is asked for per tick; the API over request/reply; a
trigger fires once for an event that arrives twice; no scheduler is a clear 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_common.testing import Watch, until
from baton_scheduler.main import start_scheduler

pytestmark = pytest.mark.integration
PLAN = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "tick"}}]}


class Starts(Watch):
    """Every start the scheduler asked the gateway for, as it arrives on the stream."""

    def of(self, **match: str) -> list[c.StartRequested]:
        return [
            e
            for e in self.events
            if isinstance(e, c.StartRequested) and all(getattr(e, k) == v for k, v in match.items())
        ]


@pytest.fixture
async def starts(watch: Any) -> Starts:
    return await watch("*.intake.start_requested", Starts)


@pytest.fixture
async def replicas(
    settings: Settings, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[Runtime]]:
    monkeypatch.setenv("BATON_SCHEDULER_INTERVAL", "0.1")
    made = [await start_scheduler(settings), await start_scheduler(settings)]
    yield made
    for runtime in made:
        await runtime.close()


async def call(bus: Bus, op: str, kind: str = "schedule", **fields: Any) -> c.SchedulerReply:
    body = c.SchedulerCall(op=op, kind=kind, workspace_id="acme", actor="test (owner)", **fields)
    subject = c.scheduler_subject(bus.settings.subject_root)
    msg = await bus.request(subject, body.model_dump_json().encode(), 10)
    return c.SchedulerReply.model_validate_json(msg.data)


async def test_no_scheduler_running_is_a_clear_no_responder(bus: Bus) -> None:
    from nats.errors import NoRespondersError

    with pytest.raises(NoRespondersError):
        await call(bus, "list")


async def test_two_replicas_ask_for_one_start_per_tick(
    bus: Bus, replicas: list[Runtime], starts: Starts
) -> None:
    body = {"name": "s", "cron": "* * * * * *", "plan": PLAN, "overlap": "allow_all"}
    made = await call(bus, "create", body=body)
    assert made.status == 201, made.detail
    sid = made.body["id"]
    await asyncio.sleep(5)  # five seconds of ticks, both replicas racing for each
    assert (await call(bus, "pause", id=sid, body={"note": "done"})).status == 200
    history = (await call(bus, "events", id=sid, body={"limit": 5000})).body["items"]
    fired = [e["scheduled_for"] for e in history if e["type"] == "schedule.fired"]
    assert len(fired) >= 3 and len(fired) == len(set(fired))

    async def all_published() -> bool:
        return len(starts.of(schedule_id=sid)) >= len(fired)

    await until(all_published, "every tick's start on the stream")
    keys = [s.idempotency_key for s in starts.of(schedule_id=sid)]
    assert len(keys) == len(set(keys)) == len(fired)  # once each, and none twice


async def test_the_api_refuses_bad_input_and_other_workspaces(
    bus: Bus, replicas: list[Runtime]
) -> None:
    bad = await call(bus, "create", body={"name": "x", "cron": "nope", "plan": PLAN})
    assert bad.status == 422 and "invalid cron" in (bad.detail or "")
    made = await call(bus, "create", body={"name": "x", "every_seconds": 3600, "plan": PLAN})
    other = c.SchedulerCall(op="get", kind="schedule", workspace_id="other", id=made.body["id"])
    subject = c.scheduler_subject(bus.settings.subject_root)
    reply = await bus.request(subject, other.model_dump_json().encode(), 10)
    assert c.SchedulerReply.model_validate_json(reply.data).status == 404
    listed = await call(bus, "list")
    assert [s["id"] for s in listed.body["items"]] == [made.body["id"]]


async def test_a_trigger_fires_once_for_an_event_delivered_twice(
    bus: Bus, replicas: list[Runtime], starts: Starts
) -> None:
    body = {
        "name": "t",
        "plan": PLAN,
        "inputs": {"error": "${event.payload.error}"},
        "filter": {"type": "execution.failed"},
    }
    tid = (await call(bus, "create", kind="trigger", body=body)).body["id"]
    failed = c.ExecutionFailed(
        aggregate_id=uuid4(), aggregate_version=9, workspace_id="acme", error="boom"
    )
    subject = bus.subject(failed)
    for msg_id in ("first", "second"):  # the same event twice, past the server's dedupe
        await bus.js.publish(subject, failed.to_json(), headers={"Nats-Msg-Id": msg_id})

    async def fired() -> bool:
        return bool(starts.of(trigger_id=tid))

    await until(fired, "the trigger's start")
    await asyncio.sleep(1.5)
    [start] = starts.of(trigger_id=tid)
    assert start.inputs == {"error": "boom"} and start.trigger_chain == [tid]


@pytest.mark.real_clock  # the backfill window (this process) selects by the server's stamps
async def test_a_trigger_backfill_fires_once_per_past_event(
    bus: Bus, replicas: list[Runtime], starts: Starts
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    past = [
        c.ExecutionFailed(aggregate_id=uuid4(), aggregate_version=3, workspace_id="acme", error=e)
        for e in ("old timeout", "old crash")
    ]
    await bus.publish(past)  # before the trigger existed
    body = {"name": "t", "plan": PLAN, "filter": {"type": "execution.failed"}}
    tid = (await call(bus, "create", kind="trigger", body=body)).body["id"]
    window = {"start": since.isoformat(), "end": datetime.now(UTC).isoformat()}
    first = await call(bus, "backfill", kind="trigger", id=tid, body=window)
    # the consumer may have seen an event after the trigger existed and fired for it already:
    # either way each past event has its one execution
    assert first.status == 202 and first.body["matched"] == 2, first
    assert first.body["counts"]["fired"] == 2
    again = await call(bus, "backfill", kind="trigger", id=tid, body=window)
    assert again.body["matched"] == 2 and again.body["started"] == 0

    async def both() -> bool:
        return len(starts.of(trigger_id=tid)) >= 2

    await until(both, "the backfilled starts")
    assert len(starts.of(trigger_id=tid)) == 2


async def test_a_replica_starts_from_a_snapshot_and_the_log_after_it(
    settings: Settings, bus: Bus, replicas: list[Runtime]
) -> None:
    from baton_common.startsnapshots import StartSnapshots
    from baton_common.store import PostgresEventStore
    from baton_scheduler.application import SchedulerApp

    body = {"name": "s", "cron": "* * * * * *", "plan": PLAN, "overlap": "allow_all"}
    sid = (await call(bus, "create", body=body)).body["id"]
    await asyncio.sleep(2)
    store = PostgresEventStore(settings.database_url, "scheduler", schema=settings.db_schema)
    snapshots = StartSnapshots(settings.database_url, settings.db_schema, "scheduler")
    first = SchedulerApp(store, snapshots=snapshots)
    await asyncio.to_thread(first.start)
    assert await asyncio.to_thread(first.snapshot, 1)
    await asyncio.sleep(1.5)  # more ticks after the snapshot
    await call(bus, "pause", id=sid)
    later, whole = SchedulerApp(store, snapshots=snapshots), SchedulerApp(store)
    await asyncio.to_thread(later.start)
    await asyncio.to_thread(whole.start)
    assert later.snapshot_at == first.position > 0
    for a, b in zip(later.objects.values(), whole.objects.values(), strict=True):
        va, vb = a.view(), b.view()
        assert {k: (va[k], vb[k]) for k in va if va[k] != vb[k]} == {}
    store.close()


async def test_events_no_automation_wants_are_acked_undecoded_and_a_new_trigger_sees_the_next(
    bus: Bus, replicas: list[Runtime], starts: Starts
) -> None:
    def failed(error: str) -> c.ExecutionFailed:
        return c.ExecutionFailed(
            aggregate_id=uuid4(), aggregate_version=3, workspace_id="acme", error=error
        )

    def skipped() -> int:
        return sum(k.stats.skipped for r in replicas for k in r.consumers if k.name == "scheduler")

    await bus.publish([failed("before any trigger")])
    await until(lambda: _true(skipped() >= 1), "the event acked without decoding")
    body = {"name": "t", "plan": PLAN, "inputs": {"error": "${event.payload.error}"},
            "filter": {"type": "execution.failed"}}  # fmt: skip
    tid = (await call(bus, "create", kind="trigger", body=body)).body["id"]
    await bus.publish([failed("after the trigger")])  # a trigger exists now: decoded, matched

    async def fired() -> bool:
        return bool(starts.of(trigger_id=tid))

    await until(fired, "the trigger's start")
    await asyncio.sleep(1)
    assert [s.inputs for s in starts.of(trigger_id=tid)] == [{"error": "after the trigger"}]


async def _true(value: bool) -> bool:
    return value


async def test_deleting_a_schedule_destroys_the_keys_of_its_sealed_tool_inputs(
    bus: Bus, replicas: list[Runtime]
) -> None:
    from baton_common.sealing import KeyDestroyed, Sealer

    sealer = Sealer.for_store(replicas[0].store)  # the data keys beside the scheduler's events
    secret = sealer.seal("s3cret")  # as the gateway seals a secret tool input (secretinputs)
    plan = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": secret}}]}
    made = await call(bus, "create", body={"name": "sealed", "every_seconds": 3600, "plan": plan})
    assert made.status == 201, made.detail
    kept = await call(bus, "create", body={"name": "kept", "every_seconds": 3600, "plan": PLAN})
    assert sealer.unseal(secret) == "s3cret"
    assert (await call(bus, "delete", id=made.body["id"])).status == 200
    with pytest.raises(KeyDestroyed):
        sealer.unseal(secret)
    assert (await call(bus, "get", id=kept.body["id"])).status == 200
