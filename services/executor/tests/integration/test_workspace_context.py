"""The workspace's shared context on real PostgreSQL and NATS: a write is stored once, with the
message that caused it, whatever replicas race or messages come back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.consumer import Consumer, Delivery
from baton_common.settings import Settings
from baton_common.store import Commit, ConcurrencyConflict, PostgresEventStore
from baton_executor.application import SUBJECTS, ExecutorApp
from baton_executor.workspace_context import key_id

pytestmark = pytest.mark.integration

WRITE = {"steps": [{"id": "w", "tool": "context.set",
                    "input": {"key": "k", "value": "x", "scope": "workspace"}}]}  # fmt: skip


def _store(settings: Settings) -> PostgresEventStore:
    return PostgresEventStore(settings.database_url, "executor", schema=settings.db_schema)


def _plan(eid: UUID, workspace: str) -> Delivery:
    return Delivery(c.PlanProposed(aggregate_id=eid, aggregate_version=1, execution_id=eid,
                                   plan=WRITE, planner="direct", workspace_id=workspace))  # fmt: skip


def _key_versions(store: PostgresEventStore, workspace: str) -> list[int]:
    return [e.aggregate_version for e in store.load(key_id(workspace, "k"))]


def test_two_replicas_writing_one_key_at_once_one_commit_is_refused_and_made_again(
    settings: Settings,
) -> None:
    a, b = ExecutorApp(_store(settings)), ExecutorApp(_store(settings))
    ws, first, second = f"ws-{uuid4().hex[:8]}", uuid4(), uuid4()
    now = datetime.now(UTC)
    from_a, from_b = a.handle([_plan(first, ws)], now), b.handle([_plan(second, ws)], now)
    a.store.commit(from_a)
    with pytest.raises(ConcurrencyConflict):  # both wrote version 1 of the key
        b.store.commit(from_b)
    b.invalidate()  # what the consumer does on a conflict: forget, decide again
    b.store.commit(b.handle([_plan(second, ws)], datetime.now(UTC)))
    assert _key_versions(a.store, ws) == [1, 2]  # neither write lost
    steps = [e for e in a.store.load(second) if isinstance(e, c.StepSucceeded)]
    assert [s.output for s in steps] == [{"key": "k", "version": 2}]


async def test_a_redelivered_write_after_its_commit_is_applied_once(
    bus: Bus, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ws = _store(settings), f"ws-{uuid4().hex[:8]}"
    await bus.publish(
        [c.WorkspaceContextPutRequested(aggregate_id=uuid4(), aggregate_version=1,
                                        workspace_id=ws, key="k", value=1, actor="ops")]
    )  # fmt: skip
    from nats.aio.msg import Msg

    real_ack = Msg.ack

    async def lost_ack(self: Msg) -> None:  # the process "dies" between commit and ack
        return None

    monkeypatch.setattr(Msg, "ack", lost_ack)
    first = _consumer(bus, store)
    await first.start()
    await _until(lambda: _key_versions(store, ws) == [1], "the first commit")
    await first.stop()
    monkeypatch.setattr(Msg, "ack", real_ack)
    second = _consumer(bus, store)  # a restarted executor: nothing in memory
    await second.start()
    await _until(lambda: second.stats.skipped >= 1, "the redelivery")
    await second.stop()
    assert _key_versions(store, ws) == [1]
    store.close()


def _consumer(bus: Bus, store: PostgresEventStore) -> Consumer:
    app = ExecutorApp(store)

    async def on_messages(batch: list[Delivery]) -> Commit:
        return app.handle(batch)

    # precheck=False as the executor runs: the inbox row in the commit refuses the redelivery
    return Consumer(bus, store, "executor", SUBJECTS, on_messages, ack_wait_s=1,
                    on_conflict=app.invalidate, precheck=False)  # fmt: skip


async def _until(check: Callable[[], Any], what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
